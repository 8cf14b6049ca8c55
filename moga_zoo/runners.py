"""Backends that turn a batch of preprocessed images (NCHW float32) into logits.

Exported files carry their own preprocessing and labels (a JSON sidecar ``<file>.json`` written by
the exporter, and for ONNX the same object in ``metadata_props``), so an artifact is evaluated
exactly as its source model.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from .native_log import quiet_native_info

BACKENDS = ("torch", "onnxruntime", "tflite")
METADATA_KEY = "moga_zoo"


def sidecar_path(artifact: str | Path) -> Path:
    return Path(f"{artifact}.json")


def artifact_info(artifact: str | Path) -> dict:
    """Provenance of an exported file: its sidecar, else (ONNX) its metadata_props."""
    artifact = Path(artifact)
    if not artifact.is_file():
        raise FileNotFoundError(f"artifact {artifact} does not exist")
    side = sidecar_path(artifact)
    if side.is_file():
        try:
            info = json.loads(side.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"sidecar {side} is not valid JSON ({e}); re-export the file or fix the sidecar") from None
        if not isinstance(info, dict):
            raise ValueError(f"sidecar {side} is not a JSON object")
        recorded = info.get("sha256")
        if recorded:
            from .files import sha256_file
            if sha256_file(artifact) != recorded:
                raise ValueError(f"{artifact} does not match the sha256 its sidecar {side.name} records: the file "
                                 f"was replaced or damaged after export; re-export it")
        return info
    if artifact.suffix == ".onnx":
        import onnx
        m = onnx.load(str(artifact), load_external_data=False)
        for p in m.metadata_props:
            if p.key == METADATA_KEY:
                return json.loads(p.value)
    raise ValueError(f"{artifact} has no sidecar {side.name} (nor ONNX metadata) saying how to "
                     f"preprocess its input and what its outputs mean; export it with moga-export, or "
                     f"write that JSON beside it (keys 'preprocess' and 'labels', see an exported sidecar)")


class TorchRunner:
    name = "torch"

    def __init__(self, model: torch.nn.Module, threads: int | None = None):
        if threads:
            torch.set_num_threads(threads)
        self.model = model.eval()

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.model(torch.from_numpy(batch)).float().numpy()


class OnnxRunner:
    name = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None, spinning: bool = False):
        """``spinning``: let idle compute threads spin (lowest batch-1 latency when nothing
        else runs); off by default so decoding threads get the cores between batches."""
        import onnxruntime as ort
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self.fixed_batch and batch.shape[0] != self.fixed_batch:
            return np.concatenate([self(batch[i:i + self.fixed_batch])
                                   for i in range(0, len(batch), self.fixed_batch)])
        return self.session.run(None, {self.input_name: batch})[0]


def tflite_interpreter(path: str | Path, threads: int | None = None):
    """An interpreter with its tensors allocated (which is when the runtime logs its delegate)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # older stacks: TensorFlow's own (slated for removal)
        from tensorflow.lite import Interpreter
    with quiet_native_info():
        interp = Interpreter(model_path=str(path), num_threads=threads or os.cpu_count())
        interp.allocate_tensors()
    return interp


class TFLiteRunner:
    """NHWC, possibly int8: inputs are quantized and outputs dequantized with the file's params."""

    name = "tflite"

    def __init__(self, path: str | Path, threads: int | None = None):
        self.interp = tflite_interpreter(path, threads)
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]
        self.batch = int(self.inp["shape"][0])

    def _run_one(self, x: np.ndarray) -> np.ndarray:
        x = x.transpose(0, 2, 3, 1)
        scale, zero = self.inp["quantization"]
        if self.inp["dtype"] != np.float32:
            info = np.iinfo(self.inp["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max)
        self.interp.set_tensor(self.inp["index"], np.ascontiguousarray(x.astype(self.inp["dtype"])))
        self.interp.invoke()
        y = self.interp.get_tensor(self.out["index"])
        scale, zero = self.out["quantization"]
        if self.out["dtype"] != np.float32:
            y = (y.astype(np.float32) - zero) * scale
        return y.astype(np.float32)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.concatenate([self._run_one(batch[i:i + self.batch]) for i in range(0, len(batch), self.batch)])


def make_runner(backend: str, *, model=None, artifact=None, threads: int | None = None):
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend == "torch":
        if model is None:
            raise ValueError("the torch backend needs --model (and usually --weights)")
        return TorchRunner(model, threads)
    if artifact is None:
        raise ValueError(f"the {backend} backend evaluates an exported file: pass --artifact FILE")
    want = {"onnxruntime": ".onnx", "tflite": ".tflite"}[backend]
    if not str(artifact).lower().endswith(want):
        raise ValueError(f"{artifact} is not a {want} file, which the {backend} backend runs: pass --backend "
                         f"{'tflite' if want == '.onnx' else 'onnxruntime'} or the matching file")
    return (OnnxRunner if backend == "onnxruntime" else TFLiteRunner)(artifact, threads)
