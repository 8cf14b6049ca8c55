"""``moga-zoo bench``: size and speed of whole models on every local backend, side by side."""
from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

import numpy as np

from ..files import atomic_path, write_text_atomic
from ..registry import create_model
from ..sizes import count
from .timing import BACKENDS, interleaved, prepare


def _calib(model) -> np.ndarray:
    from ..export.common import load_images
    return load_images(None, model.pretrained_cfg.preprocess).x


def bench(models: list[str], backends: list[str], *, threads: int = 2, rounds: int = 7, reps: int = 10,
          batch: int = 32, spinning: bool = False, weights: dict | None = None, progress: bool = True) -> list[dict]:
    """Batch-1 latency (median, p90, spread of round medians) and batch-``batch`` throughput.

    All (model, backend) pairs are timed in the same interleaved rounds. int8 TFLite is calibrated
    on the built-in drawn images (speed does not depend on calibration quality).
    """
    bad = [b for b in backends if b not in BACKENDS]
    if bad:
        raise ValueError(f"unknown backend(s) {bad}; use {', '.join(BACKENDS)}")
    nets = {m: create_model(m, weights=(weights or {}).get(m)).eval() for m in models}
    one, many = {}, {}
    with tempfile.TemporaryDirectory(prefix="moga_bench_") as tmp:
        for name, net in nets.items():
            shape = (net.spec.in_chans, net.input_size, net.input_size)
            keras = None
            for b in backends:
                if b.startswith("tflite") and keras is None:
                    from ..export.keras import keras_from_torch
                    keras = keras_from_torch(net)
                cal = _calib(net) if b == "tflite-int8" else None
                kw = dict(threads=threads, workdir=Path(tmp), spinning=spinning, keras_model=keras, calib=cal)
                one[(name, b)] = prepare(b, net, shape, name=f"{name}_{b}_1", **kw)
                if batch > 1 and b.startswith("tflite"):  # batch-1 files: a batch is a loop, as on a phone
                    many[(name, b)] = lambda f=one[(name, b)]: [f() for _ in range(batch)]
                elif batch > 1:
                    many[(name, b)] = prepare(b, net, shape, name=f"{name}_{b}_{batch}", batch=batch, **kw)
        t1 = interleaved(one, rounds=rounds, reps=reps, progress=progress)
        tb = interleaved(many, rounds=max(3, rounds // 2), reps=max(2, reps // 4), progress=progress) if many else {}
    rows = []
    for (name, b), v in t1.items():
        params, macs = count(nets[name].spec, nets[name].input_size)
        rm = v["round_medians"]
        row = {"model": name, "backend": b, "params": params, "macs": macs, "threads": threads,
               "median_ms": round(v["median"], 3), "p90_ms": round(v["p90"], 3),
               "spread_ms": [round(min(rm), 3), round(max(rm), 3)]}
        if (name, b) in tb:
            row[f"images_per_s_b{batch}"] = round(batch / (tb[(name, b)]["median"] / 1e3), 1)
        ort = t1.get((name, "onnxruntime"))
        row["vs_onnxruntime"] = round(v["median"] / ort["median"], 3) if ort else None
        fp32 = t1.get((name, "tflite"))
        if b == "tflite-int8" and fp32:
            row["int8_speedup"] = round(fp32["median"] / v["median"], 3)
        rows.append(row)
    return rows


def format_rows(rows: list[dict]) -> str:
    tput = next((k for k in rows[0] if k.startswith("images_per_s")), None) if rows else None
    head = f"{'model':<20}{'backend':<13}{'params':>11}{'MACs':>13}{'median ms':>11}{'p90 ms':>9}{'spread ms':>16}{'vs ORT':>8}"
    head += f"{tput.replace('images_per_s_b', 'img/s @'):>12}" if tput else ""
    lines = [head]
    for r in rows:
        sp = f"{r['spread_ms'][0]:.2f}-{r['spread_ms'][1]:.2f}"
        vs = f"{r['vs_onnxruntime']:.2f}x" if r["vs_onnxruntime"] else "-"
        line = (f"{r['model']:<20}{r['backend']:<13}{r['params']:>11,}{r['macs']:>13,}{r['median_ms']:>11.2f}"
                f"{r['p90_ms']:>9.2f}{sp:>16}{vs:>8}")
        if tput:
            line += f"{r.get(tput, float('nan')):>12.1f}"
        if "int8_speedup" in r:
            line += f"  int8 {r['int8_speedup']:.2f}x faster than fp32"
        lines.append(line)
    return "\n".join(lines)


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    keys = sorted({k for r in rows for k in r}, key=lambda k: list(rows[0]).index(k) if k in rows[0] else 99)
    w = csv.DictWriter(buf, keys)
    w.writeheader()
    for r in rows:
        w.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()})
    return buf.getvalue()


_ROLES = (("/se/", "SE"), ("/dw/", "depthwise"), ("/expand/", "1x1 expand"), ("/project/", "1x1 project"),
          ("/act/", "activation"), ("head_convs", "head"), ("classifier", "classifier"))


def _category(node: str, op_type: str) -> str:
    """Operator type plus the block role read from our node names (/features.3/dw/conv/Conv)."""
    for part, role in _ROLES:
        if part in node:
            return f"{op_type} ({role})"
    return op_type


def op_breakdown(models: list[str], out_dir: str | Path, *, threads: int = 2, runs: int = 50) -> dict:
    """Per-op-type share of onnxruntime time for each model (the paper's Figure 1), as JSON + PNG."""
    import onnx
    import onnxruntime as ort
    import torch
    from ..export.onnx import INPUT, to_onnx

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = {}
    with tempfile.TemporaryDirectory(prefix="moga_prof_") as tmp:
        for name in models:
            net = create_model(name).eval()
            x = torch.zeros(1, net.spec.in_chans, net.input_size, net.input_size)
            path = Path(tmp) / f"{name}.onnx"
            onnx.save(to_onnx(net, x), str(path))
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.enable_profiling = True
            so.profile_file_prefix = str(Path(tmp) / f"prof_{name}")
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            for _ in range(runs):
                sess.run(None, {INPUT: x.numpy()})
            trace = json.loads(Path(sess.end_profiling()).read_text())
            per_op: dict[str, float] = {}
            for ev in trace:
                if ev.get("cat") == "Node" and ev.get("name", "").endswith("_kernel_time"):
                    op = _category(ev["name"], ev.get("args", {}).get("op_name", "?"))
                    per_op[op] = per_op.get(op, 0.0) + ev["dur"] / 1e3 / runs
            result[name] = {k: round(v, 4) for k, v in sorted(per_op.items(), key=lambda kv: -kv[1])}
    write_text_atomic(out / "breakdown.json", json.dumps({"threads": threads, "runs": runs, "ms_per_run": result}, indent=1))
    _breakdown_png(result, out / "breakdown.png", threads)
    return result


def _breakdown_png(result: dict, path: Path, threads: int):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = sorted({op for r in result.values() for op in r}, key=lambda op: -sum(r.get(op, 0) for r in result.values()))
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(result) + 1.8))
    left = np.zeros(len(result))
    names = list(result)
    cmap = plt.get_cmap("tab20")
    for j, op in enumerate(ops):
        vals = np.array([result[n].get(op, 0.0) for n in names])
        ax.barh(names, vals, left=left, color=cmap(j % 20), label=op)
        left += vals
    ax.set_xlabel(f"onnxruntime time per image (ms), batch 1, {threads} threads")
    ax.set_title("Latency by operator type")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
