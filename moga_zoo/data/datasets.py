"""Labelled image sets on disk, in zips and in CIFAR-10's releases, detected by layout.

A data set is a list of samples (name, opener, label) plus class names; ``opener()`` returns a
file object or a PIL image, so decoding happens wherever the evaluator decides (worker threads).
"""
from __future__ import annotations

import csv
import io
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

IMAGE_EXTS = {".jpeg", ".jpg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff", ".gif"}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_SYNSET = re.compile(r"^n\d{8}$")
_SYNSET_PREFIX = re.compile(r"^(n\d{8})_")


class DatasetError(ValueError):
    """A path whose layout is not recognised; the message lists what was looked for."""


@dataclass(frozen=True)
class Sample:
    name: str
    open: Callable[[], object]  # -> binary file object or PIL image
    label: int


@dataclass
class Dataset:
    samples: list[Sample]
    classes: list[str]  # class index -> name (synset for ImageNet)
    layout: str
    unlabeled: list[str] = field(default_factory=list)  # image files found that carry no label

    def __len__(self):
        return len(self.samples)


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTS


def _file_opener(path: Path):
    return lambda: open(path, "rb")


def imagenet_synsets() -> list[str]:
    from . import imagenet_classes
    return [s for s, _ in imagenet_classes()]


# --- ImageNet ------------------------------------------------------------------------------

def _class_folders(root: Path, classes: list[str], subs=("", "val", "valid", "validation")) -> Dataset | None:
    for sub in subs:
        d = root / sub if sub else root
        if not d.is_dir():
            continue
        dirs = [p for p in d.iterdir() if p.is_dir() and _SYNSET.match(p.name)]
        if not dirs:
            continue
        index = {s: i for i, s in enumerate(classes)}
        unknown = [p.name for p in dirs if p.name not in index]
        if unknown:
            raise DatasetError(f"{d}: folders {', '.join(sorted(unknown)[:5])} are not ImageNet-1k synsets")
        samples = [Sample(f"{p.name}/{f.name}", _file_opener(f), index[p.name])
                   for p in sorted(dirs) for f in sorted(p.iterdir()) if f.is_file() and _is_image(f)]
        return Dataset(samples, classes, f"synset class folders ({d})")
    return None


def _val_files(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("ILSVRC2012_val_*") if _is_image(p))


def _find(root: Path, name: str) -> Path | None:
    hits = sorted(root.glob(name)) + sorted(root.glob(f"*/{name}")) + sorted(root.glob(f"*/*/{name}"))
    return hits[0] if hits else None


def _loc_solution(root: Path, classes: list[str]) -> Dataset | None:
    files, sol = _val_files(root), _find(root, "LOC_val_solution.csv")
    if not files or sol is None:
        return None
    index = {s: i for i, s in enumerate(classes)}
    with open(sol, newline="") as f:
        truth = {row["ImageId"]: row["PredictionString"].split()[0] for row in csv.DictReader(f)}
    samples = []
    for p in files:
        if p.stem not in truth:
            raise DatasetError(f"{p.name} has no row in {sol}")
        samples.append(Sample(p.name, _file_opener(p), index[truth[p.stem]]))
    return Dataset(samples, classes, f"flat val files + {sol.name}")


def _devkit(root: Path, classes: list[str]) -> Dataset | None:
    files = _val_files(root)
    gt, meta = _find(root, "ILSVRC2012_validation_ground_truth.txt"), _find(root, "meta.mat")
    if not files or gt is None or meta is None:
        return None
    from scipy.io import loadmat  # the devkit's meta.mat is MATLAB v5

    synsets = loadmat(str(meta), squeeze_me=True)["synsets"]
    id_to_wnid = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets}
    ids = [int(line) for line in gt.read_text().split()]
    index = {s: i for i, s in enumerate(classes)}
    samples = []
    for p in files:
        n = int(re.search(r"(\d+)$", p.stem)[1])  # ILSVRC2012_val_00000001 -> line 1
        if not 1 <= n <= len(ids):
            raise DatasetError(f"{p.name}: no line {n} in {gt} ({len(ids)} lines)")
        samples.append(Sample(p.name, _file_opener(p), index[id_to_wnid[ids[n - 1]]]))
    return Dataset(samples, classes, f"flat val files + devkit {gt.name} and {meta.name}")


def _synset_prefixed(root: Path, classes: list[str]) -> Dataset | None:
    images = sorted(p for p in root.iterdir() if p.is_file() and _is_image(p))
    files = [p for p in images if _SYNSET_PREFIX.match(p.name)]
    if not files:
        return None
    index = {s: i for i, s in enumerate(classes)}
    samples = []
    for p in files:
        syn = _SYNSET_PREFIX.match(p.name)[1]
        if syn not in index:
            raise DatasetError(f"{p.name}: {syn} is not an ImageNet-1k synset")
        samples.append(Sample(p.name, _file_opener(p), index[syn]))
    return Dataset(samples, classes, "files named <synset>_<anything>",
                   unlabeled=[p.name for p in images if not _SYNSET_PREFIX.match(p.name)])


