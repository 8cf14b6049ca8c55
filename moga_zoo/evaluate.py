"""The evaluation loop: decode in worker threads while the backend runs, count every image.

Pillow's decoders and the backends release the GIL, so threads overlap decoding with inference
without copying arrays between processes. Nothing is dropped silently: unreadable files are
listed, and an interrupted run returns what it measured marked ``partial``.
"""
from __future__ import annotations

import collections
import csv
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .data import Preprocess, decode
from .data.preprocess import DECODE_ERRORS
from .files import atomic_path
from .data.datasets import Dataset, read_bytes


@dataclass
class EvalResult:
    top1: float
    top5: float
    n: int
    images_per_s: float
    seconds: float
    layout: str
    backend: str
    partial: bool = False
    bad: list[dict] = field(default_factory=list)
    total: int = 0  # images the run was asked to evaluate (n + bad when complete)
    unlabeled: list[str] = field(default_factory=list)  # image files the layout could not label

    def to_dict(self) -> dict:
        return asdict(self)

    def report(self) -> str:
        head = "PARTIAL (interrupted) " if self.partial else ""
        lines = [f"{head}top-1 {self.top1:.2f}%  top-5 {self.top5:.2f}%  on {self.n} images "
                 f"({self.images_per_s:.1f} images/s, {self.seconds:.1f} s; backend {self.backend}; {self.layout})"]
        if self.unlabeled:
            lines.append(f"NOTE: {len(self.unlabeled)} image file(s) carry no label in this layout and were not "
                         f"evaluated: {', '.join(self.unlabeled[:5])}{' ...' if len(self.unlabeled) > 5 else ''}")
        if self.bad:
            lines.append(f"{len(self.bad)} unreadable image(s), not counted:")
            lines += [f"  {b['name']}: {b['error']}" for b in self.bad[:50]]
            if len(self.bad) > 50:
                lines.append(f"  ... and {len(self.bad) - 50} more")
        return "\n".join(lines)


class BadImagesError(RuntimeError):
    """Some images could not be decoded and skipping was not allowed; carries the result."""

    def __init__(self, result: EvalResult):
        super().__init__(f"{len(result.bad)} image(s) could not be read (pass --skip-bad / skip_bad=True "
                         f"to evaluate without them): " + ", ".join(b["name"] for b in result.bad[:10]))
        self.result = result


def _load(sample, preprocess: Preprocess):
    try:
        return preprocess(decode(read_bytes(sample.open()))), None
    except DECODE_ERRORS as e:
        return None, f"{type(e).__name__}: {e}"


def _write_csv_atomic(path: Path, rows: list[list]):
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def evaluate(runner, dataset: Dataset, preprocess: Preprocess, *, class_names: list[str] | None = None,
             batch_size: int = 32, workers: int = 2, limit: int | None = None, skip_bad: bool = False,
             predictions: str | Path | None = None, progress: bool | None = None) -> EvalResult:
    """Top-1/top-5 of ``runner`` on ``dataset``. ``predictions`` gets a per-image top-5 CSV
    (``<name>.partial.csv`` instead when the run is interrupted)."""
    from tqdm import tqdm

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a whole number >= 1 (omit it to evaluate everything), got {limit!r}")
    if predictions is not None and Path(predictions).is_dir():
        raise ValueError(f"--predictions {predictions} is a folder; give a file name such as {Path(predictions) / 'predictions.csv'}")
    if not dataset.samples:
        raise ValueError(f"the data set ({dataset.layout}) holds no images")
    samples = dataset.samples
    if limit and limit < len(samples):  # evenly spaced, so every class of a sorted set is seen
        samples = [samples[i] for i in np.linspace(0, len(samples) - 1, limit).round().astype(int)]
    names = class_names or dataset.classes
    correct1 = correct5 = seen = 0
    bad, rows = [], [["image", "label", "label_name"] + [f"top{i}" for i in range(1, 6)]
                     + [f"top{i}_name" for i in range(1, 6)] + ["top1_prob"]]
    partial = False
    bar = tqdm(total=len(samples), unit="img", disable=(not progress) if progress is not None else None,
               file=sys.stderr, desc=runner.name)
    t0 = time.perf_counter()
    pool = ThreadPoolExecutor(max(1, workers))
    try:
        pending = collections.deque()
        it = iter(samples)
        ahead = max(2 * batch_size, 4 * workers)

        def fill():
            for s in it:
                pending.append((s, pool.submit(_load, s, preprocess)))
                if len(pending) >= ahead:
                    break

        fill()
        while pending:
            batch, batch_samples = [], []
            while pending and len(batch) < batch_size:
                s, fut = pending.popleft()
                arr, err = fut.result()
                if err is not None:
                    bad.append({"name": s.name, "error": err})
                    bar.update(1)
                else:
                    batch.append(arr)
                    batch_samples.append(s)
                fill()
            if not batch:
                continue
            logits = runner(np.stack(batch))
            k = min(5, logits.shape[1])
            top = np.argsort(-logits, axis=1)[:, :k]
            labels = np.array([s.label for s in batch_samples])
            correct1 += int((top[:, 0] == labels).sum())
            correct5 += int((top == labels[:, None]).any(1).sum())
            seen += len(batch)
            if predictions:
                e = np.exp(logits - logits.max(1, keepdims=True))
                p1 = e[np.arange(len(e)), top[:, 0]] / e.sum(1)
                for s, t, p in zip(batch_samples, top, p1):
                    rows.append([s.name, s.label, names[s.label]] + list(t) + [names[i] for i in t]
                                + [f"{p:.5f}"])
            bar.update(len(batch))
    except KeyboardInterrupt:
        partial = True
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    seconds = time.perf_counter() - t0
    result = EvalResult(top1=100.0 * correct1 / max(seen, 1), top5=100.0 * correct5 / max(seen, 1), n=seen,
                        images_per_s=(seen + len(bad)) / seconds if seconds else 0.0, seconds=seconds,
                        layout=dataset.layout, backend=runner.name, partial=partial, bad=bad,
                        total=len(samples), unlabeled=list(dataset.unlabeled))
    if predictions:
        path = Path(predictions)
        _write_csv_atomic(path.with_name(path.stem + ".partial" + path.suffix) if partial else path, rows)
    if bad and not skip_bad and not partial:
        raise BadImagesError(result)
    return result


