"""Ranking quality of a FairNAS supernet: Kendall tau between supernet accuracy (BN recalibrated)
and stand-alone accuracy of architectures spread over the latency range (MoGA-A/B/C included),
each trained by ``moga-zoo train`` with the same short schedule.

    python benchmarks/bench_ranking.py --supernet RUN/supernet --cifar10 PATH \\
        --table benchmarks/results/lut_ort_1t.json --out runs/ranking \\
        [--archs 8] [--epochs 5] [--batch-size 128] [--val-images 5000] [--bn-images 2000] [--threads 2] \\
        [--train-only] [--report benchmarks/results/ranking.json]

Both accuracies are measured on the same images: the supernet's validation split, held out of the
CIFAR-10 training split (its seed and size), which the stand-alone runs also hold out and never
train on. Resumable: architecture i trains in OUT/<name>/ (an interrupted one continues, a finished
one is skipped), so the study can span sessions; ``--train-only`` trains them while the supernet
is still training. Writes OUT/ranking.json (and --report): per architecture the choices, table
latency, supernet and stand-alone top-1; Kendall tau, its p-value and a bootstrap 90% interval over
architectures; and OUT/ranking.png.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moga_zoo import specs  # noqa: E402
from moga_zoo.files import write_text_atomic  # noqa: E402
from moga_zoo.latency.table import LatencyTable  # noqa: E402
from moga_zoo.search.objectives import N_CHOICES, N_LAYERS, SpaceCosts  # noqa: E402
from moga_zoo.search.nsga import SearchError  # noqa: E402
from moga_zoo.search.score import SupernetAccuracy, supernet_meta  # noqa: E402
from moga_zoo.train.loop import Interrupted  # noqa: E402
from moga_zoo.train.recipes import RECIPES  # noqa: E402
from moga_zoo.train.run import train  # noqa: E402


def pick_architectures(costs: SpaceCosts, n: int, seed: int) -> list[tuple[str, list[int]]]:
    """MoGA-A/B/C plus ``n - 3`` random architectures at evenly spaced latency quantiles of 4,000
    uniform samples, so the study spans the space's latency range rather than its crowded middle."""
    chosen = [(name, list(specs.PUBLISHED_CHOICES[name])) for name in ("moga_a", "moga_b", "moga_c")]
    rng = np.random.default_rng(seed)
    X = rng.integers(0, N_CHOICES, (4000, N_LAYERS))
    order = np.argsort(costs.latency(X))
    for j, q in enumerate(np.linspace(0.02, 0.98, max(n - 3, 0))):
        chosen.append((f"arch_{j}", X[order[int(q * (len(X) - 1))]].tolist()))
    return chosen


def kendall(a, b, boot: int = 2000, seed: int = 0) -> dict:
    from scipy.stats import kendalltau

    a, b = np.asarray(a, float), np.asarray(b, float)
    tau, p = kendalltau(a, b)
    rng = np.random.default_rng(seed)
    taus = []
    for _ in range(boot):  # resample architectures; a resample with a single distinct one has no tau
        i = rng.integers(0, len(a), len(a))
        if len(set(i.tolist())) > 2:
            t = kendalltau(a[i], b[i])[0]
            if np.isfinite(t):
                taus.append(t)
    lo, hi = np.percentile(taus, [5, 95])
    return {"tau": round(float(tau), 4), "p_value": float(p), "bootstrap_90": [round(float(lo), 4), round(float(hi), 4)],
            "n": len(a)}