IMAGENET_LAYOUTS = (
    ("synset class folders (n01440764/...), directly or under val/, valid/ or validation/", _class_folders),
    ("flat ILSVRC2012_val_*.JPEG + LOC_val_solution.csv", _loc_solution),
    ("flat ILSVRC2012_val_*.JPEG + ILSVRC2012_validation_ground_truth.txt + meta.mat (devkit)", _devkit),
    ("files named <synset>_<anything>.JPEG", _synset_prefixed),
)


def _detect_imagenet(path: str | Path, layouts, missing: Callable[[Path], str]) -> Dataset:
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"ImageNet path {root} is not a directory")
    classes = imagenet_synsets()
    for _, detect in layouts:
        ds = detect(root, classes)
        if ds is not None:
            if not ds.samples:
                raise DatasetError(f"{root}: layout '{ds.layout}' found but it holds no images")
            return ds
    raise DatasetError(missing(root))


def imagenet(path: str | Path) -> Dataset:
    """ImageNet-1k validation data in any of the four common layouts; labels in sorted-synset order."""
    looked = "\n".join(f"  - {d}" for d, _ in IMAGENET_LAYOUTS)
    return _detect_imagenet(path, IMAGENET_LAYOUTS,
                            lambda root: f"no ImageNet layout recognised in {root}. Looked for:\n{looked}")


def imagenet_train(path: str | Path) -> Dataset:
    """ImageNet-1k training images in synset class folders: ``<path>/train/n01440764/...`` or
    ``<path>/n01440764/...``; labels in sorted-synset order."""
    layout = ("synset folders", lambda root, classes: _class_folders(root, classes, subs=("train", "")))
    return _detect_imagenet(path, [layout], lambda root: (
        f"no ImageNet training folders in {root}: expected {root}/train/<synset>/*.JPEG "
        f"(e.g. train/n01440764/) as the ILSVRC2012 train tarballs unpack"))


# --- Class folders (on disk or in a zip) ---------------------------------------------------

MAX_IMAGE_BYTES = 64 << 20  # one image file; a larger zip member is refused, never inflated


def _zip_opener(zf: zipfile.ZipFile, member: str):
    def open_member():
        declared = zf.getinfo(member).file_size
        if declared > MAX_IMAGE_BYTES:
            raise DatasetError(f"zip member {member} declares {declared:,} bytes, more than an image may "
                               f"have ({MAX_IMAGE_BYTES:,}); not inflated")
        return zf.open(member)
    return open_member


def class_folders(path: str | Path, classes: list[str] | None = None, *, split: str | None = None) -> Dataset:
    """``<class>/<image>`` folders under ``path`` (or under ``path/<split>``), on disk or inside a
    zip read in place. With ``classes`` the folder names are matched to those labels (case,
    spaces and underscores ignored); otherwise sorted folder names are the classes."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        zf = zipfile.ZipFile(path)
        files = [n for n in zf.namelist() if not n.endswith("/") and Path(n).suffix.lower() in IMAGE_EXTS]
        entries = [(n.split("/"), _zip_opener(zf, n), n) for n in files]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _is_image(p))
        entries = [(list(p.relative_to(path).parts), _file_opener(p), str(p.relative_to(path))) for p in files]
    else:
        raise DatasetError(f"{path} is neither a directory nor a zip file")
    if split is not None:  # keep <...>/<split>/<class>/<file>
        entries = [(parts, o, n) for parts, o, n in entries if len(parts) >= 3 and parts[-3] == split]
        if not entries:
            raise DatasetError(f"{path}: no '<{split}>/<class>/<image>' entries (split '{split}')")
    unlabeled = [n for parts, o, n in entries if len(parts) < 2]  # images beside, not inside, class folders
    entries = [(parts, o, n) for parts, o, n in entries if len(parts) >= 2]
    if not entries:
        raise DatasetError(f"{path}: no '<class>/<image>' entries found")
    folder_names = sorted({parts[-2] for parts, _, _ in entries})
    if classes is None:
        classes = folder_names
    norm = {_norm(c): i for i, c in enumerate(classes)}
    missing = [f for f in folder_names if _norm(f) not in norm]
    if missing:
        raise DatasetError(f"{path}: class folders {', '.join(missing[:8])} match none of the model's "
                           f"{len(classes)} label names (e.g. {', '.join(classes[:3])})")
    samples = [Sample(n, o, norm[_norm(parts[-2])]) for parts, o, n in sorted(entries, key=lambda e: e[2])]
    return Dataset(samples, list(classes), f"class folders{' in zip' if zipfile.is_zipfile(path) else ''}",
                   unlabeled=unlabeled)


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


# --- CIFAR-10 releases -----------------------------------------------------------------------

class _ArraysOnly(pickle.Unpickler):
    """The python release is a pickle: allow numpy's array reconstruction and nothing else."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")
        if name == "_reconstruct":  # numpy 2 moved numpy.core to numpy._core
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return super().find_class(module, name)


