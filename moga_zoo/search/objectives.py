"""MoGA's objectives for choice vectors: accuracy (a pluggable source), latency (a table),
parameters (the spec counter), turned into the minimised array ``nsga2`` expects.

In the MoGA skeleton every searchable layer has fixed input and output channels, so a layer's
latency entry, parameters and MACs depend on its own choice alone: they are precomputed once per
(layer, choice) from the rows of ``specs.from_choices`` and summed, which prices a generation in
microseconds and agrees exactly with ``LatencyTable.predict`` and ``sizes.count`` (tested).
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .. import specs
from ..files import sha256_file
from ..latency.table import LatencyTable, TableError, row_keys
from ..sizes import layer_sizes
from .nsga import SearchError

N_LAYERS, N_CHOICES = len(specs.MOGA_SKELETON), specs.NUM_CHOICES


@dataclass
class SpaceCosts:
    """Per-(layer, choice) latency (table entry, ms), parameters and MACs of the MoGA space, plus
    the fixed stem/head parts. ``latency(X)`` applies the table's calibration."""

    lat: np.ndarray  # N_LAYERS x N_CHOICES
    params: np.ndarray
    macs: np.ndarray
    fixed: dict
    calibration: dict | None
    input_size: int

    @classmethod
    def build(cls, table: LatencyTable | None = None, input_size: int | None = None,
              num_classes: int = 1000) -> "SpaceCosts":
        size = input_size or (table.meta.get("input_size", 224) if table is not None else 224)
        lat = np.zeros((N_LAYERS, N_CHOICES))
        par = np.zeros((N_LAYERS, N_CHOICES), np.int64)
        mac = np.zeros((N_LAYERS, N_CHOICES), np.int64)
        fixed = {"lat": 0.0, "params": 0, "macs": 0}
        for c in range(N_CHOICES):
            spec = specs.from_choices([c] * N_LAYERS, num_classes=num_classes)
            if table is not None:
                miss = table.missing(spec)
                if miss:
                    raise TableError(f"the table lacks {len(miss)} rows of the MoGA space at {size}x{size}, "
                                     f"e.g. {miss[0]}: build it with 'moga-zoo lut build' (it covers all 12 "
                                     f"choices of all 14 layers)")
                keys = dict(row_keys(spec, size))
            sizes = layer_sizes(spec, size)
            layer = 0
            for i, r in enumerate(spec.rows):
                t = table.entries[keys[i]]["mean"] if table is not None else 0.0
                if r.op == "ir":
                    lat[layer, c], par[layer, c], mac[layer, c] = t, sizes[i].params, sizes[i].macs
                    layer += 1
                elif c == 0:
                    fixed["lat"] += t
                    fixed["params"] += sizes[i].params
                    fixed["macs"] += sizes[i].macs
        if table is not None:
            want = table.meta.get("options")
            if want is not None and want != specs.from_choices([0] * N_LAYERS).to_dict()["options"]:
                raise TableError(f"the table was measured with spec options {want}, not the MoGA skeleton's")
        return cls(lat, par, mac, fixed, table.calibration if table is not None else None, size)

    def _sum(self, a: np.ndarray, X: np.ndarray):
        X = np.asarray(X, dtype=int)
        return a[np.arange(N_LAYERS), X].sum(axis=1)

    def latency(self, X) -> np.ndarray:
        raw = self.fixed["lat"] + self._sum(self.lat, X)
        c = self.calibration
        return c["scale"] * raw + c["offset"] if c else raw

    def parameters(self, X) -> np.ndarray:
        return self.fixed["params"] + self._sum(self.params, X)

    def mac_count(self, X) -> np.ndarray:
        return self.fixed["macs"] + self._sum(self.macs, X)


# --- accuracy sources ------------------------------------------------------------------------

