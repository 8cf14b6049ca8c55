"""Training augmentation on uint8 batches (N x H x W x 3), vectorised with numpy.

Every random draw comes from the generator the loader passes in, so a batch's augmentation is
reproducible from (seed, epoch, step) alone.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Augment:
    """Random crop after zero padding (``pad`` pixels a side), horizontal flip, and Cutout
    (a ``cutout`` x ``cutout`` square set to mid-grey; 0 disables it)."""

    pad: int = 4
    flip: bool = True
    cutout: int = 0

    def __post_init__(self):
        if self.pad < 0 or self.cutout < 0:
            raise ValueError(f"pad and cutout must be >= 0, got pad={self.pad}, cutout={self.cutout}")

    def to_dict(self) -> dict:
        return asdict(self)

    def __call__(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n, h, w, _ = images.shape
        out = images
        if self.pad:
            p = self.pad
            padded = np.pad(images, ((0, 0), (p, p), (p, p), (0, 0)))
            dy = rng.integers(0, 2 * p + 1, n)
            dx = rng.integers(0, 2 * p + 1, n)
            rows = dy[:, None] + np.arange(h)[None]  # N x H
            cols = dx[:, None] + np.arange(w)[None]  # N x W
            out = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
        if self.flip:
            flip = rng.random(n) < 0.5
            out = out.copy() if out is images else out
            out[flip] = out[flip, :, ::-1]
        if self.cutout:  # the square may hang over the border, as in the Cutout paper
            out = out.copy() if out is images else out
            y0 = rng.integers(0, h, n)[:, None, None] - self.cutout // 2
            x0 = rng.integers(0, w, n)[:, None, None] - self.cutout // 2
            ys, xs = np.arange(h)[None, :, None], np.arange(w)[None, None, :]
            out[(ys >= y0) & (ys < y0 + self.cutout) & (xs >= x0) & (xs < x0 + self.cutout)] = 128
        return out
