"""ImageNet streaming throughput: training crops (random-resized, 224) decoded per second from the
real sample JPEGs, with and without reduced-scale JPEG decoding (``draft``), per thread count.

    python benchmarks/bench_stream.py [--images ../shared/data/imagenet-sample] [--rounds 5]
        [--threads 1 2]

Each round decodes every image once per variant, alternating the variants (the machine is shared,
so they are compared side by side); medians over rounds.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moga_zoo.data.datasets import Sample  # noqa: E402
from moga_zoo.data.stream import load_crop  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", default=str(Path(__file__).resolve().parents[2] / "shared/data/imagenet-sample"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args(argv)
    files = sorted(Path(args.images).glob("*.JPEG"))
    if not files:
        ap.error(f"no .JPEG files in {args.images}")
    samples = [Sample(f.name, lambda p=f: open(p, "rb"), 0) for f in files]
    print(f"{len(samples)} JPEGs from {args.images}, crops of {args.size}, {args.rounds} rounds")
    print("| threads | full decode img/s | draft img/s | speed-up |")
    print("|---|---|---|---|")
    for threads in args.threads:
        rates = {True: [], False: []}
        with ThreadPoolExecutor(threads) as pool:
            for r in range(args.rounds):
                for draft in (False, True):
                    t0 = time.perf_counter()
                    list(pool.map(lambda i: load_crop(samples[i], args.size, np.random.default_rng([r, i]), draft),
                                  range(len(samples))))
                    rates[draft].append(len(samples) / (time.perf_counter() - t0))
        full, fast = statistics.median(rates[False]), statistics.median(rates[True])
        print(f"| {threads} | {full:.0f} | {fast:.0f} | {fast / full:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
