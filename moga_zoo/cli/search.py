"""``moga-zoo search``: MoGA's search (weighted NSGA-II over a latency table and an accuracy source)."""
from __future__ import annotations

import json
from pathlib import Path

from .common import nonneg_int, positive_int

EXAMPLES = """subcommands, with one worked example each:

  evolve          weighted NSGA-II over the MoGA space: a latency table + an accuracy source -> specs
      moga-zoo search evolve --table benchmarks/results/lut_ort_1t.json --accuracy proxy --out runs/evolve
  train-supernet  the FairNAS supernet (strict fairness, 12 paths per step) on CIFAR-10
      moga-zoo search train-supernet --cifar10 ../shared/data/cifar10-jpeg.zip --out runs/supernet --epochs 3
  run             the whole pipeline on CPU: supernet -> NSGA-II with supernet accuracy -> specs
      moga-zoo search run --cifar10 ../shared/data/cifar10-jpeg.zip --table benchmarks/results/lut_ort_1t.json --out runs/pipeline

Accuracy sources: proxy (MACs line through MoGA-C and MoGA-A, not a measurement),
csv:FILE (columns choices, top1), supernet:CKPT (a trained FairNAS supernet).
"""


def cmd_search_help(args) -> int:
    print("usage: moga-zoo search {evolve,train-supernet,run} ...\n")
    print(EXAMPLES)
    return 0


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"--weights takes comma-separated numbers such as 0.4,0.4,0.2, got {text!r}") from None


def add_scoring_args(p, val_images: int | None = None, bn_images: int | None = None) -> None:
    """How a supernet scores each candidate (BN recalibration, then top-1 on held-out images)."""
    p.add_argument("--val-images", type=positive_int, default=val_images,
                   help=f"held-out images each candidate is scored on (default: {val_images or 'all'})")
    p.add_argument("--bn-images", type=positive_int, default=bn_images,
                   help=f"training images for each candidate's BN recalibration (default: {bn_images or 2000})")


def print_summary(summary: dict, out) -> None:
    """The picked specs, MoGA-A/B/C scored the same way, and which searched model matches each."""
    print(f"{summary['evaluated']} models evaluated in {summary['generations_done']} generations; "
          f"front of {len(summary['front'])}; specs: {', '.join(summary['picked'])} in {out}")
    print(f"{'spec':<22}{'top-1 %':>9}{'latency ms':>12}{'params M':>10}  choices")
    for r in summary["front"]:
        if r["picked"]:
            print(f"{r['picked']:<22}{r['top1']:>9.2f}{r['latency_ms']:>12.3f}{r.get('params_m', 0):>10.2f}  {r['choices']}")
    for name, r in summary["references"].items():
        print(f"{name + ' (reference)':<22}{r['top1']:>9.2f}{r['latency_ms']:>12.3f}{r.get('params_m', 0):>10.2f}  {r['choices']}")
    for name, r in summary["references"].items():
        m = r["matched_by"]
        print(f"{name}: " + ("no evaluated model is as accurate and as fast" if m is None else
                             f"{m['spec']} is at least as accurate ({m['top1']:.2f}%) and no slower "
                             f"({m['latency_ms']:.3f} ms){'' if m['on_front'] else ' (off the 3-objective front)'}"))


def cmd_evolve(args) -> int:
    from ..search.evolve import evolve

    scoring = {k: v for k, v in (("val_images", args.val_images), ("bn_images", args.bn_images)) if v is not None}
    if scoring and not args.accuracy.startswith("supernet:"):
        raise ValueError("--val-images and --bn-images set how a supernet scores candidates: "
                         "they need --accuracy supernet:CKPT")
    weights = _floats(args.weights) if args.weights else ([0.4, 0.4, 0.2] if args.objectives == 3 else [0.5, 0.5])
    summary = evolve(table=args.table, accuracy=args.accuracy, out=args.out, pop_size=args.pop,
                     generations=args.generations, weights=weights, seed=args.seed, resume=args.resume,
                     k=args.k, params=args.params, n_objectives=args.objectives, mutation=args.mutation,
                     p_guided=args.p_guided, workers=args.workers, form=args.form, accuracy_kw=scoring)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0 if summary["complete"] else 130
    print_summary(summary, args.out)
    return 0 if summary["complete"] else 130


def cmd_train_supernet(args) -> int:
    from ..train.run import default_command
    from ..search.pipeline import SUPERNET_RECIPE, train_supernet
    from .train import recipe_from_args, set_threads

    set_threads(args)
    result = train_supernet(cifar10=args.cifar10, imagenet=args.imagenet, out=args.out, recipe=recipe_from_args(SUPERNET_RECIPE, args),
                            val_size=args.val_size, seed=args.seed, resume=args.resume,
                            same_batch=not args.consecutive_batches, shared_grad=args.shared_grad,
                            micro_batches=args.micro_batches,
                            checkpoint_minutes=args.checkpoint_minutes, checkpoint_steps=args.checkpoint_steps,
                            workers=args.workers, command=default_command())
    if result:
        print(json.dumps(result, indent=2) if args.json else
              f"supernet trained {result['epochs']} epochs in {result['wall_seconds'] / 60:.0f} min; MoGA-C path "
              f"top-1 {result['final'].get('val_top1')}% on held-out images; {args.out}/supernet.safetensors")
    return 0


