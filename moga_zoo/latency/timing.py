"""Timing one graph on one backend, and many graphs fairly against each other.

Every measurement runs one session at a time with idle compute threads not spinning (by
default), so sessions kept alive for other graphs cannot steal the cores (LATENCY_NOTES: with
spinning on and many sessions alive, times jumped 3-5x). Rounds are interleaved so slow drift of a
shared machine spreads over all graphs; each round contributes its median.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..runners import BACKENDS as RUNTIMES

BACKENDS = RUNTIMES + ("tflite-int8",)  # what a table or bench can time


def prepare(backend: str, module: torch.nn.Module, in_shape: tuple, *, threads: int, workdir: Path,
            name: str, spinning: bool = False, keras_model=None, calib: np.ndarray | None = None,
            batch: int = 1) -> Callable[[], object]:
    """A zero-argument callable that runs ``module`` (as ``backend`` executes it) once on a
    fixed random input of shape (batch, *in_shape)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *in_shape)).astype(np.float32)
    if backend == "torch":
        torch.set_num_threads(threads)
        module = module.eval()
        xt = torch.from_numpy(x)

        def run():
            with torch.inference_mode():
                return module(xt)
        return run
    if backend == "onnxruntime":
        import onnx
        from ..export.onnx import to_onnx
        from ..runners import OnnxRunner
        path = Path(workdir) / f"{name}.onnx"
        onnx.save(to_onnx(module, torch.from_numpy(x[:1]), 17, dynamic_batch=batch > 1), str(path))
        runner = OnnxRunner(path, threads, spinning=spinning)
        return lambda: runner(x)
    if backend in ("tflite", "tflite-int8"):
        from ..export.tflite import convert
        from ..runners import TFLiteRunner
        if keras_model is None:
            raise ValueError("the tflite backends time a Keras model: pass keras_model")
        quant = "int8" if backend == "tflite-int8" else None
        cal = calib if calib is not None else x[:1]
        path = Path(workdir) / f"{name}.{quant or 'fp32'}.tflite"
        path.write_bytes(convert(keras_model, quant, cal))
        runner = TFLiteRunner(path, threads)
        return lambda: runner(x)
    raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")


def time_once(fn: Callable, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def trimmed_mean(values, cut: float = 0.1) -> float:
    """Mean without the top and bottom ``cut`` fraction: a stray stall on a shared machine
    does not move it, yet it stays a mean (what OFA-style tables store)."""
    v = sorted(values)
    k = int(len(v) * cut)
    return statistics.fmean(v[k:len(v) - k] or v)


def interleaved(fns: dict[str, Callable], *, rounds: int = 5, reps: int = 20, warmup: int = 5,
                progress: bool = False) -> dict[str, dict]:
    """Per graph (ms): median and trimmed mean of the per-round medians, p90 and std of all
    samples, min/max, count."""
    from tqdm import tqdm
    for fn in fns.values():
        time_once(fn, warmup)
    samples = {k: [] for k in fns}
    medians = {k: [] for k in fns}
    for _ in tqdm(range(rounds), desc="rounds", disable=not progress, leave=False):
        for k, fn in fns.items():
            t = time_once(fn, reps)
            samples[k] += t
            medians[k].append(statistics.median(t))
    return {k: {"median": statistics.median(medians[k]), "mean": trimmed_mean(medians[k]),
                "std": statistics.pstdev(samples[k]), "p90": float(np.percentile(samples[k], 90)),
                "min": min(samples[k]), "max": max(samples[k]), "count": len(samples[k]),
                "round_medians": medians[k]} for k in fns}
