"""Tables measured on a phone: export per-row files, then turn the phone tools' logs into a table.

- TFLite: ``export_rows`` writes one ``.tflite`` per table key plus ``manifest.json`` and a script
  that runs ``benchmark_model`` on each over adb; ``parse_tflite_log`` reads the concatenated output
  (``Graph: [...]`` then ``Timings (microseconds): count= ... avg= std=``; the last timing line of a
  graph is the measured run, earlier ones are warm-up).
- MACE: ``benchmark_model --benchmark`` prints a per-op table ("Sort by Run Order"); op names are
  the ONNX node names we export (``/features/features.3/dw/conv/Conv``), so ``parse_mace_log`` sums
  ops per spec row of the whole-network file it was given and yields that network's row entries.
"""
from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

from ..builder import make_row
from ..files import write_text_atomic
from ..specs import FEATURE_OPS, NUM_CHOICES, Spec
from .build import space_specs, unique_rows
from .table import LatencyTable, TableError, row_keys

_LOG_PREFIX = re.compile(r"^\s*(?:[IWEF]\s*\S+:\d+\]\s*)?")


def export_rows(out_dir: str | Path, fmt: str = "tflite", choices=range(NUM_CHOICES), size: int = 224) -> Path:
    """Every table key of the MoGA space as its own file for on-device benchmarking."""
    import torch
    if fmt not in ("tflite", "onnx"):
        raise ValueError(f"unknown row format {fmt!r}; use tflite or onnx")
    choices = sorted(set(choices))
    specs = space_specs(choices)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for key, spec, i, in_shape in unique_rows(specs, size):
        name = f"row_{len(files):03d}.{fmt}"
        if fmt == "tflite":
            from ..export.keras import row_model
            from ..export.tflite import convert
            (out / name).write_bytes(convert(row_model(spec, i, in_shape)))
        else:
            import onnx
            from ..export.onnx import to_onnx
            module = make_row(spec.rows[i], in_shape[0], spec.options)
            onnx.save(to_onnx(module, torch.zeros(1, *in_shape), 13), str(out / name))
        files[name] = key
    if fmt == "tflite":
        lines = ["#!/bin/sh", "# Run on a host with adb; benchmark_model must be on the device in /data/local/tmp:",
                 "#   sh run_benchmark_model.sh > phone.log 2>&1",
                 "#   moga-zoo lut import --tflite-log phone.log --manifest manifest.json --out phone.json",
                 'THREADS="${THREADS:-1}"', "adb push *.tflite /data/local/tmp/ >/dev/null"]
        lines += [f"adb shell /data/local/tmp/benchmark_model --graph=/data/local/tmp/{f} "
                  f"--num_threads=$THREADS --num_runs=100 --warmup_runs=10" for f in files]
        write_text_atomic(out / "run_benchmark_model.sh", "\n".join(lines) + "\n")
    manifest = {"format": "moga-zoo-lut-rows", "input_size": size, "options": specs[0].to_dict()["options"],
                "choices": choices, "files": files}
    write_text_atomic(out / "manifest.json", json.dumps(manifest, indent=1))  # last: marks the set complete
    return out / "manifest.json"


def _load_manifest(path: str | Path) -> dict:
    m = json.loads(Path(path).read_text())
    if m.get("format") != "moga-zoo-lut-rows":
        raise TableError(f"{path} is not a row manifest written by 'moga-zoo lut export-rows'")
    return m


