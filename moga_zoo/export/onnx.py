"""ONNX export: TorchScript exporter (it honours the requested opset), slimmed, checked, verified
with onnxruntime against the torch model before the file appears under its final name."""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import torch

from ..runners import METADATA_KEY, OnnxRunner
from ..files import atomic_path
from .common import ExportError, compare, finish, load_images, provenance, torch_logits, verify_or_fail

INPUT, OUTPUT = "input", "logits"
ONNX_TOLERANCE = 1e-4


def to_onnx(module: torch.nn.Module, example: torch.Tensor, opset: int = 17, dynamic_batch: bool = False):
    """Trace ``module`` to a slimmed ModelProto (BN folded, no Identity/Constant chains)."""
    import onnx
    import onnxslim

    if opset < 11:
        raise ExportError(f"opset {opset} is too old; use 11 or newer (17 for native HardSwish)")
    buf = io.BytesIO()
    axes = {INPUT: {0: "batch"}, OUTPUT: {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on SAME-padding sizes (constant at export)
        torch.onnx.export(module.eval(), (example,), buf, dynamo=False, opset_version=opset,
                          input_names=[INPUT], output_names=[OUTPUT], dynamic_axes=axes)
    proto = onnxslim.slim(onnx.load_from_string(buf.getvalue()))
    if proto is None:
        raise ExportError("onnxslim failed on the exported graph")
    return proto


def graph(model: torch.nn.Module, opset: int, dynamic_batch: bool, size: int):
    return to_onnx(model, torch.zeros(1, model.spec.in_chans, size, size), opset, dynamic_batch)


def set_metadata(proto, meta: dict):
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    proto.producer_name = "moga-zoo"


def save_verified(proto, path: Path, model, images, fmt: str, extra: dict, threads: int | None = None) -> dict:
    """Check, write to a temporary name, verify with onnxruntime, then publish file + sidecar."""
    import onnx

    size = proto.graph.input[0].type.tensor_type.shape.dim[2].dim_value
    batch = proto.graph.input[0].type.tensor_type.shape.dim[0]
    input_info = {"name": INPUT, "shape": [batch.dim_value or "batch", model.spec.in_chans, size, size],
                  "layout": "NCHW", "dtype": "float32", "output": OUTPUT}
    info = provenance(model, fmt, input_info, extra)
    set_metadata(proto, {k: info[k] for k in ("model", "preprocess", "labels", "num_classes", "input",
                                              "weights_sha256")})
    onnx.checker.check_model(proto, full_check=True)
    imgs = load_images(images, model.pretrained_cfg.preprocess)
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
        ref = torch_logits(model, imgs.x)
        got = OnnxRunner(tmp, threads)(imgs.x)
        check = compare(ref, got, imgs.labels)
        check["images"] = imgs.source
        verify_or_fail(check, ONNX_TOLERANCE, "onnxruntime")
    info["verification"] = check
    info["ops"] = sorted({n.op_type for n in proto.graph.node})
    return finish(path, info)


def export_onnx(model, path: str | Path, *, opset: int = 17, dynamic_batch: bool = False,
                images=None, threads: int | None = None) -> dict:
    proto = graph(model, opset, dynamic_batch, model.input_size)
    return save_verified(proto, Path(path), model, images, "onnx",
                         {"opset": opset, "dynamic_batch": dynamic_batch}, threads)

