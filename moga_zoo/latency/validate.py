"""Predicted against measured on random architectures the table has never seen (paper Figure 4)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..specs import from_choices, to_choices
from .build import CALIBRATION_SEED, model_callables, random_choices
from .table import LatencyTable, TableError
from .timing import BACKENDS, interleaved

VALIDATION_SEED = 2026


def kendall_tau(a, b) -> float:
    """Kendall's tau-b (scipy's)."""
    from scipy.stats import kendalltau
    return float(kendalltau(np.asarray(a, float), np.asarray(b, float)).statistic)


def metrics(pred, meas) -> dict:
    pred, meas = np.asarray(pred, float), np.asarray(meas, float)
    rel = np.abs(pred - meas) / meas
    return {"rmse_ms": float(np.sqrt(np.mean((pred - meas) ** 2))), "mape": float(rel.mean() * 100),
            "kendall_tau": kendall_tau(pred, meas), "within_10pct": float((rel <= 0.10).mean()),
            "n": int(len(meas))}


def scatter_png(path: Path, measured, predicted, raw, m: dict, title: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 5))
    lo = min(min(measured), min(predicted), min(raw)) * 0.95
    hi = max(max(measured), max(predicted), max(raw)) * 1.05
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
    ax.scatter(measured, raw, s=14, c="0.6", label="sum of blocks")
    ax.scatter(measured, predicted, s=16, c="tab:red", label="calibrated prediction")
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="measured latency (ms)", ylabel="predicted latency (ms)",
           title=title)
    ax.text(0.03, 0.97, f"n={m['n']}  RMSE {m['rmse_ms']:.3f} ms\nMAPE {m['mape']:.1f}%  "
            f"Kendall tau {m['kendall_tau']:.3f}", transform=ax.transAxes, va="top", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    from ..files import atomic_path
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def validate_table(table: LatencyTable, n: int = 50, *, rounds: int = 10, reps: int = 20,
                   png: str | Path | None = None, seed: int = VALIDATION_SEED, progress: bool = True) -> dict:
    """Measure ``n`` random MoGA architectures whole on the table's backend and threads."""
    meta = table.meta
    backend = meta.get("backend")
    if backend not in BACKENDS:
        raise TableError(f"table backend {backend!r} cannot be measured on this machine (tables from a "
                         f"phone are validated there); validate runs torch, onnxruntime or tflite")
    if seed == CALIBRATION_SEED:
        raise ValueError("the validation seed must differ from the calibration seed")
    specs = [from_choices(c, name=f"val{j}") for j, c in
             enumerate(random_choices(n, seed, meta.get("choices", range(12))))]
    size = meta.get("input_size", 224)
    with tempfile.TemporaryDirectory(prefix="moga_lut_val_") as tmp:
        fns = model_callables(specs, backend, meta.get("threads", 1), Path(tmp), meta.get("spinning", False), size)
        timed = interleaved(fns, rounds=rounds, reps=reps, progress=progress)
    measured = [v["mean"] for v in timed.values()]
    raw = [table.raw(s) for s in specs]
    pred = [table.predict(s) for s in specs]
    m = metrics(pred, measured)
    out = {**m, "raw": metrics(raw, measured), "calibrated": table.calibration is not None,
           "backend": backend, "threads": meta.get("threads"), "seed": seed,
           "models": [{"choices": to_choices(s), "measured_ms": round(me, 5), "predicted_ms": round(p, 5),
                       "sum_ms": round(r, 5)} for s, me, p, r in zip(specs, measured, pred, raw)]}
    if png:
        scatter_png(Path(png), measured, pred, raw, m,
                    f"MoGA latency table: {backend}, {meta.get('threads')} thread(s)")
        out["png"] = str(png)
    return out