class AccuracySource:
    """Choice vectors (n x 14) -> top-1 accuracy in percent, with a provenance description."""

    description: str = ""
    form: str | None = None  # the spec form the accuracies belong to, when the source knows it

    def __call__(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def provenance(self) -> dict:
        return {"source": self.description}


class ProxyAccuracy(AccuracySource):
    """A documented stand-in until a supernet exists: ImageNet top-1 predicted from MACs as
    ``75.3 + 1.9 * ln(MACs / 221M)``, the line through MoGA-C (221M, 75.3%) and MoGA-A (304M,
    75.9%) of the paper's Table 3. It is not an accuracy measurement: it lets the search, its
    ablations and its tests run on a cheap, deterministic objective that prefers bigger networks,
    as a real accuracy would."""

    description = "proxy: 75.3 + 1.9 * ln(MACs / 221M) (paper Table 3 line, not a measurement)"

    def __init__(self, costs: SpaceCosts | None = None):
        self.costs = costs or SpaceCosts.build(None)

    def __call__(self, X):
        return 75.3 + 1.9 * np.log(self.costs.mac_count(X) / 221e6)


class CsvAccuracy(AccuracySource):
    """Measured accuracies: a CSV with a ``choices`` column (14 indices separated by spaces, as
    ``moga-zoo search`` writes them) and a ``top1`` column (percent)."""

    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.is_file():
            raise SearchError(f"accuracy CSV {path} does not exist")
        self.path, self.table = path, {}
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"choices", "top1"} <= set(reader.fieldnames):
                raise SearchError(f"{path}: needs columns 'choices' and 'top1', has {reader.fieldnames}")
            for n, row in enumerate(reader, start=2):
                try:
                    key = tuple(int(v) for v in row["choices"].split())
                    acc = float(row["top1"])
                except ValueError:
                    raise SearchError(f"{path} line {n}: choices must be integers and top1 a number") from None
                if len(key) != N_LAYERS or not all(0 <= v < N_CHOICES for v in key) or not math.isfinite(acc):
                    raise SearchError(f"{path} line {n}: expected {N_LAYERS} choices in 0..{N_CHOICES - 1} "
                                      f"and a finite top1")
                self.table[key] = acc
        if not self.table:
            raise SearchError(f"{path} holds no rows")
        self.description = f"csv:{path} ({len(self.table)} architectures)"

    def __call__(self, X):
        out = np.empty(len(X))
        for i, x in enumerate(np.asarray(X, dtype=int)):
            key = tuple(int(v) for v in x)
            if key not in self.table:
                raise SearchError(f"{self.path} has no accuracy for choices {' '.join(map(str, key))}: a CSV "
                                  f"source must cover every architecture the search can visit (use it to "
                                  f"re-score a fixed set, or use a supernet source)")
            out[i] = self.table[key]
        return out

    def provenance(self):
        return {"source": self.description, "sha256": sha256_file(self.path)}


class CallableAccuracy(AccuracySource):
    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], description: str):
        self.fn, self.description = fn, description

    def __call__(self, X):
        return np.asarray(self.fn(np.asarray(X, dtype=int)), dtype=float)


def accuracy_source(spec: str | Callable, costs: SpaceCosts | None = None, **kw) -> AccuracySource:
    """``proxy``, ``csv:PATH`` (or a path ending in .csv), ``supernet:CKPT`` or a callable."""
    if callable(spec) and not isinstance(spec, str):
        return spec if isinstance(spec, AccuracySource) else CallableAccuracy(spec, getattr(spec, "__name__", "callable"))
    if spec == "proxy":
        return ProxyAccuracy(costs)
    if spec.startswith("csv:") or spec.endswith(".csv"):
        return CsvAccuracy(spec[4:] if spec.startswith("csv:") else spec)
    if spec.startswith("supernet:"):
        from .score import SupernetAccuracy
        return SupernetAccuracy(spec[len("supernet:"):], **kw)
    raise SearchError(f"unknown accuracy source {spec!r}: use 'proxy', 'csv:PATH' or 'supernet:CKPT'")


# --- the objective vector ---------------------------------------------------------------------

OBJECTIVE_NAMES = ("accuracy", "latency", "params")


@dataclass
class MogaObjectives:
    """Choice vectors -> minimised objectives: (-top1, latency ms[, -params or +params]).

    The paper *maximises* parameters as its third objective (more parameters at the same latency
    is more capacity for free on a mobile GPU); ``params="min"`` minimises them instead and
    ``n_objectives=2`` drops them.
    """

    accuracy: AccuracySource
    costs: SpaceCosts
    params: str = "max"
    n_objectives: int = 3

    def __post_init__(self):
        if self.params not in ("max", "min"):
            raise SearchError(f"params direction must be 'max' or 'min', got {self.params!r}")
        if self.n_objectives not in (2, 3):
            raise SearchError(f"MoGA has 2 or 3 objectives, got {self.n_objectives}")
        self.cache: dict[bytes, np.ndarray] = {}

    def __call__(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=int)
        F = np.empty((len(X), self.n_objectives))
        todo = [i for i, x in enumerate(X) if x.tobytes() not in self.cache]
        if todo:
            acc = self.accuracy(X[todo])
            for i, a in zip(todo, acc):
                self.cache[X[i].tobytes()] = float(a)
        F[:, 0] = [-self.cache[x.tobytes()] for x in X]
        F[:, 1] = self.costs.latency(X)
        if self.n_objectives == 3:
            p = self.costs.parameters(X) / 1e6
            F[:, 2] = -p if self.params == "max" else p
        return F

    def columns(self, F: np.ndarray) -> dict:
        """Minimised objectives back to named values (top1 %, latency ms, params M)."""
        out = {"top1": -F[:, 0], "latency_ms": F[:, 1]}
        if F.shape[1] == 3:
            out["params_m"] = -F[:, 2] if self.params == "max" else F[:, 2]
        return out
