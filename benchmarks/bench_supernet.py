"""Budget arithmetic for the CPU-scale search, measured: one strict-fair supernet step, and one
candidate's evaluation (BN recalibration + held-out accuracy), on the CIFAR-10 form.

    python benchmarks/bench_supernet.py [--batch-size 128] [--threads 2] [--steps 3]
        [--bn-images 2000 500] [--val-images 5000 1000]

Prints the medians and what they imply for an epoch over 45,000 images and for a search of
pop x generations candidates.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moga_zoo import specs  # noqa: E402
from moga_zoo.data.augment import Augment  # noqa: E402
from moga_zoo.data.loader import InMemorySet, TrainLoader, eval_batches  # noqa: E402
from moga_zoo.data.preprocess import CIFAR10_PREPROCESS  # noqa: E402
from moga_zoo.search.bn import recalibrate  # noqa: E402
from moga_zoo.search.fairness import FairStep  # noqa: E402
from moga_zoo.search.supernet import Supernet  # noqa: E402
from moga_zoo.train.distributed import Dist  # noqa: E402
from moga_zoo.train.loop import StepContext, evaluate_arrays  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--bn-images", type=int, nargs="+", default=[2000, 500])
    ap.add_argument("--val-images", type=int, nargs="+", default=[5000, 1000])
    ap.add_argument("--pop", type=int, default=70)
    ap.add_argument("--generations", type=int, default=120)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    n = max(args.batch_size, max(args.bn_images), max(args.val_images))
    rng = np.random.default_rng(0)
    data = InMemorySet(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 10,
                       [str(i) for i in range(10)])
    net = Supernet("cifar10").train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    step = FairStep()
    loader = TrainLoader(data, args.batch_size, Augment(), CIFAR10_PREPROCESS)
    times = []
    for s in range(args.steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad()
        step(net, [loader.batch(0, 0)], StepContext(0, s, s, 0, Dist()))
        opt.step()
        times.append(time.perf_counter() - t0)
    fair = statistics.median(times[1:])
    print(f"supernet (CIFAR-10 form), batch {args.batch_size}, {args.threads} threads, torch {torch.__version__}")
    print(f"fair step (12 paths, one update): {fair:.2f} s -> one epoch over 45,000 images "
          f"({45000 // args.batch_size} steps): {fair * (45000 // args.batch_size) / 60:.0f} min")
    sub = net.subnet(specs.PUBLISHED_CHOICES["moga_c"])
    for bn in args.bn_images:
        for val in args.val_images:
            t0 = time.perf_counter()
            recalibrate(sub, eval_batches(data.subset(np.arange(bn)), CIFAR10_PREPROCESS, 250))
            t1 = time.perf_counter()
            evaluate_arrays(sub, eval_batches(data.subset(np.arange(val)), CIFAR10_PREPROCESS, 250))
            t2 = time.perf_counter()
            total = args.pop * args.generations * (t2 - t0)
            print(f"candidate with BN on {bn} + accuracy on {val} images: {t1 - t0:.2f} + {t2 - t1:.2f} s -> "
                  f"{args.pop} x {args.generations} candidates: {total / 3600:.1f} h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