def plot(path: Path, rows: list[dict], stats: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for r in rows:
        ref = r["name"].startswith("moga_")
        ax.scatter(r["supernet_top1"], r["standalone_top1"], c="tab:red" if ref else "tab:blue", zorder=3)
        ax.annotate(r["name"], (r["supernet_top1"], r["standalone_top1"]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    ax.set_xlabel("supernet top-1 % (BN recalibrated)")
    ax.set_ylabel("stand-alone top-1 % (short schedule)")
    lo, hi = stats["bootstrap_90"]
    ax.set_title(f"Kendall tau {stats['tau']:.2f} (90% bootstrap {lo:.2f}..{hi:.2f}), n={stats['n']}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--supernet", required=True, help="a train-supernet folder (or its weights file)")
    ap.add_argument("--cifar10", required=True)
    ap.add_argument("--table", required=True, help="latency table that spreads the architectures")
    ap.add_argument("--out", required=True)
    ap.add_argument("--archs", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=5, help="the short stand-alone schedule")
    ap.add_argument("--batch-size", type=int, default=RECIPES["cifar10"].batch_size)
    ap.add_argument("--val-images", type=int, default=5000)
    ap.add_argument("--bn-images", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-only", action="store_true",
                    help="train the stand-alone runs and stop (they need only the supernet's supernet.json, "
                         "so they can run while the supernet trains)")
    ap.add_argument("--report", help="also write the summary here (e.g. benchmarks/results/ranking.json)")
    args = ap.parse_args(argv)
    if args.archs < 4:
        ap.error("--archs must be >= 4 (MoGA-A/B/C and at least one more)")
    try:
        meta = supernet_meta(args.supernet)  # the held-out split; the supernet itself may still be training
    except SearchError as e:
        ap.error(str(e))
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    costs = SpaceCosts.build(LatencyTable.load(args.table))
    archs = pick_architectures(costs, args.archs, args.seed)
    recipe = RECIPES["cifar10"].override(epochs=args.epochs, warmup_epochs=min(1.0, args.epochs / 5),
                                          batch_size=args.batch_size)
    for name, choices in archs:
        run = out / name
        if not (run / "result.json").is_file():
            spec = specs.from_choices(choices, name=name, num_classes=10)
            print(f"training {name} {choices} for {args.epochs} epochs", file=sys.stderr)
            try:
                train(spec, cifar10=args.cifar10, out=run, recipe=recipe, val_size=meta["val_size"],
                      seed=meta["seed"], resume=(run / "checkpoint.pt").exists(),
                      command=" ".join(sys.argv))
            except Interrupted as e:
                print(f"{name}: {e}; run the same command again to continue", file=sys.stderr)
                return 130
    if args.train_only:
        print(f"{len(archs)} stand-alone runs trained in {out}; run again without --train-only to score them",
              file=sys.stderr)
        return 0
    scorer = SupernetAccuracy(args.supernet, val_images=args.val_images, bn_images=args.bn_images,
                              data=args.cifar10, progress=False)
    if scorer.meta.get("unfinished"):
        print(f"WARNING: {scorer.meta['weights']} is an unfinished supernet ({scorer.meta['epochs_done']} of "
              f"{scorer.meta['epochs']} epochs); its ranking is not the finished one's", file=sys.stderr)
    rows = []
    for name, choices in archs:
        standalone = json.loads((out / name / "result.json").read_text())["final"]["val_top1"]
        rows.append({"name": name, "choices": choices, "latency_ms": round(float(costs.latency([choices])[0]), 4),
                     "supernet_top1": scorer.score(choices), "standalone_top1": standalone})
        print(f"{name}: supernet {rows[-1]['supernet_top1']:.2f}%, stand-alone {standalone:.2f}%", file=sys.stderr)
    stats = kendall([r["supernet_top1"] for r in rows], [r["standalone_top1"] for r in rows])
    summary = {"command": " ".join(sys.argv), "supernet": scorer.provenance(), "epochs": args.epochs,
               "recipe": recipe.to_dict(), "note": "stand-alone runs hold out and are scored on the supernet's "
               "validation split; supernet scores use a seeded class-balanced --val-images of it (all of it "
               "when --val-images >= its size)", "kendall": stats,
               "architectures": rows}
    for path in [out / "ranking.json"] + ([Path(args.report)] if args.report else []):
        write_text_atomic(path, json.dumps(summary, indent=2))
    plot(out / "ranking.png", rows, stats)
    print(f"Kendall tau {stats['tau']:.3f} (90% bootstrap {stats['bootstrap_90'][0]:.2f}..{stats['bootstrap_90'][1]:.2f},"
          f" p={stats['p_value']:.3g}) over {len(rows)} architectures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
