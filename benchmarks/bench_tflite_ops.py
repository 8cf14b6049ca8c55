"""Single-layer TFLite timings behind two findings in BENCHMARKS.md section 4.

    python benchmarks/bench_tflite_ops.py [--threads 2] [--runs 200]

1. fp32 depthwise convolution at 28x28x240 for kernels 3, 5, 7 (7x7 falls off a cliff here).
2. int8 1x1 convolution at 28x28x240 followed by nothing, ReLU6, hard-swish, or an SE gate.
Each layer is a Keras model converted with moga_zoo.export.tflite.convert (int8 calibrated on
random inputs) and timed with the XNNPACK-enabled interpreter; medians in ms.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from moga_zoo.export.tflite import convert, tflite_ops
from moga_zoo.runners import TFLiteRunner


def timed(keras_model, quantize, x, threads, runs) -> tuple[float, list[str]]:
    path = Path(tempfile.mkdtemp()) / "layer.tflite"
    path.write_bytes(convert(keras_model, quantize, x))
    runner = TFLiteRunner(path, threads)
    for _ in range(20):
        runner(x[:1])
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        runner(x[:1])
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3, tflite_ops(path)


def main(argv=None) -> int:
    import keras
    L = keras.layers
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args(argv)
    x = np.random.default_rng(0).standard_normal((8, 240, 28, 28)).astype(np.float32)

    def layer(body):
        inp = keras.Input((28, 28, 240), batch_size=1)
        return keras.Model(inp, body(inp))

    print(f"28x28x240, {args.threads} threads, median of {args.runs} runs")
    for k in (3, 5, 7):
        ms, ops = timed(layer(lambda t: L.DepthwiseConv2D(k, 1, "same", use_bias=False)(t)), None, x,
                        args.threads, args.runs)
        print(f"fp32 depthwise {k}x{k}: {ms:.3f} ms  {ops}")

    def se(t):
        g = L.GlobalAveragePooling2D(keepdims=True)(t)
        g = L.Activation("hard_sigmoid")(L.Conv2D(240, 1)(L.ReLU()(L.Conv2D(60, 1)(g))))
        return L.Multiply()([t, g])

    tails = {"conv only": lambda t: t, "conv + ReLU6": lambda t: L.ReLU(6.0)(t),
             "conv + hard-swish": lambda t: L.Activation("hard_swish")(t), "conv + SE": se}
    for name, tail in tails.items():
        for quant in ("int8", None):
            ms, ops = timed(layer(lambda t: tail(L.Conv2D(240, 1, use_bias=False)(t))), quant, x,
                            args.threads, args.runs)
            print(f"{quant or 'fp32'} {name}: {ms:.3f} ms  {ops}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
