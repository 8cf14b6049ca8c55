"""What every exporter shares: atomic files, provenance sidecars, and the images used to verify
an artifact against the torch model."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from ..data import Preprocess, decode
from ..data.datasets import IMAGE_EXTS
from ..files import sha256_file, write_text_atomic


class ExportError(RuntimeError):
    """An export that cannot be made or did not verify."""


def built_in_images(n: int = 12, size: int = 320, seed: int = 0) -> list[Image.Image]:
    """Images this project draws itself (no data set needed): smooth gradients, shapes, stripes
    and noise at natural-image-like statistics, so verification exercises every channel and
    activation range rather than a constant input."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n):
        yy, xx = np.mgrid[0:size, 0:size] / size
        base = np.stack([np.sin(2 * np.pi * (xx * rng.uniform(0.5, 3) + rng.uniform())),
                         np.cos(2 * np.pi * (yy * rng.uniform(0.5, 3) + rng.uniform())),
                         np.sin(2 * np.pi * (xx + yy) * rng.uniform(0.5, 2))], -1)
        arr = ((base * 0.5 + 0.5) * rng.uniform(60, 200, 3) + rng.uniform(0, 55, 3)).astype(np.uint8)
        im = Image.fromarray(arr)
        draw = ImageDraw.Draw(im)
        for _ in range(rng.integers(3, 9)):
            box = sorted(rng.integers(0, size, 2)), sorted(rng.integers(0, size, 2))
            xy = [box[0][0], box[1][0], box[0][1] + 8, box[1][1] + 8]
            color = tuple(int(c) for c in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(xy, fill=color)
        if i % 3 == 0:
            for k in range(0, size, int(rng.integers(6, 24))):
                draw.line([(k, 0), (k, size)], fill=tuple(int(c) for c in rng.integers(0, 256, 3)), width=2)
        noisy = np.asarray(im.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.5))), np.int16)
        noisy = noisy + rng.normal(0, rng.uniform(2, 12), noisy.shape)
        images.append(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)))
    return images


def image_files(path: str | Path) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise ExportError(f"no images found under {path} (looked for {', '.join(sorted(IMAGE_EXTS))})")
    return files


@dataclass
class ImageSet:
    """Preprocessed NCHW images with where they came from (and labels when known)."""

    x: np.ndarray
    source: str
    labels: np.ndarray | None = None


def load_images(images, preprocess: Preprocess) -> ImageSet:
    """``images``: None (built-in set), a folder/file path, or a list of paths."""
    if images is None:
        pics = built_in_images()
        return ImageSet(np.stack([preprocess(p) for p in pics]), f"built-in ({len(pics)} drawn images)")
    files = image_files(images) if isinstance(images, (str, os.PathLike)) else [Path(p) for p in images]
    from ..data.datasets import _SYNSET_PREFIX, imagenet_synsets
    from ..evaluate import DECODE_ERRORS
    synsets = {s: i for i, s in enumerate(imagenet_synsets())}
    labels = [synsets.get(m[1]) if (m := _SYNSET_PREFIX.match(f.name)) else None for f in files]
    arrays, bad = [], []
    for f in files:
        try:
            arrays.append(preprocess(decode(f)))
        except DECODE_ERRORS as e:
            bad.append(f"{f} ({type(e).__name__}: {e})")
    if bad:
        raise ExportError(f"{len(bad)} image(s) cannot be read: {'; '.join(bad[:5])}. Remove them from the "
                          f"calibration/verification images; nothing was exported")
    x = np.stack(arrays)
    src = str(images) if isinstance(images, (str, os.PathLike)) else f"{len(files)} files"
    return ImageSet(x, f"{src} ({len(files)} images)",
                    np.array(labels) if all(l is not None for l in labels) else None)


def torch_logits(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return np.concatenate([model.eval()(torch.from_numpy(b)).numpy() for b in np.array_split(x, max(1, len(x) // 16))])


def compare(ref: np.ndarray, got: np.ndarray, labels: np.ndarray | None = None) -> dict:
    err, scale = float(np.abs(ref - got).max()), float(np.abs(ref).max())
    out = {"n_images": int(len(ref)), "max_abs_err": err, "ref_max_abs": scale,
           "max_rel_err": err / max(scale, 1e-30),
           "top1_agreement": float((ref.argmax(1) == got.argmax(1)).mean())}
    if labels is not None:
        out["top1_ref"] = float((ref.argmax(1) == labels).mean() * 100)
        out["top1"] = float((got.argmax(1) == labels).mean() * 100)
    return out


def verify_or_fail(check: dict, tolerance: float, what: str):
    """Logit error within ``tolerance`` absolute, scaled up for logits larger than 1 (float32
    rounding grows with magnitude; random-init networks can emit logits of 20 or more)."""
    allowed = tolerance * max(1.0, check["ref_max_abs"])
    if check["max_abs_err"] > allowed:
        raise ExportError(f"{what} disagrees with torch: max abs error {check['max_abs_err']:.2e} > "
                          f"{allowed:.2g} on {check['images']}; no file written")


def versions() -> dict:
    """Installed versions of the toolchain, read from package metadata (importing TensorFlow
    just to ask would cost seconds)."""
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for dist in ("moga-zoo", "torch", "onnx", "onnxruntime", "onnxslim", "tensorflow-cpu", "tensorflow",
                 "keras", "tf2onnx", "ai-edge-litert"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def provenance(model, fmt: str, input_info: dict, extra: dict) -> dict:
    """The sidecar: enough to run and trust the artifact without the source model."""
    cfg = model.pretrained_cfg
    w = model.weights_info or {}
    return {"format": fmt, "model": model.spec.name, "spec": model.spec.to_dict(),
            "weights": w.get("weights"), "weights_sha256": w.get("sha256"),
            "preprocess": cfg.preprocess.to_dict(),
            "labels": cfg.to_dict()["labels"],
            "num_classes": model.num_classes, "input": input_info, **extra, "versions": versions()}


def finish(path: Path, info: dict) -> dict:
    """Record the artifact's own checksum and write the sidecar next to it."""
    info["sha256"] = sha256_file(path)
    write_text_atomic(Path(f"{path}.json"), json.dumps(info, indent=2))
    return info
