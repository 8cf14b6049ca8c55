"""Exporters. Every artifact is written atomically with a JSON sidecar and verified against the
torch model in the same run: ONNX (general), TFLite (fp32/fp16/int8 via the Keras builder),
MACE-ready ONNX + deployment YAML."""
from __future__ import annotations

from pathlib import Path

from .common import ExportError

FORMATS = ("onnx", "tflite", "mace")


def artifact_name(model_name: str, fmt: str, quantize: str | None = None) -> str:
    return {"onnx": f"{model_name}.onnx", "mace": f"{model_name}.mace.onnx",
            "tflite": f"{model_name}.{quantize or 'fp32'}.tflite"}[fmt]


def export(model, fmt: str, out_dir: str | Path = "exported", *, weights=None, opset: int | None = None,
           dynamic_batch: bool = False, quantize: str | None = None, calib=None, images=None,
           deploy=None, threads: int | None = None) -> dict:
    """Export ``model`` (a registered name, spec file or SpecNet) and return the sidecar dict.

    ``images`` verify the artifact (default: ``calib``, of which TFLite int8 keeps every 4th image
    out of calibration to verify on; else images the project draws itself); ``calib``
    calibrates int8.
    """
    from ..registry import create_model

    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if quantize and fmt != "tflite":
        raise ExportError(f"--quantize applies to tflite, not {fmt}")
    if dynamic_batch and fmt != "onnx":
        raise ExportError(f"--dynamic-batch applies to onnx only ({fmt} files have a static batch of 1)")
    if opset is not None and fmt != "onnx":
        raise ExportError("--opset applies to onnx only (mace is fixed at opset 13, tflite has none)")
    if opset is not None and not 13 <= opset <= 20:
        raise ExportError(f"--opset {opset}: the exporter writes opsets 13..20 (17, the default, has native HardSwish)")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        import tempfile
        tempfile.TemporaryFile(dir=out).close()
    except OSError as e:
        raise ExportError(f"cannot write to --out {out}: {e.strerror}; nothing was exported") from None
    if isinstance(model, (str, Path)):
        model = create_model(model, weights=weights)
    model.eval()
    path = Path(out_dir) / artifact_name(model.spec.name, fmt, quantize)
    verify = images if images is not None else calib  # tflite int8 holds part of calib out itself
    if fmt == "onnx":
        from .onnx import export_onnx
        info = export_onnx(model, path, opset=opset or 17, dynamic_batch=dynamic_batch, images=verify,
                           threads=threads)
    elif fmt == "tflite":
        from .tflite import export_tflite
        info = export_tflite(model, path, quantize=quantize, calib=calib, images=images, threads=threads)
    else:
        from .mace import Deployment, export_mace
        info = export_mace(model, path, deploy=deploy or Deployment(), images=verify, threads=threads)
    info["path"] = str(path)
    return info


__all__ = ["ExportError", "FORMATS", "artifact_name", "export"]