def cmd_run(args) -> int:
    from ..train.run import default_command
    from ..search.pipeline import SUPERNET_RECIPE, run_pipeline
    from .train import recipe_from_args, set_threads

    set_threads(args)
    state = run_pipeline(cifar10=args.cifar10, imagenet=args.imagenet, table=args.table, out=args.out,
                         recipe=recipe_from_args(SUPERNET_RECIPE.override(epochs=2), args),
                         val_size=args.val_size, val_images=args.val_images, bn_images=args.bn_images,
                         pop_size=args.pop, generations=args.generations, seed=args.seed, k=args.k,
                         resume=args.resume, command=default_command())
    if args.json:
        print(json.dumps(state, indent=2))
    else:
        for name, stage in state["stages"].items():
            print(f"stage {name}: {'complete' if stage['complete'] else 'stopped'} in {stage['seconds'] / 60:.1f} min")
        front = Path(args.out) / "search" / "front.json"
        if state["stages"].get("evolve", {}).get("complete") and front.is_file():
            print_summary(json.loads(front.read_text()), front.parent)
    return 0 if all(s["complete"] for s in state["stages"].values()) else 130


def add_subcommands(sub) -> None:
    from .train import add_data_args, add_recipe_args, add_run_args

    s = sub.add_parser("search", help="MoGA search: weighted NSGA-II (evolve), FairNAS supernet, whole pipeline",
                       description=__doc__, epilog=EXAMPLES,
                       formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    s.set_defaults(func=cmd_search_help)
    ss = s.add_subparsers(dest="search_command")
    e = ss.add_parser("evolve", help="weighted NSGA-II over the MoGA space")
    e.add_argument("--table", required=True, help="latency table JSON (moga-zoo lut build / import)")
    e.add_argument("--accuracy", required=True, help="proxy | csv:FILE | supernet:CKPT")
    e.add_argument("--out", required=True)
    e.add_argument("--pop", type=positive_int, default=70)
    e.add_argument("--generations", type=positive_int, default=120)
    e.add_argument("--weights", help="Eq. 5 crowding weights (default 0.4,0.4,0.2; 0.5,0.5 for 2 objectives)")
    e.add_argument("--seed", type=nonneg_int, default=0)
    e.add_argument("--resume", action="store_true")
    e.add_argument("--k", type=positive_int, default=5, help="specs to pick along the front")
    e.add_argument("--params", choices=("max", "min"), default="max",
                   help="the paper maximises parameters (default)")
    e.add_argument("--objectives", type=positive_int, choices=(2, 3), default=3, help="2 drops parameters")
    e.add_argument("--mutation", choices=("hierarchical", "random"), default="hierarchical")
    e.add_argument("--p-guided", type=float, default=0.5, help="share of guided mutations")
    e.add_argument("--workers", type=positive_int, default=1, help="processes evaluating candidates")
    e.add_argument("--form", choices=("imagenet", "cifar10"),
                   help="form of the emitted specs (default: the supernet's, else imagenet)")
    add_scoring_args(e)
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_evolve)

    t = ss.add_parser("train-supernet", help="FairNAS supernet with strict fairness (CIFAR-10 or ImageNet)")
    add_data_args(t)
    t.add_argument("--out", required=True)
    t.add_argument("--val-size", type=nonneg_int, default=5000, help="images held out of the training split")
    t.add_argument("--consecutive-batches", action="store_true",
                   help="the 12 paths of a step take 12 consecutive batches (default: the same batch)")
    t.add_argument("--shared-grad", choices=("mean", "sum"), default="mean",
                   help="the stem's and head's gradient over the 12 paths: mean (default, a stand-alone "
                        "step's size) or sum (the paper's accumulation read literally; a 12x step there)")
    t.add_argument("--resume", action="store_true")
    add_recipe_args(t)
    add_run_args(t)
    t.set_defaults(func=cmd_train_supernet)

    r = ss.add_parser("run", help="supernet -> NSGA-II -> specs on CIFAR-10, resumable per stage",
                      description="CPU-scale defaults, sized from benchmarks/bench_supernet.py on this 2-core "
                                  "machine (BENCHMARKS.md section 9): supernet 2 epochs (~1.7 h), 40 x 30 "
                                  "candidates each scored on 1,000 held-out images after BN recalibration on "
                                  "500 (~40 min). The paper's settings (32 epochs, 70 x 120, BN on 2,000) are "
                                  "train-supernet's and evolve's defaults for the ImageNet form.")
    add_data_args(r)
    r.add_argument("--table", required=True, help="latency table JSON")
    r.add_argument("--out", required=True)
    r.add_argument("--val-size", type=nonneg_int, default=5000)
    add_scoring_args(r, val_images=1000, bn_images=500)
    r.add_argument("--pop", type=positive_int, default=40)
    r.add_argument("--generations", type=positive_int, default=30)
    r.add_argument("--k", type=positive_int, default=5)
    r.add_argument("--resume", action="store_true")
    add_recipe_args(r)
    add_run_args(r)
    r.set_defaults(func=cmd_run)
