"""Our eager models against the authors'-style reference, side by side in one process.

    python benchmarks/bench_eager.py [--models moga_a moga_b moga_c] [--rounds 15] [--threads 2]

Batch 1, 224x224, torch.inference_mode. Each round times every variant once (a median of
``--iters`` calls), variants interleaved so machine noise hits all of them alike; the report gives
the median over rounds and the ratio of medians to the reference.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_moga import ReferenceMoGA  # noqa: E402

import moga_zoo  # noqa: E402
from moga_zoo.inference import inference_ready  # noqa: E402


def time_call(fn, x, iters: int) -> float:
    ts = []
    with torch.inference_mode():
        for _ in range(iters):
            t0 = time.perf_counter()
            fn(x)
            ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["moga_a", "moga_b", "moga_c"])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    x = torch.randn(1, 3, 224, 224)
    results = {}
    for name in args.models:
        ref = ReferenceMoGA(name).eval()
        ours = moga_zoo.create_model(name).eval()
        ours.load_state_dict(moga_zoo.weights.fit_state_dict(ours, ref.state_dict()))
        variants = {"reference": ref, "moga_zoo eager": ours, "moga_zoo inference_ready": inference_ready(ours)}
        with torch.inference_mode():
            for m in variants.values():
                assert torch.allclose(m(x), ref(x), atol=1e-3), "variants disagree"
        for m in variants.values():
            time_call(m, x, 5)  # warm-up
        times = {k: [] for k in variants}
        for _ in range(args.rounds):
            for k, m in variants.items():
                times[k].append(time_call(m, x, args.iters))
        med = {k: statistics.median(v) for k, v in times.items()}
        results[name] = {k: {"median_ms": round(med[k], 3), "ratio": round(med[k] / med["reference"], 3),
                             "min_ms": round(min(times[k]), 3), "max_ms": round(max(times[k]), 3)}
                         for k in variants}
    print(f"batch 1, 224x224, {args.threads} threads, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{args.rounds} interleaved rounds x {args.iters} calls")
    print(f"{'model':<8} {'variant':<26} {'median ms':>10} {'vs reference':>13} {'range ms':>16}")
    for name, r in results.items():
        for k, v in r.items():
            print(f"{name:<8} {k:<26} {v['median_ms']:>10.2f} {v['ratio']:>12.2f}x "
                  f"{v['min_ms']:>7.2f}-{v['max_ms']:<7.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
