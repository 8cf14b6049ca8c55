"""Running a model on images: top-k prediction and the frozen inference-ready module."""
from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from .data import decode


def default_image() -> Path:
    """A real photo that ships with matplotlib (Grace Hopper in uniform), so the README's main
    job has an input without any download."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.is_file():
        raise FileNotFoundError(f"matplotlib's sample photo is missing ({path}); pass an image path")
    return path


@torch.inference_mode()
def predict(model: torch.nn.Module, images, topk: int = 5, skip_bad: bool = False) -> list[dict]:
    """Top-k classes with probabilities for each image.

    Args:
        model: a network from ``create_model`` (its ``pretrained_cfg`` gives preprocessing and labels).
        images: one path or PIL image, or a list of them.
        topk: how many classes per image (>= 1).
        skip_bad: an unreadable image gives ``{"image": ..., "error": ...}`` instead of raising.
    """
    from .evaluate import DECODE_ERRORS

    if isinstance(images, (str, os.PathLike)) or not hasattr(images, "__iter__"):
        images = [images]
    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
        raise ValueError(f"topk must be a whole number >= 1, got {topk!r}")
    cfg = model.pretrained_cfg
    labels = cfg.label_names()
    model.eval()
    out = []
    for img in images:
        try:
            x = torch.from_numpy(cfg.preprocess(decode(img) if isinstance(img, (str, os.PathLike)) else img))
        except DECODE_ERRORS as e:
            msg = f"{type(e).__name__}: {e}"
            if not skip_bad:
                raise ValueError(f"cannot read image {img}: {msg}") from None
            out.append({"image": os.fspath(img) if isinstance(img, (str, os.PathLike)) else "<image>", "error": msg})
            continue
        prob = model(x[None]).softmax(-1)[0]
        p, idx = prob.topk(min(topk, prob.numel()))
        out.append({"image": os.fspath(img) if isinstance(img, (str, os.PathLike)) else "<image>",
                    "top": [{"index": int(i), "label": labels[i] if labels else str(int(i)),
                             "prob": float(v)} for v, i in zip(p, idx)]})
    return out


def inference_ready(model: torch.nn.Module, input_size: int | None = None) -> torch.jit.ScriptModule:
    """A frozen TorchScript copy: eval mode, BN folded into convs, weights prepacked for oneDNN
    in channels_last. Numerically equal to the eager model up to float rounding."""
    m = copy.deepcopy(model).eval()
    size = input_size or getattr(model, "input_size", 224)
    example = torch.from_numpy(np.zeros((1, model.spec.in_chans, size, size), np.float32))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # still the fastest CPU path in 2.13
        return torch.jit.freeze(torch.jit.trace(m, example))