def _array_samples(images: np.ndarray, labels, prefix: str) -> list[Sample]:
    return [Sample(f"{prefix}/{i}", (lambda a=img: Image.fromarray(a)), int(lab))
            for i, (img, lab) in enumerate(zip(images, labels))]


def _python_batch(path: Path):
    with open(path, "rb") as f:
        try:
            batch = _ArraysOnly(f, encoding="bytes").load()
        except (pickle.UnpicklingError, EOFError) as e:
            raise DatasetError(f"{path}: not a CIFAR-10 python batch ({e})") from e
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DatasetError(f"{path}: not a CIFAR-10 python batch (a dict with b'data' and b'labels')")
    data = np.asarray(batch[b"data"])
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(batch[b"labels"]):
        raise DatasetError(f"{path}: CIFAR-10 python batch with data of shape {data.shape} and "
                           f"{len(batch[b'labels'])} labels; expected N x 3072 and N labels")
    return data.astype(np.uint8), np.asarray(batch[b"labels"])


def _binary_batch(path: Path):
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % 3073:
        raise DatasetError(f"{path}: size {raw.size} is not a multiple of 3073-byte CIFAR records")
    if raw.size == 0:
        raise DatasetError(f"{path}: empty file; a CIFAR-10 binary batch holds 3073-byte records")
    rec = raw.reshape(-1, 3073)
    return rec[:, 1:], rec[:, 0]


# release -> (folder, marker file, batch suffix, reader of (N x 3072 CHW rows, labels))
_CIFAR_RELEASES = {"python": ("cifar-10-batches-py", "batches.meta", "", _python_batch),
                   "binary": ("cifar-10-batches-bin", "batches.meta.txt", ".bin", _binary_batch)}


def _cifar_release(root: Path, split: str, release: str) -> Dataset | None:
    folder, marker, suffix, read = _CIFAR_RELEASES[release]
    d = root if (root / marker).exists() else root / folder
    names = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
    names = [n + suffix for n in names]
    if not all((d / n).is_file() for n in names):
        return None
    samples = []
    for n in names:
        rows, labels = read(d / n)
        bad = [int(v) for v in np.asarray(labels) if not 0 <= int(v) < len(CIFAR10_CLASSES)]
        if bad:
            raise DatasetError(f"{d / n}: label {bad[0]} is not a CIFAR-10 class (0..9); the file is "
                               f"damaged or not CIFAR-10")
        samples += _array_samples(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels, n)
    return Dataset(samples, list(CIFAR10_CLASSES), f"CIFAR-10 {release} release")


def cifar10(path: str | Path, split: str = "test") -> Dataset:
    """The python or binary release, or class folders (on disk or in a zip) with a split level."""
    if split not in ("test", "train"):
        raise DatasetError(f"CIFAR-10 split must be 'test' or 'train', got {split!r}")
    root = Path(path)
    if root.is_dir():
        for release in _CIFAR_RELEASES:
            ds = _cifar_release(root, split, release)
            if ds is not None:
                return ds
    if root.is_dir() or zipfile.is_zipfile(root):
        try:
            return class_folders(root, list(CIFAR10_CLASSES), split=split)
        except DatasetError as e:
            raise DatasetError(
                f"no CIFAR-10 layout recognised in {root}. Looked for: the python release "
                f"(cifar-10-batches-py/{{data_batch_1..5,test_batch}}), the binary release "
                f"(cifar-10-batches-bin/*.bin), and <{split}>/<class>/<image> folders on disk or in "
                f"a zip ({e})") from None
    raise DatasetError(f"CIFAR-10 path {root} is neither a directory nor a zip file")


def read_bytes(opened) -> io.BytesIO | Image.Image:
    """File objects from zips are not seekable; PIL needs seekable input."""
    if isinstance(opened, Image.Image):
        return opened
    with opened as f:
        data = f.read(MAX_IMAGE_BYTES + 1)  # bounded whatever a zip header claims
    if len(data) > MAX_IMAGE_BYTES:
        raise DatasetError(f"image file larger than {MAX_IMAGE_BYTES:,} bytes; refused")
    return io.BytesIO(data)
