"""Training sets too large to hold decoded (ImageNet: 1.28 M images, ~190 GB as 224x224 uint8) are
read from their files for every batch, with the Inception-style random-resized crop MobileNetV3 and
MoGA train with.

As for in-memory sets (``loader.TrainLoader``), a batch is a pure function of (seed, epoch, step):
every sample's crop and flip come from a generator seeded by (seed, epoch, step, position in the
global batch), so a resumed run, and the union of the ranks' shares, see exactly the 1-process
batch. Decoding runs in threads (Pillow releases the GIL) while the previous step computes.
"""
from __future__ import annotations

import hashlib
import math
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .augment import Augment
from .datasets import Dataset, DatasetError, Sample, read_bytes
from .loader import (Batch, InMemorySet, balanced_holdout, check_batching, decode_all, decode_sample,
                     normalize_batch)
from .preprocess import DECODE_ERRORS, Preprocess

CROP_SCALE = (0.08, 1.0)  # fraction of the image area a training crop covers (Inception, MobileNetV3)
CROP_RATIO = (3 / 4, 4 / 3)


@dataclass
class FileSet:
    """A labelled set read from its files on demand."""

    samples: list[Sample]
    classes: list[str]

    def __post_init__(self):
        self.labels = np.array([s.label for s in self.samples], np.int64)

    def __len__(self):
        return len(self.samples)

    @classmethod
    def from_dataset(cls, ds: Dataset) -> "FileSet":
        return cls(list(ds.samples), list(ds.classes))

    def subset(self, index: np.ndarray) -> "FileSet":
        return FileSet([self.samples[i] for i in index], self.classes)

    def fingerprint(self) -> str:
        """sha256 of the file names and labels (reading every file to hash it would cost an epoch)."""
        return hashlib.sha256("".join(f"{s.name}\t{s.label}\n" for s in self.samples).encode()).hexdigest()

    def split(self, n_val: int, seed: int) -> tuple["FileSet", "FileSet", np.ndarray]:
        """The same seeded, class-balanced hold-out as ``InMemorySet.split``."""
        val, rest = balanced_holdout(self.labels, len(self.classes), n_val, seed)
        return self.subset(rest), self.subset(val), val

    def decode(self, pre: Preprocess, workers: int = 2, progress=None) -> InMemorySet:
        """Resized and center-cropped as ``pre`` says, decoded once into memory (validation and
        BN-recalibration subsets that are scored many times)."""
        return InMemorySet(decode_all(self.samples, pre.resize_crop, workers, progress), self.labels, self.classes)


def crop_box(width: int, height: int, rng: np.random.Generator,
             scale=CROP_SCALE, ratio=CROP_RATIO) -> tuple[int, int, int, int]:
    """A random crop (left, top, right, bottom) covering ``scale`` of the area at an aspect ratio in
    ``ratio`` (log-uniform); after 10 misses, the largest center crop within ``ratio``."""
    area = width * height
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        r = math.exp(rng.uniform(*log_r))
        w, h = int(round(math.sqrt(target * r))), int(round(math.sqrt(target / r)))
        if 0 < w <= width and 0 < h <= height:
            x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            return x, y, x + w, y + h
    r = width / height
    if r < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif r > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    x, y = (width - w) // 2, (height - h) // 2
    return x, y, x + w, y + h


def load_crop(sample: Sample, size: int, rng: np.random.Generator, draft: bool = True) -> np.ndarray:
    """One training crop, ``size`` x ``size`` x 3 uint8. With ``draft`` a JPEG is decoded at 1/2, 1/4
    or 1/8 scale when the crop still has at least ``size`` pixels a side there: the same region,
    less decoding (BENCHMARKS.md section 10 measures how much)."""
    try:
        opened = read_bytes(sample.open())
        with (opened if isinstance(opened, Image.Image) else Image.open(opened)) as im:
            w, h = im.size
            box = crop_box(w, h, rng)
            short = min(box[2] - box[0], box[3] - box[1])
            reduce = 1
            while draft and reduce < 8 and short // (reduce * 2) >= size:
                reduce *= 2
            if reduce > 1 and im.format == "JPEG":
                im.draft("RGB", (math.ceil(w / reduce), math.ceil(h / reduce)))
            fx, fy = im.size[0] / w, im.size[1] / h
            im = im.convert("RGB")
            out = im.resize((size, size), Image.BILINEAR,
                            box=(box[0] * fx, box[1] * fy, box[2] * fx, box[3] * fy))
    except DECODE_ERRORS as e:
        raise DatasetError(f"cannot decode training image {sample.name}: {e}") from e
    return np.asarray(out, dtype=np.uint8)


