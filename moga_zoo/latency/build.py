"""Measuring a latency table for the MoGA search space, and fitting its calibration.

Every choice block of every searchable layer is timed alone at its input shape in the skeleton,
plus the fixed rows (stem, first block, head). A plain sum of isolated blocks underestimates a
whole network (warm caches, no hand-over between ops), consistently, so the build also times a
few whole networks and stores a least-squares ``measured = scale * sum + offset``.

Blocks are timed in sweeps: each round calls every block once, so by the time a block runs again
the others have pushed its weights and activations out of cache, as in a real network; the entry
is the mean of its per-round times. (Timing one block many times in a row measures it hot.)
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ..builder import SpecNet, make_row
from ..sizes import layer_sizes
from ..specs import MOGA_SKELETON, NUM_CHOICES, Spec, from_choices
from .table import LatencyTable, TableError, row_keys
from .timing import interleaved, prepare

CALIBRATION_SEED = 1234


def _keras_row(spec: Spec, index: int, in_shape):
    from ..export.keras import row_model
    return row_model(spec, index, in_shape)


def _keras_whole(spec: Spec, size: int):
    from ..export.keras import build_keras
    return build_keras(spec, size, batch_size=1)


def space_specs(choices=range(NUM_CHOICES)) -> list[Spec]:
    """One network per Table-1 choice (every layer takes it): together they hold every table key
    of the space restricted to ``choices``."""
    choices = sorted(set(choices))
    bad = [c for c in choices if not 0 <= c < NUM_CHOICES]
    if bad or not choices:
        raise ValueError(f"choices {bad or choices} are outside Table 1's 0..{NUM_CHOICES - 1}")
    return [from_choices([c] * len(MOGA_SKELETON), name=f"all_{c}") for c in choices]


def unique_rows(specs: list[Spec], size: int = 224):
    """(key, spec, row index, input C/H/W) once per distinct table key across ``specs``."""
    seen = set()
    for spec in specs:
        for (i, key), sz in zip(row_keys(spec, size), layer_sizes(spec, size)):
            if key not in seen:
                seen.add(key)
                yield key, spec, i, sz.in_shape


def row_callables(specs: list[Spec], backend: str, threads: int, workdir: Path, spinning: bool,
                  size: int = 224) -> dict[str, object]:
    """One timed callable per distinct table key across ``specs``."""
    fns = {}
    for key, spec, i, in_shape in unique_rows(specs, size):
        module = make_row(spec.rows[i], in_shape[0], spec.options)
        keras = _keras_row(spec, i, in_shape) if backend.startswith("tflite") else None
        fns[key] = prepare(backend, module, in_shape, threads=threads, workdir=workdir,
                           name=f"row{len(fns):03d}", spinning=spinning, keras_model=keras)
    return fns


def model_callables(specs: list[Spec], backend: str, threads: int, workdir: Path, spinning: bool,
                    size: int = 224) -> dict[str, object]:
    fns = {}
    for j, spec in enumerate(specs):
        keras = _keras_whole(spec, size) if backend.startswith("tflite") else None
        fns[f"{j}:{spec.name}"] = prepare(backend, SpecNet(spec, input_size=size).eval(),
                                          (spec.in_chans, size, size), threads=threads, workdir=workdir,
                                          name=f"model{j:03d}", spinning=spinning, keras_model=keras)
    return fns


def random_choices(n: int, seed: int, choices=range(NUM_CHOICES)) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    pool = list(choices)
    return [[int(pool[i]) for i in rng.integers(0, len(pool), len(MOGA_SKELETON))] for _ in range(n)]


def fit_calibration(raw: list[float], measured: list[float]) -> tuple[float, float]:
    """Least-squares scale and offset; an offset alone when the sums do not vary (one choice)."""
    raw, measured = np.asarray(raw, float), np.asarray(measured, float)
    if len(raw) < 2 or np.ptp(raw) < 1e-9:
        return 1.0, float(np.mean(measured - raw))
    scale, offset = np.polyfit(raw, measured, 1)
    return float(scale), float(offset)


NOISE_CV_LIMIT = 0.25  # median round-to-round variation of the blocks' times


def other_load(threads: int) -> tuple[float, int, bool]:
    """(1-minute load average minus this process, CPUs, busy): busy when other work would share the
    cores the table is measuring on."""
    cpus = os.cpu_count() or 1
    others = max(0.0, os.getloadavg()[0] - 1.0)
    return others, cpus, others > cpus - threads + 0.5


def round_cv(rows: dict) -> float:
    """Median over blocks of (std / median) of their per-round medians: near 0 on a quiet machine."""
    cvs = [float(np.std(v["round_medians"]) / np.median(v["round_medians"]))
           for v in rows.values() if len(v["round_medians"]) > 1]
    return float(np.median(cvs)) if cvs else 0.0


def build_table(backend: str = "onnxruntime", *, threads: int = 1, spinning: bool = False,
                choices=range(NUM_CHOICES), calibrate: int = 10, rounds: int = 100, reps: int = 1,
                size: int = 224, progress: bool = True, force: bool = False) -> LatencyTable:
    """Time every block of the space (and calibration networks) on this machine.

    A table built while other jobs share the CPU can predict with 200% error (seen here), so the
    machine's noise is measured and recorded in ``meta["noise"]``: the load from other processes
    before the build (a busy machine is refused at once) and the blocks' round-to-round variation
    (above ``NOISE_CV_LIMIT`` the table is refused). ``force`` keeps the table with a warning in
    its metadata instead.
    """
    choices = sorted(set(choices))
    specs = space_specs(choices)
    load, cpus, busy = other_load(threads)
    if busy and not force:
        raise TableError(f"other processes keep {load:.1f} of this machine's {cpus} CPUs busy (1-minute load "
                         f"average); a table timed now would be wrong. Stop them and build again, or pass "
                         f"--force to keep a table marked as measured under load")
    with tempfile.TemporaryDirectory(prefix="moga_lut_") as tmp:
        rows = interleaved(row_callables(specs, backend, threads, Path(tmp), spinning, size),
                           rounds=rounds, reps=reps, progress=progress)
        cv = round_cv(rows)
        noise = {"other_load_before": round(load, 2), "cpus": cpus, "round_cv_median": round(cv, 4),
                 "cv_limit": NOISE_CV_LIMIT, "other_load_after": round(other_load(threads)[0], 2)}
        if cv > NOISE_CV_LIMIT or busy:
            noise["warning"] = (f"measured under load (other load {load:.1f} on {cpus} CPUs, round-to-round "
                                f"variation {cv:.0%}): predictions may be far off")
            if not force:
                raise TableError(f"block times varied {cv:.0%} from round to round (limit {NOISE_CV_LIMIT:.0%}): "
                                 f"the machine was busy while timing. Build again on a quiet machine, or pass "
                                 f"--force to keep a table marked as noisy")
        table = LatencyTable(
            {k: {"count": v["count"], "mean": round(v["mean"], 5), "std": round(v["std"], 5),
                 "median": round(v["median"], 5), "p90": round(v["p90"], 5)} for k, v in rows.items()},
            LatencyTable.new_meta(backend, threads, spinning, size, specs[0].to_dict()["options"],
                                  space="moga", choices=choices, rounds=rounds, reps=reps, noise=noise))
        if calibrate:
            cal = [from_choices(c, name=f"cal{j}") for j, c in
                   enumerate(random_choices(calibrate, CALIBRATION_SEED, choices))]
            whole = interleaved(model_callables(cal, backend, threads, Path(tmp), spinning, size),
                                rounds=max(10, rounds // 5), reps=20, progress=progress)
            raw = [table.raw(s) for s in cal]
            measured = [v["mean"] for v in whole.values()]
            scale, offset = fit_calibration(raw, measured)
            from ..specs import to_choices
            table.calibration = {"scale": round(scale, 6), "offset": round(offset, 6), "n": len(cal),
                                 "seed": CALIBRATION_SEED,
                                 "models": [{"choices": to_choices(s), "sum_ms": round(r, 5), "measured_ms": round(m, 5)}
                                            for s, r, m in zip(cal, raw, measured)]}
    return table