def _check_head(labels: list[str] | None, classes: list[str]) -> None:
    """A head that does not predict the data set's classes would report a meaningless figure."""
    from .data.datasets import _norm

    if labels is not None and [_norm(n) for n in labels] == [_norm(c) for c in classes]:
        return
    what = f"{len(labels)} classes ({', '.join(labels[:3])}, ...)" if labels else "outputs with no class names"
    raise ValueError(f"the model predicts {what}, not the data set's {len(classes)} classes "
                     f"({', '.join(classes[:3])}, ...): its accuracy here would be meaningless. Use "
                     f"weights trained on this data (e.g. --weights cifar10)")


def evaluate_source(*, model: str | None = None, weights=None, num_classes: int | None = None,
                    backend: str = "torch", artifact: str | Path | None = None,
                    imagenet: str | Path | None = None, cifar10: str | Path | None = None, split: str = "test",
                    data: str | Path | None = None, overrides: dict | None = None,
                    threads: int | None = None, **loop) -> EvalResult:
    """Everything ``moga-eval`` does, as one call: pick the model or exported file, its
    preprocessing and labels, the data set by layout, then run ``evaluate``."""
    from .data import datasets
    from .registry import PretrainedCfg, create_model
    from .runners import artifact_info, make_runner

    if sum(x is not None for x in (imagenet, cifar10, data)) != 1:
        raise ValueError("give exactly one of --imagenet PATH, --cifar10 PATH or --data PATH")
    if backend == "torch":
        if model is None:
            raise ValueError("the torch backend needs --model")
        net = create_model(model, weights=weights, num_classes=num_classes)
        pre = net.pretrained_cfg.preprocess
        labels = net.pretrained_cfg.label_names()
        runner = make_runner("torch", model=net, threads=threads)
    else:
        info = artifact_info(artifact) if artifact is not None else None
        runner = make_runner(backend, artifact=artifact, threads=threads)
        pre = Preprocess(**info["preprocess"])
        labels = PretrainedCfg(labels=info.get("labels")).label_names() if isinstance(info.get("labels"), str) \
            else info.get("labels")
    pre = pre.override(**(overrides or {}))
    if imagenet is not None:
        ds = datasets.imagenet(imagenet)
        names = labels or ds.classes
    elif cifar10 is not None:
        ds = datasets.cifar10(cifar10, split)
        names = ds.classes
        _check_head(labels, ds.classes)
    else:
        if labels is None:
            raise ValueError("--data matches class folders to the model's label names, and this "
                             "model has none (a custom number of classes): use folders named like "
                             "its labels or evaluate a model with ImageNet labels")
        ds = datasets.class_folders(data, labels)
        names = labels
    return evaluate(runner, ds, pre, class_names=names, **loop)
