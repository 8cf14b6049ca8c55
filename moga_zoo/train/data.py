"""What a run trains and evaluates on, per data-set form: CIFAR-10 decoded once into memory
(50,000 x 32 x 32 x 3 bytes), ImageNet streamed from its files with random-resized crops.
``moga-zoo train`` and ``moga-zoo search train-supernet`` (and the supernet's scorer) start here, so
both see the same split, augmentation and preprocessing."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..data import datasets
from ..data.datasets import DatasetError
from ..data.loader import InMemorySet, TrainLoader, eval_batches
from ..data.preprocess import CIFAR10_PREPROCESS, Preprocess
from ..data.stream import CROP_RATIO, CROP_SCALE, FileSet, StreamingLoader, stream_eval_batches
from .recipes import Recipe

IMAGENET_PREPROCESS = Preprocess()  # resize 256, center crop 224, ImageNet mean/std


@dataclass
class TrainData:
    form: str  # specs.FORMS key: the spec transform this data needs
    source: str
    train: InMemorySet | FileSet
    eval: InMemorySet | FileSet
    eval_desc: str
    val_indices: np.ndarray | None  # the held-out indices into the training split, if any
    preprocess: Preprocess  # evaluation (and the shipped weights') preprocessing
    workers: int = 2

    @property
    def num_classes(self) -> int:
        return len(self.train.classes)

    def loader(self, recipe: Recipe, *, seed: int, rank: int = 0, world: int = 1):
        if isinstance(self.train, InMemorySet):
            return TrainLoader(self.train, recipe.batch_size, recipe.augment, self.preprocess,
                               seed=seed, rank=rank, world=world)
        # a streamed set's random-resized crop takes the place of the 32x32 padding crop
        return StreamingLoader(self.train, recipe.batch_size, replace(recipe.augment, pad=0), self.preprocess,
                               size=self.preprocess.crop, seed=seed, rank=rank, world=world, workers=self.workers)

    def batches(self, data: InMemorySet | FileSet, batch_size: int = 250):
        """Unaugmented evaluation batches of ``data`` (this set's eval split or a part of it)."""
        if isinstance(data, InMemorySet):
            return eval_batches(data, self.preprocess, batch_size)
        return stream_eval_batches(data, self.preprocess, batch_size, self.workers)

    def in_memory(self, data: InMemorySet | FileSet, progress=None) -> InMemorySet:
        """``data`` decoded once (center crops for a streamed set): subsets scored many times."""
        return data if isinstance(data, InMemorySet) else data.decode(self.preprocess, self.workers, progress)

    def describe(self) -> dict:
        d = {"form": self.form, "data": self.source, "train_images": len(self.train),
             "eval_set": self.eval_desc, "eval_images": len(self.eval), "preprocess": self.preprocess.to_dict()}
        if isinstance(self.train, FileSet):
            d["train_crop"] = {"size": self.preprocess.crop, "scale": list(CROP_SCALE), "ratio": list(CROP_RATIO)}
        if self.val_indices is not None:
            d["val_indices_sha256"] = hashlib.sha256(self.val_indices.tobytes()).hexdigest()
            d["val_sha256"] = self.eval.fingerprint()
        return d


def load_data(*, cifar10=None, imagenet=None, val_size: int = 0, seed: int = 0, workers: int = 2,
              progress=None) -> TrainData:
    """The training split and the evaluation set of CIFAR-10 or ImageNet.

    Args:
        cifar10: CIFAR-10 (python/binary release, ``<split>/<class>/`` folders, or a zip of them).
        imagenet: an ImageNet root with ``train/<synset>/`` (and ``val/`` in any layout ``moga-eval``
            reads, used when ``val_size`` is 0).
        val_size: images held out of the training split (seeded, class-balanced) as the evaluation
            set; 0 evaluates on the test (CIFAR-10) or val (ImageNet) split.
        seed: the hold-out's seed.
        workers: decoding threads.
    """
    if (cifar10 is None) == (imagenet is None):
        raise DatasetError("give exactly one training data set: --cifar10 PATH or --imagenet PATH")
    if cifar10 is not None:
        train = InMemorySet.from_dataset(datasets.cifar10(cifar10, "train"), 32, workers=workers, progress=progress)
        form, source, pre = "cifar10", str(cifar10), CIFAR10_PREPROCESS
        test = (lambda: InMemorySet.from_dataset(datasets.cifar10(cifar10, "test"), 32, workers=workers,
                                                 progress=progress), "the test split")
    else:
        train = FileSet.from_dataset(datasets.imagenet_train(imagenet))
        form, source, pre = "imagenet", str(imagenet), IMAGENET_PREPROCESS
        test = (lambda: _imagenet_val(Path(imagenet)), "the val split")
    if val_size:
        train, held, idx = train.split(val_size, seed)
        return TrainData(form, source, train, held, f"{val_size} images held out of the training split "
                         f"(seed {seed})", idx, pre, workers)
    return TrainData(form, source, train, test[0](), test[1], None, pre, workers)


def _imagenet_val(root: Path) -> FileSet:
    if not (root / "val").is_dir():
        raise DatasetError(f"{root} has no val/ folder to evaluate on: add it (any layout moga-eval reads) or "
                        f"hold images out of train/ with --val-size N")
    return FileSet.from_dataset(datasets.imagenet(root / "val"))