class StreamingLoader:
    """Seeded shuffled batches of a ``FileSet``: random-resized crop, then ``augment`` per sample.

    Same contract as ``loader.TrainLoader`` (``batch(epoch, step)``, ``len``, each rank its
    contiguous share, last incomplete batch dropped); the next ``prefetch`` batches are decoded in
    the background by ``workers`` threads.
    """

    def __init__(self, data: FileSet, batch_size: int, augment: Augment, pre: Preprocess, *, size: int,
                 seed: int = 0, rank: int = 0, world: int = 1, workers: int = 2, prefetch: int = 2):
        check_batching(len(data), batch_size, world)
        if augment.pad:
            raise ValueError("padding crops are for 32x32 sets; a streamed set takes random-resized crops "
                             "(recipe augment pad must be 0)")
        self.data, self.batch_size, self.augment, self.pre, self.size = data, batch_size, augment, pre, size
        self.seed, self.rank, self.world, self.prefetch = seed, rank, world, prefetch
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="decode")
        self._assembler = ThreadPoolExecutor(1, thread_name_prefix="batch")
        self._pending: dict[tuple[int, int], Future] = {}
        self._orders: dict[int, np.ndarray] = {}

    def __len__(self):
        return len(self.data) // self.batch_size

    def _indices(self, epoch: int, step: int) -> np.ndarray:
        if epoch not in self._orders:  # this epoch's and, while prefetching across its end, the next
            self._orders = {e: o for e, o in self._orders.items() if e == epoch - 1}
            self._orders[epoch] = np.random.default_rng([self.seed, epoch]).permutation(len(self.data))
        return self._orders[epoch][step * self.batch_size:(step + 1) * self.batch_size]

    def _load(self, epoch: int, step: int, idx: np.ndarray) -> Batch:
        share = self.batch_size // self.world
        lo = self.rank * share

        def one(j):  # j: position in the global batch, so rank shares draw what 1 process draws
            rng = np.random.default_rng([self.seed, epoch, step, j])
            return self.augment(load_crop(self.data.samples[idx[j]], self.size, rng)[None], rng)[0]

        images = np.stack(list(self._pool.map(one, range(lo, lo + share))))
        return Batch(normalize_batch(images, self.pre), torch.from_numpy(self.data.labels[idx[lo:lo + share]]))

    def _submit(self, epoch: int, step: int) -> None:
        if (epoch, step) not in self._pending:
            idx = self._indices(epoch, step)
            self._pending[(epoch, step)] = self._assembler.submit(self._load, epoch, step, idx)

    def batch(self, epoch: int, step: int) -> Batch:
        if not 0 <= step < len(self):
            raise IndexError(f"step {step} outside an epoch of {len(self)} steps")
        self._submit(epoch, step)
        for k in range(1, self.prefetch + 1):
            e, s = divmod(epoch * len(self) + step + k, len(self))
            self._submit(e, s)
        for key in [k for k in self._pending if k < (epoch, step)]:  # a resume jumped past them
            self._pending.pop(key).cancel()
        return self._pending.pop((epoch, step)).result()

    def close(self) -> None:
        for f in self._pending.values():
            f.cancel()
        self._pending.clear()
        self._assembler.shutdown(wait=True, cancel_futures=True)
        self._pool.shutdown(wait=True, cancel_futures=True)


def stream_eval_batches(data: FileSet, pre: Preprocess, batch_size: int = 250, workers: int = 2):
    """Deterministic center-crop batches decoded from the files (a validation set too large to keep)."""
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="eval-decode") as pool:
        def one(sample):
            return np.asarray(pre.resize_crop(decode_sample(sample)), dtype=np.uint8)
        for i in range(0, len(data), batch_size):
            part = data.samples[i:i + batch_size]
            images = np.stack(list(pool.map(one, part)))
            yield Batch(normalize_batch(images, pre), torch.from_numpy(data.labels[i:i + batch_size]))
