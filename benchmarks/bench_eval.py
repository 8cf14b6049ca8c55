"""Evaluator throughput per backend on real images, and the data pipeline alone.

    python benchmarks/bench_eval.py [--imagenet ../shared/data/imagenet-sample] [--model efficientnet_lite0]
                                    [--rounds 3] [--batch-size 32] [--workers 2] [--threads 2]

Exports the model once (ONNX, TFLite fp32 and int8) into a temporary folder, then runs the full
``moga-eval`` loop (decode + preprocess + inference + metrics) for every backend in interleaved
rounds and reports median images/s and the ratio to torch eager. "pipeline" is decode + resize +
crop + normalize alone, with the same worker threads.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import moga_zoo
from moga_zoo.data import datasets
from moga_zoo.evaluate import _load, evaluate
from moga_zoo.export import export
from moga_zoo.runners import make_runner

ROOT = Path(__file__).resolve().parents[1]


def pipeline_rate(ds, pre, workers: int) -> float:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        arrays = [a for a, err in pool.map(lambda s: _load(s, pre), ds.samples) if a is not None]
    return len(arrays) / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--imagenet", default=str(ROOT.parent / "shared" / "data" / "imagenet-sample"))
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--weights", default="imagenet")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    model = moga_zoo.create_model(args.model, weights=args.weights).eval()
    ds = datasets.imagenet(args.imagenet)
    pre = model.pretrained_cfg.preprocess
    files = sorted(Path(args.imagenet).glob("*.JPEG"))
    out = Path(tempfile.mkdtemp(prefix="bench_eval_"))
    runners = {"torch eager": make_runner("torch", model=model, threads=args.threads)}
    onnx = export(model, "onnx", out, dynamic_batch=True)["path"]
    runners["onnxruntime"] = make_runner("onnxruntime", artifact=onnx, threads=args.threads)
    fp32 = export(model, "tflite", out)["path"]
    runners["tflite fp32"] = make_runner("tflite", artifact=fp32, threads=args.threads)
    int8 = export(model, "tflite", out, quantize="int8", calib=files[::2])["path"]
    runners["tflite int8"] = make_runner("tflite", artifact=int8, threads=args.threads)
    rates = {k: [] for k in ["pipeline"] + list(runners)}
    acc = {}
    for _ in range(args.rounds):
        rates["pipeline"].append(pipeline_rate(ds, pre, args.workers))
        for name, runner in runners.items():
            res = evaluate(runner, ds, pre, batch_size=args.batch_size, workers=args.workers, progress=False)
            rates[name].append(res.images_per_s)
            acc[name] = (res.top1, res.top5)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"{args.model} ({args.weights}) on {len(ds)} images of {args.imagenet}; batch {args.batch_size}, "
          f"{args.workers} decode threads, {args.threads} compute threads, {args.rounds} interleaved rounds")
    print(f"{'stage':<14}{'images/s':>10}{'range':>18}{'vs torch':>10}{'top-1':>8}{'top-5':>8}")
    for k, v in med.items():
        acc_cols = "".join(f"{a:>8.1f}" for a in acc[k]) if k in acc else f"{'-':>8}{'-':>8}"
        ratio = v / med["torch eager"]
        print(f"{k:<14}{v:>10.1f}{min(rates[k]):>9.1f}-{max(rates[k]):<8.1f}{ratio:>9.2f}x{acc_cols}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
