"""What the stem and head of a FairNAS supernet should receive from a strict-fair step: the sum
of the 12 paths' gradients (the paper's "accumulate", read literally: a 12x step for the parts
every path shares) or their mean (what one stand-alone step gives; the choice blocks are used
once a step, so they get their path's gradient either way).

    python benchmarks/bench_fair_grad.py --cifar10 ../shared/data/cifar10-jpeg.zip
        [--images 3200] [--batch-size 64] [--steps 40] [--lr 0.05] [--threads 1]

Both variants start from the same weights and see the same batches and paths (the supernet
recipe's SGD, momentum 0.9, no warm-up). Prints the training loss (mean over the 12 paths) per
10-step window, the largest single-step loss after the first window, and MoGA-C's path top-1
on 1,000 held-out training images after BN recalibration.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moga_zoo import specs  # noqa: E402
from moga_zoo.data import datasets  # noqa: E402
from moga_zoo.data.augment import Augment  # noqa: E402
from moga_zoo.data.loader import InMemorySet, TrainLoader, eval_batches  # noqa: E402
from moga_zoo.data.preprocess import CIFAR10_PREPROCESS  # noqa: E402
from moga_zoo.search.bn import recalibrate  # noqa: E402
from moga_zoo.search.fairness import FairStep  # noqa: E402
from moga_zoo.search.supernet import Supernet  # noqa: E402
from moga_zoo.train.distributed import Dist  # noqa: E402
from moga_zoo.train.loop import StepContext, evaluate_arrays  # noqa: E402

HELD_OUT = 1000


def run(variant: str, train: InMemorySet, held: InMemorySet, args) -> dict:
    torch.manual_seed(0)
    net = Supernet("cifar10", 10, drop_rate=0.0).train()
    opt = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9, weight_decay=4e-5)
    step = FairStep(shared_grad=variant)
    loader = TrainLoader(train, args.batch_size, Augment(), CIFAR10_PREPROCESS, seed=0)
    losses = []
    for s in range(args.steps):
        opt.zero_grad(set_to_none=True)
        stats = step(net, [loader.batch(s // len(loader), s % len(loader))], StepContext(0, s, s, 0, Dist()))
        opt.step()
        losses.append(stats.loss / stats.seen)
        print(f"{variant} step {s}: loss {losses[-1]:.3f}", file=sys.stderr, flush=True)
    sub = net.subnet(specs.PUBLISHED_CHOICES["moga_c"])
    recalibrate(sub, eval_batches(train.subset(np.arange(min(2000, len(train)))), CIFAR10_PREPROCESS, 250))
    top1 = evaluate_arrays(sub, eval_batches(held, CIFAR10_PREPROCESS, 250))["top1"]
    return {"losses": losses, "moga_c_top1": top1}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cifar10", required=True)
    ap.add_argument("--images", type=int, default=3200, help="training images (a seeded random subset)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ds = datasets.cifar10(args.cifar10, "train")
    pick = np.random.default_rng(0).permutation(len(ds.samples))[:args.images + HELD_OUT]  # files are by class
    ds.samples = [ds.samples[i] for i in pick]
    data = InMemorySet.from_dataset(ds, 32, workers=1)
    train, held = data.subset(np.arange(args.images)), data.subset(np.arange(args.images, len(data)))
    results = {v: run(v, train, held, args) for v in ("sum", "mean")}
    print(f"supernet (CIFAR-10 form), {args.images} images, batch {args.batch_size}, lr {args.lr}, "
          f"{args.steps} fair steps, torch {torch.__version__}")
    print(f"{'steps':<10}" + "".join(f"{'loss (' + v + ')':>14}" for v in results))
    for lo in range(0, args.steps, 10):
        print(f"{lo + 1:>3}-{min(lo + 10, args.steps):<6}" +
              "".join(f"{np.mean(r['losses'][lo:lo + 10]):>14.3f}" for r in results.values()))
    print(f"{'max after':<10}" + "".join(f"{max(r['losses'][10:], default=float('nan')):>14.3f}"
                                        for r in results.values()))
    print(f"{'MoGA-C %':<10}" + "".join(f"{r['moga_c_top1']:>14.2f}" for r in results.values())
          + f"   (path top-1 on {len(held)} held-out images, BN recalibrated)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
