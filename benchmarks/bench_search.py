"""Search quality and the paper's ablations, at equal budget, on this machine's latency table.

    python benchmarks/bench_search.py [--table benchmarks/results/lut_ort_1t.json] [--seeds 3]
        [--accuracy proxy] [--json benchmarks/results/search_ablations.json]
    python benchmarks/bench_search.py --hardware lut_ort_1t.json lut_tfl_1t.json   # Figure 2 + two fronts

Quality: (1) layers 1-5 searched (12^5 = 248,832 architectures, the rest MoGA-C's): hypervolume
of the final set / the exhaustive front's; (2) the full 12^14 space at the paper's budget (70 x 120
evaluations): hypervolume / random search's with the same 8,400 evaluations. Ablations on the full
space: hierarchical vs random mutation; 3 vs 2 objectives; Eq. 5 weights vs equal weights; and
MnasNet's single-objective reward ACC x (LAT / TARGET)^-0.07 searched by pymoo's GA. Hypervolume is
pymoo's, on objectives min-max normalised by the union of all fronts found (reference point 1.1),
in 3-D (accuracy, latency, params) and 2-D (accuracy, latency); every method is scored on the
non-dominated set of everything it evaluated.
"""
from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from moga_zoo import specs  # noqa: E402
from moga_zoo.latency.table import LatencyTable  # noqa: E402
from moga_zoo.search.nsga import hypervolume, non_dominated, nsga2  # noqa: E402
from moga_zoo.search.objectives import MogaObjectives, SpaceCosts, accuracy_source  # noqa: E402

POP, GENS = 70, 120


def front(F):
    F = np.asarray(F)
    return F[non_dominated(F)]


def mnasnet_search(obj: MogaObjectives, seed: int, target: float, w: float = -0.07) -> np.ndarray:
    """MnasNet's reward maximised by pymoo's GA with the same sampling/crossover/mutation budget;
    returns every evaluated architecture's 3 MoGA objectives."""
    from pymoo.algorithms.soo.nonconvex.ga import GA
    from pymoo.core.duplicate import HashDuplicateElimination
    from pymoo.core.problem import Problem
    from pymoo.operators.crossover.pntx import SinglePointCrossover
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.sampling.rnd import IntegerRandomSampling
    from pymoo.optimize import minimize

    from moga_zoo.search.nsga import HierarchicalMutation

    seen = []

    class Reward(Problem):
        def _evaluate(self, x, out, *a, **k):
            F = obj(np.asarray(x, int))
            seen.append(F)
            out["F"] = -(-F[:, 0]) * (F[:, 1] / target) ** w

    algo = GA(pop_size=POP, sampling=IntegerRandomSampling(), crossover=SinglePointCrossover(prob=0.9, repair=RoundingRepair()),
              mutation=HierarchicalMutation(12, p_guided=0.0), eliminate_duplicates=HashDuplicateElimination())
    minimize(Reward(n_var=14, n_obj=1, xl=0, xu=11, vtype=int), algo, ("n_gen", GENS), seed=seed, verbose=False)
    return np.concatenate(seen)


def quality_small(costs, acc, seeds) -> dict:
    obj = MogaObjectives(acc, costs)
    base = np.array(specs.PUBLISHED_CHOICES["moga_c"])

    def evaluate(Xs):
        X = np.tile(base, (len(Xs), 1))
        X[:, :5] = Xs
        return obj(X)
    F = evaluate(np.array(list(itertools.product(range(12), repeat=5))))
    ex = front(F)
    ideal, nadir = ex.min(0), ex.max(0)
    best = hypervolume(ex, ideal, nadir)
    ratios = [hypervolume(nsga2(evaluate, 5, 12, weights=[0.4, 0.4, 0.2], pop_size=POP, generations=GENS,
                                seed=s, progress=False).F, ideal, nadir) / best for s in seeds]
    return {"space": 12 ** 5, "exhaustive_front": len(ex), "ratios": ratios}


def ablations(costs, acc, seeds, target) -> dict:
    obj3 = MogaObjectives(acc, costs)
    runs: dict[str, list[np.ndarray]] = {}
    times: dict[str, list[float]] = {}

    def add(name, fn):
        for s in seeds:
            t0 = time.perf_counter()
            runs.setdefault(name, []).append(front(fn(s)))
            times.setdefault(name, []).append(time.perf_counter() - t0)

    def nsga(s, **kw):
        return nsga2(obj3, 14, 12, pop_size=POP, generations=GENS, seed=s, progress=False,
                     **{"weights": [0.4, 0.4, 0.2], **kw}).history_F

    obj2 = MogaObjectives(acc, costs, n_objectives=2)
    add("MoGA: 3 objectives, Eq. 5 weights 0.4/0.4/0.2, hierarchical mutation", nsga)
    add("random mutation instead of hierarchical", lambda s: nsga(s, mutation="random"))
    add("equal crowding weights (standard NSGA-II)", lambda s: nsga(s, weights=[1 / 3] * 3))
    add("2 objectives (accuracy, latency)", lambda s: obj3(nsga2(obj2, 14, 12, weights=[0.5, 0.5], pop_size=POP,
                                                                 generations=GENS, seed=s, progress=False).history_X))
    add("params minimised instead of maximised",
        lambda s: obj3(nsga2(MogaObjectives(acc, costs, params="min"), 14, 12, weights=[0.4, 0.4, 0.2],
                             pop_size=POP, generations=GENS, seed=s, progress=False).history_X))
    add(f"MnasNet reward ACC x (LAT/{target:.2f} ms)^-0.07, GA", lambda s: mnasnet_search(obj3, s, target))
    add("random search", lambda s: obj3(np.random.default_rng(s).integers(0, 12, (POP * GENS, 14))))
    union = front(np.concatenate([f for v in runs.values() for f in v]))
    ideal, nadir = union.min(0), union.max(0)
    out = {}
    for name, fronts in runs.items():
        hv3 = [hypervolume(f, ideal, nadir) for f in fronts]
        hv2 = [hypervolume(front(f[:, :2]), ideal[:2], nadir[:2]) for f in fronts]
        out[name] = {"hv3": hv3, "hv2": hv2, "seconds": times[name]}
    rnd = out["random search"]
    for v in out.values():
        v["hv3_vs_random"] = statistics.mean(v["hv3"]) / statistics.mean(rnd["hv3"])
        v["hv2_vs_random"] = statistics.mean(v["hv2"]) / statistics.mean(rnd["hv2"])
    out["_union"] = {"hv3": hypervolume(union, ideal, nadir), "hv2": hypervolume(front(union[:, :2]), ideal[:2], nadir[:2])}
    return out


