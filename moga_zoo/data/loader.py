"""Batches for training: which samples and which augmentation a step gets is a pure function of
(seed, epoch, step), so a resumed run, or a second process, sees exactly the same batches.

Small sets (CIFAR-10) are decoded once into one uint8 array and augmented per batch with numpy
(here); large sets (ImageNet) are decoded per batch in threads with a random-resized crop
(``data.stream``).
"""
from __future__ import annotations

import hashlib
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .augment import Augment
from .datasets import Dataset, DatasetError, read_bytes
from .preprocess import DECODE_ERRORS, Preprocess, decode


@dataclass
class Batch:
    x: torch.Tensor  # N, C, H, W float32, normalized
    y: torch.Tensor  # N int64


def decode_sample(sample) -> Image.Image:
    """One sample as RGB; an unreadable file fails naming it: a training set with holes would
    silently change what the network learns."""
    try:
        return decode(read_bytes(sample.open()))
    except DECODE_ERRORS as e:
        raise DatasetError(f"cannot decode image {sample.name}: {e}") from e


def decode_all(samples, transform, workers: int = 2, progress: bool | None = None) -> np.ndarray:
    """``transform`` (PIL image -> PIL image of one fixed size) of every sample, as one
    N x H x W x 3 uint8 array."""
    from tqdm import tqdm

    def load(sample):
        return np.asarray(transform(decode_sample(sample)), dtype=np.uint8)

    out = None
    with ThreadPoolExecutor(max(1, workers)) as pool, \
            tqdm(total=len(samples), unit="img", desc="decoding", file=sys.stderr,
                 disable=(not progress) if progress is not None else None) as bar:
        for i, arr in enumerate(pool.map(load, samples, chunksize=256)):
            if out is None:
                out = np.empty((len(samples), *arr.shape), np.uint8)
            out[i] = arr
            bar.update(1)
    return out if out is not None else np.empty((0, 1, 1, 3), np.uint8)


def balanced_holdout(labels: np.ndarray, n_classes: int, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded, class-balanced choice of ``n_val`` indices: (held out, rest), both sorted."""
    if not 0 <= n_val < len(labels):
        raise DatasetError(f"validation size {n_val} must be in 0..{len(labels) - 1}")
    rng = np.random.default_rng([seed, 0x5EA1])
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in range(n_classes)]
    take, k = [], 0
    while len(take) < n_val:  # round-robin over classes keeps the split balanced
        for idx in per_class:
            if k < len(idx) and len(take) < n_val:
                take.append(idx[k])
        k += 1
    val = np.sort(np.array(take, np.int64))
    mask = np.ones(len(labels), bool)
    mask[val] = False
    return val, np.flatnonzero(mask)


def subsample(data, n: int, seed: int):
    """``n`` images of ``data`` (an InMemorySet or FileSet), seeded and class-balanced; all of them
    when ``n`` covers the set. Never a prefix: a set stored class by class (CIFAR-10 or ImageNet
    folders, a zip of them) holds a single class in its first images."""
    if n >= len(data):
        return data
    return data.subset(balanced_holdout(data.labels, len(data.classes), n, seed)[0])


@dataclass
class InMemorySet:
    """A decoded labelled set: ``images`` N x H x W x 3 uint8, ``labels`` N int64."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]

    def __post_init__(self):
        if len(self.images) != len(self.labels):
            raise DatasetError(f"{len(self.images)} images but {len(self.labels)} labels")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise DatasetError(f"labels must lie in 0..{len(self.classes) - 1}, found "
                               f"{int(self.labels.min())}..{int(self.labels.max())}")

    def __len__(self):
        return len(self.labels)

    @classmethod
    def from_dataset(cls, ds: Dataset, size: int, **kw) -> "InMemorySet":
        def fit(im):
            return im if im.size == (size, size) else im.resize((size, size), Image.BILINEAR)
        return cls(decode_all(ds.samples, fit, **kw), np.array([s.label for s in ds.samples], np.int64),
                   list(ds.classes))

    def subset(self, index: np.ndarray) -> "InMemorySet":
        return InMemorySet(self.images[index], self.labels[index], self.classes)

    def fingerprint(self) -> str:
        """sha256 of the pixels and labels: the same images, not only as many."""
        return hashlib.sha256(self.labels.astype("<i8").tobytes() + np.ascontiguousarray(self.images).tobytes()).hexdigest()

    def split(self, n_val: int, seed: int) -> tuple["InMemorySet", "InMemorySet", np.ndarray]:
        """A seeded, class-balanced held-out part: (train, val, val indices into this set)."""
        val, rest = balanced_holdout(self.labels, len(self.classes), n_val, seed)
        return self.subset(rest), self.subset(val), val


def check_batching(n_images: int, batch_size: int, world: int) -> None:
    """Every step a full global batch, split evenly over the processes."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    if batch_size % world:
        raise ValueError(f"batch size {batch_size} must be divisible by the {world} processes")
    if n_images < batch_size:
        raise DatasetError(f"{n_images} training images are fewer than one batch of {batch_size}")


def normalize_batch(images: np.ndarray, pre: Preprocess) -> torch.Tensor:
    """N x H x W x 3 uint8 -> N x 3 x H x W float32, normalized as ``pre`` says."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().mul_(1 / 255)
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std).contiguous(memory_format=torch.channels_last)


class TrainLoader:
    """Seeded shuffled batches of an ``InMemorySet`` with ``augment`` applied per batch.

    With ``world`` > 1 each rank takes its contiguous share of every global batch, so the union
    over ranks is exactly the 1-process batch. The last incomplete batch of an epoch is dropped
    (every step has the same size, which BN and the 1-vs-2-process equality need).
    """

    def __init__(self, data: InMemorySet, batch_size: int, augment: Augment, pre: Preprocess, *,
                 seed: int = 0, rank: int = 0, world: int = 1):
        check_batching(len(data), batch_size, world)
        self.data, self.batch_size, self.augment, self.pre = data, batch_size, augment, pre
        self.seed, self.rank, self.world = seed, rank, world

    def __len__(self):
        return len(self.data) // self.batch_size

    def batch(self, epoch: int, step: int) -> Batch:
        if not 0 <= step < len(self):
            raise IndexError(f"step {step} outside an epoch of {len(self)} steps")
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.data))
        idx = order[step * self.batch_size:(step + 1) * self.batch_size]
        share = self.batch_size // self.world
        rng = np.random.default_rng([self.seed, epoch, step])
        images = self.augment(self.data.images[idx], rng)  # whole global batch: same draws on every rank
        lo = self.rank * share
        return Batch(normalize_batch(images[lo:lo + share], self.pre),
                     torch.from_numpy(self.data.labels[idx][lo:lo + share]))

    def close(self) -> None:
        """Nothing to release (the streaming loader's threads are); one contract for both."""


def eval_batches(data: InMemorySet, pre: Preprocess, batch_size: int = 500):
    """Deterministic, unaugmented batches over the whole set (the last one may be short)."""
    for i in range(0, len(data), batch_size):
        yield Batch(normalize_batch(data.images[i:i + batch_size], pre),
                    torch.from_numpy(data.labels[i:i + batch_size]))
