"""Image decoding and the resize -> center crop -> normalize pipeline (Pillow + numpy only)."""
from __future__ import annotations

import zipfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
# what decoding one bad file can raise (truncated, not an image, a zip member gone bad, a bomb)
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, zipfile.BadZipFile, Image.DecompressionBombError)
_INTERP = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST,
           "lanczos": Image.LANCZOS, "box": Image.BOX}


def decode(source) -> Image.Image:
    """Open a file path or file object (or take a PIL image) as RGB.

    Pillow sniffs the real format, so PNG bytes behind a .JPEG name decode; grayscale, CMYK and
    palette images are converted. ``load()`` forces the full decode so truncated files fail here.
    """
    if isinstance(source, Image.Image):
        return source if source.mode == "RGB" else source.convert("RGB")
    with Image.open(source) as im:
        im.load()
        return im.convert("RGB") if im.mode != "RGB" else im.copy()


@dataclass(frozen=True)
class Preprocess:
    """Shorter side to ``resize``, center crop ``crop``, scale to [0, 1], normalize per channel."""

    resize: int = 256
    crop: int = 224
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self):
        if self.interpolation not in _INTERP:
            raise ValueError(f"unknown interpolation {self.interpolation!r}; use one of {', '.join(_INTERP)}")
        for name in ("resize", "crop"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {v!r}")
        if self.crop > self.resize:
            raise ValueError(f"crop {self.crop} is larger than resize {self.resize}")
        for name in ("mean", "std"):
            if len(getattr(self, name)) != 3:
                raise ValueError(f"{name} needs 3 values (R, G, B), got {getattr(self, name)!r}")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if not all(v > 0 and v != float("inf") for v in self.std):
            raise ValueError(f"std values divide the pixels: they must be finite and > 0, got {self.std}")
        if not all(abs(v) != float("inf") and v == v for v in self.mean):
            raise ValueError(f"mean values must be finite numbers, got {self.mean}")

    def to_dict(self) -> dict:
        return asdict(self)

    def override(self, **kw) -> "Preprocess":
        return replace(self, **{k: v for k, v in kw.items() if v is not None})

    def resize_crop(self, im: Image.Image) -> Image.Image:
        w, h = im.size
        if w <= h:
            size = (self.resize, int(self.resize * h / w))
        else:
            size = (int(self.resize * w / h), self.resize)
        if size != (w, h):
            im = im.resize(size, _INTERP[self.interpolation])
        w, h = im.size
        left = int(round((w - self.crop) / 2.0))
        top = int(round((h - self.crop) / 2.0))
        return im.crop((left, top, left + self.crop, top + self.crop))

    def normalize(self, im: Image.Image) -> np.ndarray:
        """HWC uint8 -> CHW float32."""
        a = np.asarray(im, dtype=np.float32) * (1.0 / 255.0)
        a = (a - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(a.transpose(2, 0, 1))

    def __call__(self, image) -> np.ndarray:
        if isinstance(image, (str, Path)) or hasattr(image, "read"):
            image = decode(image)
        return self.normalize(self.resize_crop(image))


CIFAR10_PREPROCESS = Preprocess(32, 32, "bilinear", CIFAR10_MEAN, CIFAR10_STD)  # 32x32 images as they are