def hardware(tables: list[Path], acc_name: str, seed: int, out_png: Path) -> dict:
    """The paper's Figure 2 (latencies of 100 random architectures on two backends) and the same
    search run with each table."""
    from scipy.stats import kendalltau
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    luts = [LatencyTable.load(t) for t in tables]
    costs = [SpaceCosts.build(t) for t in luts]
    X = np.random.default_rng(seed).integers(0, 12, (100, 14))
    lat = [c.latency(X) for c in costs]
    tau = kendalltau(lat[0], lat[1]).statistic
    names = [f"{t.meta.get('backend')} {t.meta.get('threads')}t" for t in luts]
    results = {}
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    axes[0].scatter(lat[0], lat[1], s=12)
    axes[0].set(xlabel=f"{names[0]} (ms)", ylabel=f"{names[1]} (ms)",
                title=f"100 random architectures, Kendall tau {tau:.3f} (Figure 2)")
    for i, (c, name) in enumerate(zip(costs, names)):
        acc = accuracy_source(acc_name, c)
        obj = MogaObjectives(acc, c)
        r = nsga2(obj, 14, 12, weights=[0.4, 0.4, 0.2], pop_size=POP, generations=GENS, seed=seed, progress=False)
        F = r.F
        k7 = (np.isin(r.X, [4, 5, 10, 11])).sum(1)  # choices with a 7x7 kernel
        other = costs[1 - i].latency(r.X)
        results[name] = {"front_size": len(F), "mean_7x7_layers_on_front": float(k7.mean()),
                         "front_latency_ms": [float(F[:, 1].min()), float(F[:, 1].max())],
                         "front_latency_on_other_backend_ms": [float(other.min()), float(other.max())]}
        ax = axes[1]
        ax.scatter(c.latency(r.X) if i == 0 else costs[0].latency(r.X), -F[:, 0], s=10,
                   label=f"front searched with the {name} table ({k7.mean():.1f} 7x7 layers on average)")
    axes[1].set(xlabel=f"latency on {names[0]} (ms)", ylabel="top-1 (accuracy source)",
                title="the two fronts, both priced on the first backend")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return {"kendall_tau_100_random": float(tau), "tables": [str(t) for t in tables], "searches": results}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", default=str(ROOT / "benchmarks" / "results" / "lut_ort_1t.json"))
    ap.add_argument("--accuracy", default="proxy")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--hardware", nargs=2, metavar="TABLE", help="two tables for the hardware-awareness study")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    seeds = list(range(args.seeds))
    report = {"machine": platform.processor() or platform.machine(), "accuracy": args.accuracy,
              "table": args.table, "budget": f"{POP} x {GENS}"}
    if args.hardware:
        report["hardware"] = hardware([Path(t) for t in args.hardware], args.accuracy, 0,
                                      ROOT / "benchmarks" / "results" / "hardware_fronts.png")
        print(json.dumps(report["hardware"], indent=2))
    else:
        lut = LatencyTable.load(args.table)
        costs = SpaceCosts.build(lut)
        acc = accuracy_source(args.accuracy, costs)
        target = float(costs.latency(np.array([specs.PUBLISHED_CHOICES["moga_c"]]))[0])
        report["small_space"] = quality_small(costs, acc, seeds)
        r = report["small_space"]["ratios"]
        print(f"enumerable space ({12 ** 5:,} architectures): HV / exhaustive front's = "
              f"{statistics.mean(r):.4f} (seeds: {', '.join(f'{x:.4f}' for x in r)})")
        report["ablations"] = ab = ablations(costs, acc, seeds, target)
        print(f"full space, {POP} x {GENS} evaluations, {len(seeds)} seeds; HV of each method's front "
              f"(normalised by the union of all fronts; union HV3 {ab['_union']['hv3']:.4f}, HV2 {ab['_union']['hv2']:.4f})")
        print(f"{'method':<72}{'HV3 mean':>9}{'sd':>8}{'vs rnd':>8}{'HV2 mean':>9}{'sd':>8}{'vs rnd':>8}")
        for name, v in ab.items():
            if name.startswith("_"):
                continue
            print(f"{name:<72}{statistics.mean(v['hv3']):>9.4f}{statistics.stdev(v['hv3']):>8.4f}"
                  f"{v['hv3_vs_random']:>7.3f}x{statistics.mean(v['hv2']):>9.4f}{statistics.stdev(v['hv2']):>8.4f}"
                  f"{v['hv2_vs_random']:>7.3f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
