"""``moga-zoo search evolve``: a latency table + an accuracy source -> MoGA-style specs on the
Pareto front, with the paper's Figures 7 and 9, resumable after a crash."""
from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np

from .. import specs
from ..files import atomic_path, sha256_file, write_text_atomic
from ..latency.table import LatencyTable
from .nsga import SearchError, SearchResult, non_dominated, nsga2, pick_along_front
from .objectives import N_CHOICES, N_LAYERS, MogaObjectives, SpaceCosts, accuracy_source

REFERENCES = ("moga_a", "moga_b", "moga_c")


def _choices_str(x) -> str:
    return " ".join(str(int(v)) for v in x)


def evolve(*, table: str | Path, accuracy, out: str | Path, pop_size: int = 70, generations: int = 120,
           weights=(0.4, 0.4, 0.2), seed: int = 0, resume: bool = False, k: int = 5, params: str = "max",
           n_objectives: int = 3, mutation: str = "hierarchical", p_guided: float = 0.5, workers: int = 1,
           form: str | None = None, progress: bool | None = None, accuracy_kw: dict | None = None) -> dict:
    """Run the weighted NSGA-II and write its results to ``out``.

    Args:
        table: a moga-zoo latency table (``moga-zoo lut build`` or an imported phone table).
        accuracy: ``proxy``, ``csv:PATH``, ``supernet:CKPT`` or a callable on choice vectors.
        out: folder for specs, front.json, evaluated.csv, front.png, params_hist.png, provenance.json
            and the per-generation checkpoint search.ckpt.
        pop_size, generations, weights, seed, mutation, p_guided: see ``nsga.nsga2``.
        resume: continue search.ckpt in ``out``.
        k: how many specs to pick at equal spacing along the front.
        params: "max" (the paper) or "min"; n_objectives 2 drops parameters.
        workers: >1 evaluates candidates in a process pool through pymoo's runner hook.
        form: the spec form the emitted specs take (``specs.FORMS``); by default the accuracy
            source's (a supernet's own form), else ``imagenet``. A form other than the
            supernet's is refused: its accuracies would belong to other networks.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SearchError(f"--out {out} exists and is not a directory")
    if len(weights) != n_objectives:
        raise SearchError(f"{len(weights)} crowding weights for {n_objectives} objectives")
    if k < 1:
        raise SearchError(f"k (models to pick) must be >= 1, got {k}")
    ckpt = out / "search.ckpt"
    if ckpt.exists() and not resume:
        raise SearchError(f"{out} already holds a search ({ckpt.name}); pass --resume to continue it or "
                          f"choose another --out")
    lut = LatencyTable.load(table)
    costs = SpaceCosts.build(lut)
    acc = accuracy_source(accuracy, costs, **(accuracy_kw or {}))
    if form is not None and acc.form not in (None, form):
        raise SearchError(f"--form {form}, but the accuracy source was measured on the {acc.form} form "
                          f"({acc.description}): drop --form or pass --form {acc.form}")
    form = form or acc.form or "imagenet"
    objectives = MogaObjectives(acc, costs, params=params, n_objectives=n_objectives)
    out.mkdir(parents=True, exist_ok=True)
    pool = runner = None
    if workers > 1:
        import multiprocessing

        from pymoo.parallelization.starmap import StarmapParallelization
        pool = multiprocessing.get_context("spawn").Pool(workers)
        runner = StarmapParallelization(pool.starmap)
    try:
        result = nsga2(objectives, N_LAYERS, N_CHOICES, weights=weights, pop_size=pop_size,
                       generations=generations, seed=seed, mutation=mutation, p_guided=p_guided,
                       checkpoint=ckpt, resume=resume, runner=runner, progress=progress)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    settings = {"pop_size": pop_size, "generations": generations, "weights": list(weights), "seed": seed,
                "k": k, "params": params, "n_objectives": n_objectives, "mutation": mutation,
                "p_guided": p_guided, "form": form}
    summary = write_results(out, result, objectives, lut, settings, k=k, form=form,
                            provenance={"table": {"path": str(table), "sha256": sha256_file(table), "meta": lut.meta},
                                        "accuracy": acc.provenance(), "seconds": round(result.seconds, 1)})
    if result.interrupted:
        print(f"search stopped after generation {result.generations} of {generations}; results so far are "
              f"in {out}; continue with --resume", file=sys.stderr)
    return summary


def reference_points(objectives: MogaObjectives) -> dict:
    """MoGA-A/B/C scored by the same accuracy source and table as the search."""
    X = np.array([specs.PUBLISHED_CHOICES[n] for n in REFERENCES])
    F = objectives(X)
    cols = objectives.columns(F)
    return {n: {k: float(v[i]) for k, v in cols.items()} | {"choices": _choices_str(X[i])}
            for i, n in enumerate(REFERENCES)}


def match_references(refs: dict, X: np.ndarray, cols: dict, front: set[str]) -> dict:
    """Per reference, an evaluated model at least as accurate and no slower by the table (the test
    the paper's searched models pass against MoGA-A/B/C's neighbours): one on the front if any,
    the most accurate of those; ``None`` where the search found none."""
    top1, lat = np.asarray(cols["top1"]), np.asarray(cols["latency_ms"])
    keys = np.array([_choices_str(x) for x in X]) if len(X) else np.array([], dtype=str)
    matches = {}
    for name, r in refs.items():
        ok = np.flatnonzero((top1 >= r["top1"]) & (lat <= r["latency_ms"]) & (keys != r["choices"]))
        if not len(ok):
            matches[name] = None
            continue
        i = max(ok, key=lambda i: (keys[i] in front, top1[i], -lat[i]))
        matches[name] = {"choices": str(keys[i]), "top1": round(float(top1[i]), 5),
                         "latency_ms": round(float(lat[i]), 5), "on_front": bool(keys[i] in front),
                         "spec": f"moga_search_vs_{name}.json", "x": X[i]}
    return matches


def _write_spec(out: Path, choices, name: str, form: str) -> str:
    spec = specs.FORMS[form](specs.from_choices(list(choices), name=name))
    write_text_atomic(out / f"{name}.json", spec.to_json(indent=2))
    return f"{name}.json"


def write_results(out: Path, result: SearchResult, objectives: MogaObjectives, lut: LatencyTable,
                  settings: dict, *, k: int, form: str, provenance: dict) -> dict:
    """Specs of the K picked models, front.json, evaluated.csv, plots and provenance."""
    cols_hist = objectives.columns(result.history_F)
    Xf, Ff = result.X, result.F
    cols_front = objectives.columns(Ff)
    picked = pick_along_front(Ff, k, axis=1)
    costs = objectives.costs
    spec_files = [_write_spec(out, Xf[i].tolist(), f"moga_search_{rank}", form)
                  for rank, i in enumerate(picked, start=1)]
    front = [{"choices": _choices_str(x), **{c: round(float(v[i]), 5) for c, v in cols_front.items()},
              "macs_m": round(float(costs.mac_count(x[None])[0]) / 1e6, 2),
              "picked": (f"moga_search_{picked.index(i) + 1}.json" if i in picked else None)}
             for i, x in enumerate(Xf)]
    refs = reference_points(objectives)
    matches = match_references(refs, result.history_X, cols_hist, {_choices_str(x) for x in Xf})
    for name, m in matches.items():
        if m is not None:
            _write_spec(out, m.pop("x").tolist(), f"moga_search_vs_{name}", form)
        refs[name]["matched_by"] = m
    summary = {"settings": settings, "generations_done": result.generations,
               "complete": not result.interrupted, "evaluated": int(len(result.history_X)),
               "front": sorted(front, key=lambda r: r["latency_ms"]), "picked": spec_files,
               "references": refs, **provenance}
    write_text_atomic(out / "front.json", json.dumps(summary, indent=2))
    buf = io.StringIO()
    w = csv.writer(buf)
    names = list(cols_hist)
    w.writerow(["generation", "choices"] + names + ["macs_m"])
    macs = costs.mac_count(result.history_X) / 1e6 if len(result.history_X) else []
    for j, x in enumerate(result.history_X):
        w.writerow([int(result.history_gen[j]), _choices_str(x)] + [f"{cols_hist[c][j]:.5f}" for c in names]
                   + [f"{macs[j]:.2f}"])
    write_text_atomic(out / "evaluated.csv", buf.getvalue())
    plot_front(out / "front.png", cols_hist, cols_front, refs, [front[i] for i in picked], lut, provenance)
    if "params_m" in cols_hist:
        plot_params_hist(out / "params_hist.png", cols_hist["params_m"], result.history_gen, refs)
    return summary


def plot_front(path: Path, hist: dict, front: dict, refs: dict, picked: list, lut: LatencyTable, prov: dict):
    """The paper's Figure 7: accuracy vs latency of every evaluated model, the front on top."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter(hist["latency_ms"], hist["top1"], s=5, c="0.75", label=f"evaluated ({len(hist['top1'])})")
    ax.scatter(front["latency_ms"], front["top1"], s=14, c="tab:blue", label="non-dominated (all objectives)")
    two = non_dominated(np.stack([-np.asarray(hist["top1"]), np.asarray(hist["latency_ms"])], 1))
    two = two[np.argsort(np.asarray(hist["latency_ms"])[two])]
    ax.step(np.asarray(hist["latency_ms"])[two], np.asarray(hist["top1"])[two], where="post", c="tab:blue",
            lw=1, label="accuracy-latency front")
    ax.scatter([p["latency_ms"] for p in picked], [p["top1"] for p in picked], s=90, facecolors="none",
               edgecolors="tab:green", linewidths=2, label="picked specs")
    for name, r in refs.items():
        ax.scatter(r["latency_ms"], r["top1"], marker="*", s=160, c="tab:red", zorder=5)
        ax.annotate("MoGA-" + name[-1].upper(), (r["latency_ms"], r["top1"]),
                    textcoords="offset points", xytext=(5, 5), color="tab:red")
    ax.set_xlabel(f"latency (ms, table: {lut.meta.get('backend', '?')}, {lut.meta.get('threads', '?')} thread(s))")
    ax.set_ylabel("top-1 (%)")
    ax.set_title(f"MoGA search: accuracy vs latency (Figure 7)\naccuracy: {prov['accuracy']['source'].split(' (')[0][:80]}",
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def plot_params_hist(path: Path, params_m: np.ndarray, gen: np.ndarray, refs: dict):
    """The paper's Figure 9: parameter counts of the first and last generations' models."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(params_m.min(), params_m.max(), 30)
    first, last = gen == gen.min(), gen == gen.max()
    ax.hist(params_m[first], bins=bins, alpha=0.6, label=f"generation {gen.min() + 1}")
    ax.hist(params_m[last], bins=bins, alpha=0.6, label=f"generation {gen.max() + 1}")
    for name, r in refs.items():
        ax.axvline(r["params_m"], c="tab:red", ls="--", lw=1)
        ax.text(r["params_m"], ax.get_ylim()[1] * 0.9, name[-1].upper(), color="tab:red")
    ax.set_xlabel("parameters (M)")
    ax.set_ylabel("models")
    ax.set_title("Parameters of evaluated models (Figure 9)")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