def parse_tflite_log(text: str, manifest: str | Path, **meta) -> LatencyTable:
    m = _load_manifest(manifest)
    runs: dict[str, list[tuple[float, float, int]]] = {}
    graph = None
    for raw in text.splitlines():
        line = _LOG_PREFIX.sub("", raw)
        g = re.search(r"Graph:\s*\[([^\]]+)\]", line)
        if g:
            graph = Path(g[1]).name
            continue
        t = re.search(r"count=(\d+).*?avg=([\d.eE+-]+)\s+std=([\d.eE+-]+)", line)
        if t and graph is not None:
            runs.setdefault(graph, []).append((float(t[2]) / 1000.0, float(t[3]) / 1000.0, int(t[1])))
    if not runs:
        raise TableError("no 'Graph: [...]' followed by 'Timings ... count= avg= std=' found: is this "
                         "benchmark_model output?")
    unknown = sorted(set(runs) - set(m["files"]))
    if unknown:
        raise TableError(f"graphs {', '.join(unknown[:3])} are not in the manifest {manifest}")
    entries = {m["files"][f]: {"mean": round(r[-1][0], 5), "std": round(r[-1][1], 5), "count": r[-1][2]}
               for f, r in runs.items()}
    missing = len(m["files"]) - len(entries)
    return LatencyTable(entries, {"backend": "tflite benchmark_model (imported)", "input_size": m["input_size"],
                                  "options": m["options"], "choices": m["choices"], "missing_rows": missing, **meta})


def _mace_rows(text: str) -> list[tuple[str, float]]:
    """(op name, Avg ms) from the 'Sort by Run Order' table."""
    lines = [_LOG_PREFIX.sub("", l).strip() for l in text.splitlines()]
    try:
        start = next(i for i, l in enumerate(lines) if "Sort by Run Order" in l)
    except StopIteration:
        raise TableError("no 'Sort by Run Order' table: run MACE's benchmark with --benchmark") from None
    header = None
    out = []
    for l in lines[start + 1:]:
        if not l.startswith("|"):
            if header is not None and out and not set(l) <= set("-+= "):
                break
            continue
        cells = [c.strip() for c in l.strip("|").split("|")]
        if header is None:
            if "Avg(ms)" in cells and "name" in cells:
                header = {c: i for i, c in enumerate(cells)}
            continue
        try:
            out.append((cells[header["name"]], float(cells[header["Avg(ms)"]])))
        except (ValueError, IndexError):
            continue
    if not out:
        raise TableError("the 'Sort by Run Order' table has no rows with a name and Avg(ms)")
    return out


def _row_of(name: str, spec: Spec) -> int | None:
    body = [i for i, r in enumerate(spec.rows) if r.op in FEATURE_OPS]
    if m := re.search(r"features[./](\d+)", name):
        return body[int(m[1])]
    if m := re.search(r"head_convs[./](\d+)", name):
        return [i for i, r in enumerate(spec.rows) if r.op == "conv_nbn"][int(m[1])]
    if "global_pool" in name:
        return next(i for i, r in enumerate(spec.rows) if r.op == "pool")
    if "classifier" in name or "Flatten" in name:
        return len(spec.rows) - 1
    return None


def parse_mace_log(text: str, spec: Spec, size: int = 224, **meta) -> LatencyTable:
    """Per-row entries of ``spec`` (the network the log was measured on)."""
    keys = dict(row_keys(spec, size))
    per_row: dict[int, float] = {}
    unmatched = []
    for name, ms in _mace_rows(text):
        i = _row_of(name, spec)
        if i is None:
            unmatched.append(name)
            continue
        per_row[i] = per_row.get(i, 0.0) + ms
    if unmatched:
        raise TableError(f"MACE ops {', '.join(unmatched[:3])} match no row of {spec.name}: was the log "
                         f"measured on a file moga-export wrote for this spec?")
    entries = {keys[i]: {"mean": round(v, 5), "std": 0.0, "count": 1} for i, v in sorted(per_row.items())}
    return LatencyTable(entries, {"backend": "mace --benchmark (imported)", "input_size": size,
                                  "options": spec.to_dict()["options"], **meta})


def merge(tables: list[LatencyTable]) -> LatencyTable:
    """Entries of several imported tables; a key measured more than once gets the mean."""
    if not tables:
        raise TableError("nothing to merge")
    vals: dict[str, list[float]] = {}
    for t in tables:
        for k, v in t.entries.items():
            vals.setdefault(k, []).append(v["mean"])
    entries = {k: {"mean": round(statistics.fmean(v), 5), "std": round(statistics.pstdev(v), 5), "count": len(v)}
               for k, v in vals.items()}
    return LatencyTable(entries, dict(tables[0].meta, merged=len(tables)), None)
