"""Accuracy of architectures from a trained supernet: each path gets its BN statistics
recalibrated on a fixed set of training images, then is evaluated on a fixed validation subset
held out of the training split; both sets are decoded once and kept in memory, and scores are
cached by choice vector. This is the ``supernet:CKPT`` accuracy source of ``search evolve``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..data.loader import subsample
from ..train.loop import evaluate_arrays, load_checkpoint
from .bn import recalibrate
from .nsga import SearchError
from .objectives import AccuracySource
from .supernet import Supernet

SUPERNET_FILE, SUPERNET_META = "supernet.safetensors", "supernet.json"


def score_path(net: Supernet, choices, data, bn_set, val_set, batch_size: int = 250,
               device=torch.device("cpu")) -> dict:
    """One path's one-shot accuracy: its BN statistics recomputed on ``bn_set`` (training images),
    then ``evaluate_arrays`` on ``val_set`` (held-out images), both in-memory parts of ``data``."""
    sub = net.subnet(choices)
    recalibrate(sub, data.batches(bn_set, batch_size), device)
    return evaluate_arrays(sub, data.batches(val_set, batch_size), device)


def supernet_meta(path: str | Path) -> dict:
    """The metadata of a ``train-supernet`` run (form, data split, recipe) from its folder or a file in
    it, readable while the run is still training."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    meta_path = folder / SUPERNET_META
    if not meta_path.is_file():
        raise SearchError(f"{folder} has no {SUPERNET_META}: give a folder written by 'moga-zoo search "
                          f"train-supernet' (or a file in it)")
    return json.loads(meta_path.read_text())


def load_supernet(path: str | Path) -> tuple[Supernet, dict]:
    """A supernet from a ``train-supernet`` folder, its ``supernet.safetensors`` or its (possibly
    unfinished) ``checkpoint.pt``; returns the module and the run's metadata."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    meta = supernet_meta(path)
    net = Supernet(meta["form"], meta["num_classes"])
    if path.is_dir():
        path = folder / SUPERNET_FILE if (folder / SUPERNET_FILE).is_file() else folder / "checkpoint.pt"
    if not path.is_file():
        raise SearchError(f"no supernet weights in {folder} ({SUPERNET_FILE} or checkpoint.pt)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        state = load_file(str(path))
    else:
        ckpt = load_checkpoint(path)
        state = ckpt["model"]
        meta = {**meta, "unfinished": True, "epochs_done": len(ckpt["history"])}
    net.load_state_dict(state)
    meta["weights"] = str(path)
    return net.eval(), meta


class SupernetAccuracy(AccuracySource):
    """Top-1 (%) of paths of a trained supernet.

    Args:
        path: the ``train-supernet`` folder or a weights file in it.
        val_images: how many of the held-out validation images to score on (default all).
        bn_images: training images for BN recalibration (default 2,000, as Once-for-All).
        batch_size: images per forward pass.
        data: the data set, where it is not at the path the supernet recorded; it must hold out
            the same images (checked against the recorded split).
    """

    def __init__(self, path: str | Path, val_images: int | None = None, bn_images: int = 2000,
                 batch_size: int = 250, data: str | Path | None = None, progress=None):
        from ..train.data import load_data

        self.net, self.meta = load_supernet(path)
        self.form = self.meta["form"]
        seed, val_size = self.meta["seed"], self.meta["val_size"]
        source = Path(data if data is not None else self.meta["data"])
        if not source.exists():
            raise SearchError(f"the supernet was trained on {source}, which is not there from {Path.cwd()}: "
                              f"pass the data set's path (data=PATH, --cifar10/--imagenet)")
        self.data = data = load_data(**{self.form: source}, val_size=val_size, seed=seed, progress=progress)
        held = data.describe()  # val_sha256 (the images themselves) is missing in older supernets
        if any(held.get(k) != self.meta[k] for k in ("train_images", "val_indices_sha256", "val_sha256")
               if k in self.meta):
            raise SearchError(f"{source} does not give the training split and held-out images the supernet "
                              f"was trained with ({self.meta['data']}): its scores would count images it "
                              f"trained on; use the same data set")
        val = subsample(data.eval, val_images, seed) if val_images else data.eval
        self.bn = data.in_memory(subsample(data.train, bn_images, seed), progress)
        self.val, self.batch_size = data.in_memory(val, progress), batch_size
        self.cache: dict[tuple, float] = {}
        self.description = (f"supernet:{self.meta['weights']} (BN recalibrated on {len(self.bn)} training images, "
                            f"top-1 on {len(self.val)} held-out images)")

    def score(self, choices) -> float:
        key = tuple(int(c) for c in choices)
        if key not in self.cache:
            self.cache[key] = score_path(self.net, key, self.data, self.bn, self.val, self.batch_size)["top1"]
        return self.cache[key]

    def __call__(self, X):
        with torch.no_grad():
            return np.array([self.score(x) for x in np.asarray(X, dtype=int)])

    def provenance(self) -> dict:
        return {"source": self.description, "val_images": len(self.val), "bn_images": len(self.bn),
                "supernet": {k: self.meta.get(k) for k in ("weights", "epochs", "seed", "val_size", "data",
                                                         "unfinished", "epochs_done")}}
