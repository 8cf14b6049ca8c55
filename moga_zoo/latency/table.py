"""Latency lookup tables: one entry per row-in-context, keyed in Once-for-All's style.

File format (JSON, ``format: moga-zoo-lut``, ``version: 1``)::

    {"format": "moga-zoo-lut", "version": 1,
     "meta": {"backend": ..., "threads": ..., "spinning": ..., "cpu": ..., "date": ..., "versions": {...},
              "input_size": 224, "options": {<spec options the blocks were built with>}, ...},
     "entries": {"<key>": {"count": n, "mean": ms, "std": ms, "median": ms}, ...},
     "calibration": {"scale": a, "offset": b, "n": k, "models": [...]} | null}

Keys follow Once-for-All (``ofa/nas/efficiency_predictor/latency_lookup_table.py``):
``Conv-input:224x224x3-output:112x112x16``, ``expanded_conv-input:HxWxC-output:HxWxC-expand:E-
kernel:K-stride:S-idskip:I-se:0|1-hs:0|1``, ``Conv_1``, ``AvgPool2D``, ``Conv_2``, ``Logits``;
so an OFA table imports as is. Prediction = calibration(sum of the model's row entries).
"""
from __future__ import annotations

import datetime
import json
import math
import platform
from dataclasses import dataclass, field
from pathlib import Path

from ..sizes import layer_sizes
from ..specs import BLOCK_OPS, Spec

FORMAT, VERSION = "moga-zoo-lut", 1


class TableError(ValueError):
    """A table that cannot be read, or that lacks what a prediction needs."""


def _shape(c: int, h: int, w: int) -> str:
    return f"{h}x{w}x{c}"


def row_keys(spec: Spec, input_size: int = 224) -> list[tuple[int, str]]:
    """(row index, table key) for every row of ``spec``; shapes come from the spec alone."""
    sizes = layer_sizes(spec, input_size)
    first_conv = next(i for i, r in enumerate(spec.rows) if r.op == "conv")
    out = []
    for i, (r, sz) in enumerate(zip(spec.rows, sizes)):
        ci, co = _shape(*sz.in_shape), _shape(*sz.out_shape)
        if r.op == "conv":
            kind = "Conv" if i == first_conv else "Conv_1"
            key = f"{kind}-input:{ci}-output:{co}"
            if kind == "Conv_1" and r.k != 1:
                key += f"-kernel:{r.k}-stride:{r.s}"
        elif r.op in BLOCK_OPS:
            idskip = int(r.op == "ir" and r.s == 1 and sz.in_shape[0] == r.c)
            key = (f"expanded_conv-input:{ci}-output:{co}-expand:{sz.hidden}-kernel:{r.k}-stride:{r.s}"
                   f"-idskip:{idskip}-se:{int(r.se)}-hs:{int(r.nl == 'HS')}")
            if r.op == "ds" or r.nl == "R6":  # not in OFA's space: say what differs
                key += f"-op:{r.op}-nl:{r.nl}"
        elif r.op == "pool":
            key = f"AvgPool2D-input:{ci}-output:{co}"
        elif r.op == "conv_nbn":
            key = f"Conv_2-input:{ci}-output:{co}"
        else:
            key = f"Logits-input:{ci}-output:{r.c}"
        out.append((i, key))
    return out


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass
class LatencyTable:
    entries: dict[str, dict] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    calibration: dict | None = None

    @staticmethod
    def new_meta(backend: str, threads: int, spinning: bool, input_size: int, options: dict, **extra) -> dict:
        from ..export.common import versions
        return {"backend": backend, "threads": threads, "spinning": spinning, "input_size": input_size,
                "cpu": cpu_name(), "machine": platform.machine(),
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "versions": versions(), "options": options, **extra}

    # --- prediction --------------------------------------------------------------------------

    def missing(self, spec: Spec) -> list[str]:
        return [k for _, k in row_keys(spec, self.meta.get("input_size", 224)) if k not in self.entries]

    def raw(self, spec: Spec) -> float:
        """Plain sum of the entries (ms)."""
        want = self.meta.get("options")
        if want is not None and want != spec.to_dict()["options"]:
            raise TableError(f"table was measured with spec options {want}, {spec.name} has "
                             f"{spec.to_dict()['options']}: build a table for this family")
        miss = self.missing(spec)
        if miss:
            raise TableError(f"{len(miss)} of {spec.name}'s rows are not in the table, e.g. {miss[0]}")
        size = self.meta.get("input_size", 224)
        return sum(self.entries[k]["mean"] for _, k in row_keys(spec, size))

    def predict(self, spec: Spec) -> float:
        """Calibrated prediction (ms): scale * sum + offset when the table carries a fit."""
        s = self.raw(spec)
        c = self.calibration
        return c["scale"] * s + c["offset"] if c else s

    # --- files --------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "meta": self.meta, "entries": self.entries,
                "calibration": self.calibration}

    def save(self, path: str | Path) -> Path:
        from ..files import write_text_atomic
        path = Path(path)
        write_text_atomic(path, json.dumps(self.to_dict(), indent=1, sort_keys=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        path = Path(path)
        if not path.is_file():
            raise TableError(f"latency table {path} does not exist")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise TableError(f"{path} is not a moga-zoo latency table (invalid JSON: {e}); an OFA "
                             f"YAML table is read with 'moga-zoo lut import'") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise TableError(f"{path} is not a moga-zoo latency table (no 'format: {FORMAT}')")
        if d.get("version") != VERSION:
            raise TableError(f"{path} is format version {d.get('version')}; this moga-zoo reads {VERSION}")
        for k, v in d["entries"].items():
            if not (isinstance(v, dict) and isinstance(v.get("mean"), (int, float)) and math.isfinite(v["mean"])):
                raise TableError(f"{path}: entry {k} has no numeric 'mean'")
        return cls(d["entries"], d.get("meta", {}), d.get("calibration"))

    # --- Once-for-All YAML ----------------------------------------------------------------------

    def to_ofa_yaml(self) -> str:
        import yaml
        return yaml.safe_dump({k: {"count": int(v.get("count", 1)), "mean": float(v["mean"]),
                                   "std": float(v.get("std", 0.0))} for k, v in self.entries.items()},
                              sort_keys=True)

    @classmethod
    def from_ofa_yaml(cls, text: str, **meta) -> "LatencyTable":
        import yaml
        d = yaml.safe_load(text)
        if not isinstance(d, dict):
            raise TableError("an OFA latency table is a YAML mapping of key -> {count, mean, std}")
        entries = {}
        for k, v in d.items():
            if not isinstance(v, dict) or "mean" not in v:
                raise TableError(f"OFA entry {k!r} has no 'mean'")
            entries[str(k)] = {"count": int(v.get("count", 1)), "mean": float(v["mean"]),
                               "std": float(v.get("std", 0.0))}
        return cls(entries, {"backend": "imported (Once-for-All YAML)", **meta}, None)
