"""TFLite through the Keras builder: fp32, fp16 weights, or full int8 calibrated on real images."""
from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from ..runners import TFLiteRunner
from ..files import atomic_path
from .common import (ExportError, compare, finish, image_files, load_images, provenance, torch_logits,
                     verify_or_fail)
from .keras import keras_from_torch

QUANTIZE = (None, "fp16", "int8")
FP32_TOLERANCE = 1e-4


def converter(keras_model, quantize: str | None = None, calib_nchw: np.ndarray | None = None):
    """The TFLite converter as moga-export sets it up (also what an int8 per-layer check debugs)."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    if quantize == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        if calib_nchw is None or not len(calib_nchw):
            raise ExportError("int8 needs calibration images: pass --calib PATH (a few hundred real images "
                              "like the ones the model will see)")

        def representative():
            for x in calib_nchw:
                yield [x[None].transpose(0, 2, 3, 1)]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv


def convert(keras_model, quantize: str | None = None, calib_nchw: np.ndarray | None = None) -> bytes:
    conv = converter(keras_model, quantize, calib_nchw)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # Keras prints its signature
        # int8 inputs' scale and zero point come from the representative set; the converter's
        # warning about missing input statistics concerns the TF1 path only
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
        return conv.convert()


def _say(msg: str) -> None:
    """Progress of a long export, on stderr (minutes for int8), in place of TensorFlow's noise."""
    print(f"  {msg} ...", file=sys.stderr, flush=True)


def tflite_ops(path) -> list[str]:
    """Builtin op names of a .tflite file (read without XNNPACK, which would hide them)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    it = Interpreter(model_path=str(path),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    return sorted({d["op_name"] for d in it._get_ops_details()})


def export_tflite(model, path: str | Path, *, quantize: str | None = None, calib=None, images=None,
                  threads: int | None = None) -> dict:
    """``calib``: images to calibrate int8 on; ``images``: images to verify on (default: calib,
    else the built-in set)."""
    if quantize not in QUANTIZE:
        raise ExportError(f"unknown quantization {quantize!r}; use fp16 or int8")
    pre = model.pretrained_cfg.preprocess
    if quantize == "int8" and calib is not None and images is None:
        # int8 is verified on images it was not calibrated on: every 4th calibration file is held out
        files = image_files(calib) if isinstance(calib, (str, os.PathLike)) else [Path(p) for p in calib]
        if len(files) < 2:
            raise ExportError("int8 needs at least 2 images in --calib (3 in 4 calibrate, 1 in 4 verify), or "
                              "give --verify PATH")
        calib, images = [f for i, f in enumerate(files) if i % 4 != 3], files[3::4] or files[-1:]
    cal = load_images(calib, pre) if calib is not None else None
    same = images is None or images is calib  # verifying on the calibration set: decode it once
    ver = cal if same and cal is not None else load_images(images, pre)
    _say(f"building the Keras model of {model.spec.name} and copying the weights")
    km = keras_from_torch(model, batch_size=1)
    _say(f"converting to TFLite {quantize or 'fp32'}" + (f" (calibrating on {cal.source})" if cal else ""))
    blob = convert(km, quantize, cal.x if cal is not None else None)
    _say(f"verifying against torch on {ver.source}")
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(blob)
        runner = TFLiteRunner(tmp, threads)
        check = compare(torch_logits(model, ver.x), runner(ver.x), ver.labels)
        check["images"] = ver.source
        if quantize is None:
            verify_or_fail(check, FP32_TOLERANCE, "TFLite fp32")
        inp = runner.inp
        input_info = {"name": inp["name"], "shape": [int(d) for d in inp["shape"]], "layout": "NHWC",
                      "dtype": np.dtype(inp["dtype"]).name,
                      "quantization": [float(q) for q in inp["quantization"]]}
        ops = tflite_ops(tmp)
    extra = {"quantize": quantize or "fp32", "verification": check, "ops": ops,
             "calibration": cal.source if cal is not None else None}
    return finish(path, provenance(model, "tflite", input_info, extra))
