"""Training-step speed of our MoGA networks against the authors'-style implementation, in the same
loop (``moga_zoo.train.loop.fit`` with ``CrossEntropyStep``), side by side.

    python benchmarks/bench_train.py [--models moga_a moga_b moga_c] [--rounds 5] [--steps 8]
        [--batch-size 128] [--threads 2]

Each model is trained in its CIFAR-10 form (32x32, stem stride 1; the reference gets the same stem
stride) on random images. The reference runs as the authors' pipeline feeds it (contiguous NCHW batches) and, for
transparency, also fed our channels_last batches. A round runs ``--steps`` optimizer steps of
every variant in turn, so
machine noise hits all of them alike; the report gives the median images/s over rounds and the
ratio of medians.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent))
from reference_moga import ReferenceMoGA  # noqa: E402

from moga_zoo import specs  # noqa: E402
from moga_zoo.builder import SpecNet  # noqa: E402
from moga_zoo.data.augment import Augment  # noqa: E402
from moga_zoo.data.loader import InMemorySet, TrainLoader  # noqa: E402
from moga_zoo.data.preprocess import CIFAR10_PREPROCESS  # noqa: E402
from moga_zoo.train.loop import CrossEntropyStep, RunConfig, fit  # noqa: E402
from moga_zoo.train.recipes import Recipe  # noqa: E402


class NCHW(torch.nn.Module):
    """The authors' pipeline: their loader yields contiguous NCHW batches (torchvision's ToTensor)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x.contiguous())


def images_per_s(model, loader, recipe) -> float:
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        fit(model, CrossEntropyStep(0.1), loader, recipe, RunConfig(Path(d), progress=False))
        return len(loader) * loader.batch_size / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["moga_a", "moga_b", "moga_c"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    n = args.steps * args.batch_size
    data = InMemorySet(torch.randint(0, 256, (n, 32, 32, 3), generator=g, dtype=torch.uint8).numpy(),
                       (torch.arange(n) % 10).numpy(), [str(i) for i in range(10)])
    loader = TrainLoader(data, args.batch_size, Augment(), CIFAR10_PREPROCESS)
    recipe = Recipe(epochs=1, batch_size=args.batch_size, lr=0.05, warmup_epochs=0, schedule="constant")
    results = {}
    for name in args.models:
        ref = ReferenceMoGA(name, n_class=10)
        ref.stem[0].stride = (1, 1)  # the CIFAR-10 form, as specs.for_cifar10 writes it
        variants = {"reference (authors' style, NCHW)": NCHW(ref),
                    "reference fed channels_last batches": ref,
                    "moga_zoo": SpecNet(specs.for_cifar10(specs.BUILTIN_SPECS[name]))}
        speeds = {k: [] for k in variants}
        for k, m in variants.items():  # warm-up
            images_per_s(m, TrainLoader(data, args.batch_size, Augment(), CIFAR10_PREPROCESS), recipe)
        for _ in range(args.rounds):
            for k, m in variants.items():
                speeds[k].append(images_per_s(m, loader, recipe))
        med = {k: statistics.median(v) for k, v in speeds.items()}
        base = med["reference (authors' style, NCHW)"]
        results[name] = {k: (med[k], med[k] / base, min(v), max(v)) for k, v in speeds.items()}
    print(f"training step, CIFAR-10 form (32x32), batch {args.batch_size}, {args.threads} threads, SGD, "
          f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {args.rounds} rounds x "
          f"{args.steps} steps, same loop (train.loop.fit)")
    print(f"{'model':<8} {'variant':<38} {'images/s':>9} {'vs reference':>13} {'range':>15}")
    for name, r in results.items():
        for k, (med, ratio, lo, hi) in r.items():
            print(f"{name:<8} {k:<38} {med:>9.1f} {ratio:>12.2f}x {lo:>7.1f}-{hi:<7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
