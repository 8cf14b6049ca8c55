"""The one spec language: a network is a list of rows read side by side with MoGA's Table 2.

Every other part of the package (torch and Keras builders, size counter, latency table, search)
consumes these rows, so an architecture fact is written exactly once, here.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Iterable, Sequence

ACTIVATIONS = ("RE", "HS", "R6")  # ReLU, hard-swish, ReLU6 (Table 2's NL column)
OPS = {
    "conv": "conv2d + BN + NL",
    "ds": "depthwise-separable: dw k x k + BN + NL, [SE], pw 1x1 + BN; never residual",
    "ir": "inverted residual: [pw 1x1 expand + BN + NL], dw k x k + BN + NL, [SE], pw 1x1 + BN",
    "pool": "global average pool",
    "conv_nbn": "conv2d 1x1 without BN + NL (after the pool)",
    "fc": "dropout + linear classifier",
}


FEATURE_OPS = ("conv", "ds", "ir")  # rows before the pool: spatial, in ``SpecNet.features``
BLOCK_OPS = ("ds", "ir")  # depthwise blocks (InvertedResidual), the rows SE and expansion apply to


class SpecError(ValueError):
    """An invalid spec; the message names the row and the field."""


@dataclass(frozen=True)
class Row:
    """One line of Table 2: operator, kernel, expansion, out channels, SE, nonlinearity, stride.

    ``t`` is the expansion ratio (hidden = round(in * t)); ``exp`` an explicit expanded width
    (MobileNetV3's "exp size" column) that takes precedence. ``cin`` is Table 2's input-channel
    column: optional, checked against the previous row when given.
    """

    op: str
    k: int = 1
    t: float = 1
    c: int = 0
    se: bool = False
    nl: str | None = None
    s: int = 1
    exp: int | None = None
    cin: int | None = None

    def hidden(self, cin: int) -> int:
        if self.exp is not None:
            return self.exp
        return int(round(cin * self.t))


@dataclass(frozen=True)
class Options:
    """Network-wide conventions that distinguish the families sharing this block language."""

    bn_eps: float = 1e-5
    padding: str = "symmetric"  # "symmetric" (k//2, PyTorch) or "same" (TensorFlow 'SAME')
    se_divisor: int = 4  # squeeze width = hidden // se_divisor ...
    se_round: int = 1  # ... rounded to a multiple of this (MobileNetV3: 8)
    se_act: str | None = None  # None: the layer's own NL inside SE (MoGA); "RE": MobileNetV3
    dropout: float = 0.2
    head_bias: bool = False  # bias of conv_nbn rows (MoGA's released head has none)

    def squeeze_width(self, hidden: int) -> int:
        if self.se_round == 1:
            return hidden // self.se_divisor
        r = self.se_round
        v = max(r, int(hidden / self.se_divisor + r / 2) // r * r)
        return v + r if v < 0.9 * hidden / self.se_divisor else v


@dataclass(frozen=True)
class Spec:
    name: str
    rows: tuple[Row, ...]
    options: Options = field(default_factory=Options)
    in_chans: int = 3
    input_size: int = 224  # the resolution the network is meant for (sizes, exports, tables)

    def __post_init__(self):
        object.__setattr__(self, "rows", tuple(self.rows))
        validate(self)

    @property
    def num_classes(self) -> int:
        return self.rows[-1].c

    @property
    def total_stride(self) -> int:
        return math.prod(r.s for r in self.rows)

    def with_classes(self, num_classes: int) -> "Spec":
        rows = self.rows[:-1] + (replace(self.rows[-1], c=num_classes),)
        return replace(self, rows=rows)

    def to_dict(self) -> dict:
        defaults = Row(op="")
        rows = []
        for r in self.rows:
            d = {f.name: getattr(r, f.name) for f in fields(Row)
                 if getattr(r, f.name) != getattr(defaults, f.name) or f.name in ("op", "c")}
            rows.append(d)
        return {"name": self.name, "in_chans": self.in_chans, "input_size": self.input_size,
                "options": asdict(self.options), "rows": rows}

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)


ROW_KEYS = [f.name for f in fields(Row)]
TABLE_ORDER = ("op", "k", "t", "c", "se", "nl", "s")  # a row given as a list, in Table 2 order


def _fail(i: int, row, fld: str, msg: str):
    op = getattr(row, "op", "?")
    raise SpecError(f"row {i} ({op}): field '{fld}': {msg}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_options(o: "Options") -> None:
    def bad(name, want):
        raise SpecError(f"options: field '{name}': expected {want}, got {getattr(o, name)!r}")
    if isinstance(o.bn_eps, bool) or not isinstance(o.bn_eps, (int, float)) or not 0 < o.bn_eps < 1:
        bad("bn_eps", "a number in (0, 1), e.g. 1e-5")
    for name in ("se_divisor", "se_round"):
        if not _is_int(getattr(o, name)) or getattr(o, name) < 1:
            bad(name, "a whole number >= 1")
    if isinstance(o.dropout, bool) or not isinstance(o.dropout, (int, float)) or not 0 <= o.dropout < 1:
        bad("dropout", "a number in [0, 1)")
    if not isinstance(o.head_bias, bool):
        bad("head_bias", "true or false")


def validate(spec: Spec) -> None:
    """Walk the rows tracking channels; the first problem raises naming the row and field."""
    o = spec.options
    _check_options(o)
    if not isinstance(o.padding, str) or o.padding not in ("symmetric", "same"):
        raise SpecError(f"options: field 'padding': expected 'symmetric' or 'same', got {o.padding!r}")
    if o.se_act is not None and (not isinstance(o.se_act, str) or o.se_act not in ACTIVATIONS):
        raise SpecError(f"options: field 'se_act': unknown activation {o.se_act!r}; "
                        f"use one of {', '.join(ACTIVATIONS)}")
    if not spec.rows:
        raise SpecError(f"spec {spec.name!r} has no rows")
    if isinstance(spec.in_chans, bool) or not isinstance(spec.in_chans, int) or spec.in_chans < 1:
        raise SpecError(f"field 'in_chans': expected a positive integer, got {spec.in_chans!r}")
    cin, pooled = spec.in_chans, False
    for i, r in enumerate(spec.rows):
        if r.op not in OPS:
            _fail(i, r, "op", f"unknown operator {r.op!r}; use one of {', '.join(OPS)}")
        if r.cin is not None and r.cin != cin:
            _fail(i, r, "cin", f"channel mismatch: the previous row outputs {cin} channels, "
                               f"this row says its input has {r.cin}")
        if r.op == "pool":
            if pooled:
                _fail(i, r, "op", "a second pool row")
            pooled = True
            continue
        if not _is_int(r.c) or r.c <= 0:
            _fail(i, r, "c", f"out channels must be a positive integer, got {r.c!r}")
        if not isinstance(r.se, bool):
            _fail(i, r, "se", f"must be true or false, got {r.se!r}")
        if r.op in FEATURE_OPS:
            if pooled:
                _fail(i, r, "op", f"{r.op!r} cannot follow the pool row")
            if not _is_int(r.k) or r.k < 1 or r.k % 2 == 0:
                _fail(i, r, "k", f"kernel must be an odd positive integer, got {r.k!r}")
            if not _is_int(r.s) or r.s not in (1, 2):
                _fail(i, r, "s", f"stride must be 1 or 2, got {r.s!r}")
        else:
            if not pooled:
                _fail(i, r, "op", f"{r.op!r} must come after the pool row")
            if r.op == "conv_nbn" and r.k != 1:
                _fail(i, r, "k", f"conv_nbn acts on the pooled 1x1 map: kernel must be 1, got {r.k!r}")
            if r.s != 1:
                _fail(i, r, "s", f"stride must be 1 after the pool, got {r.s!r}")
        if r.op == "fc":
            if i != len(spec.rows) - 1:
                _fail(i, r, "op", "the fc row must be the last row")
        elif r.nl not in ACTIVATIONS:
            _fail(i, r, "nl", f"unknown activation {r.nl!r}; use one of {', '.join(ACTIVATIONS)}")
        if r.se and r.op not in BLOCK_OPS:
            _fail(i, r, "se", f"SE is only defined for ds/ir rows, not {r.op!r}")
        if r.op == "ir":
            if r.exp is not None and (not _is_int(r.exp) or r.exp <= 0):
                _fail(i, r, "exp", f"explicit expanded width must be a positive integer, got {r.exp!r}")
            if r.exp is None and not (isinstance(r.t, (int, float)) and not isinstance(r.t, bool) and r.t >= 1):
                _fail(i, r, "t", f"expansion ratio must be >= 1, got {r.t!r}")
        elif r.op == "ds" and (r.t != 1 or r.exp is not None):
            _fail(i, r, "t", "a ds row has no expansion (t must be 1)")
        cin = r.c
    if spec.rows[-1].op != "fc":
        raise SpecError(f"spec {spec.name!r}: the last row must be 'fc' (the classifier)")
    if not pooled:
        raise SpecError(f"spec {spec.name!r}: a 'pool' row must come before the classifier")
    stride = spec.total_stride
    if isinstance(spec.input_size, bool) or not isinstance(spec.input_size, int) \
            or spec.input_size < stride or spec.input_size % stride:
        raise SpecError(f"field 'input_size': expected a positive multiple of the network's total "
                        f"stride {stride}, got {spec.input_size!r}")


# --- MoGA search space (paper Table 1) -------------------------------------------------

KERNELS = (3, 5, 7)
EXPANSIONS = (3, 6)
NUM_CHOICES = 12


def choice_to_block(index: int) -> tuple[int, int, bool]:
    """Table 1: index = 6*(t==6) + 2*kernel_slot + se -> (t, k, se)."""
    return EXPANSIONS[index // 6], KERNELS[(index % 6) // 2], bool(index % 2)


def block_to_choice(t: float, k: int, se: bool) -> int:
    return 6 * EXPANSIONS.index(t) + 2 * KERNELS.index(k) + int(se)


# The fixed MobileNetV3-Large skeleton MoGA searches in: (out channels, stride, NL) per layer.
MOGA_SKELETON = ((24, 2, "RE"), (24, 1, "RE"), (40, 2, "RE"), (40, 1, "RE"), (40, 1, "RE"),
                 (80, 2, "HS"), (80, 1, "HS"), (80, 1, "HS"), (80, 1, "HS"), (112, 1, "HS"),
                 (112, 1, "HS"), (160, 2, "HS"), (160, 1, "HS"), (160, 1, "HS"))
MOGA_STEM = (Row("conv", k=3, c=16, nl="HS", s=2), Row("ds", k=3, c=16, nl="RE"))
MOGA_HEAD = (Row("conv", k=1, c=960, nl="HS"), Row("pool"), Row("conv_nbn", c=1280, nl="HS"),
             Row("fc", c=1000))


def _searchable(spec: Spec) -> list[int]:
    return [i for i, r in enumerate(spec.rows) if r.op == "ir"]


def from_choices(choices: Sequence[int], name: str = "moga_custom", num_classes: int = 1000) -> Spec:
    """Choice vector (Table 1 indices, one per searchable layer) -> Spec on the MoGA skeleton."""
    choices = list(choices)
    if len(choices) != len(MOGA_SKELETON):
        raise SpecError(f"choice vector has {len(choices)} entries; the MoGA skeleton has "
                        f"{len(MOGA_SKELETON)} searchable layers")
    rows = []
    for layer, (ch, (c, s, nl)) in enumerate(zip(choices, MOGA_SKELETON), start=1):
        if isinstance(ch, bool) or not isinstance(ch, int) or not 0 <= ch < NUM_CHOICES:
            raise SpecError(f"layer {layer}: field 'choice': index must be an integer in "
                            f"0..{NUM_CHOICES - 1}, got {ch!r}")
        t, k, se = choice_to_block(ch)
        rows.append(Row("ir", k=k, t=t, c=c, se=se, nl=nl, s=s))
    head = MOGA_HEAD[:-1] + (Row("fc", c=num_classes),)
    return Spec(name, MOGA_STEM + tuple(rows) + head)


def for_cifar10(spec: Spec, num_classes: int = 10) -> Spec:
    """The 32x32 (CIFAR-10) form of a network: the stem's stride 2 becomes 1 and the input 32.

    A 224 network shrinks its input 32-fold; at 32x32 that would leave a 1x1 map after the
    fourth stage. With the stem at stride 1 the 14 searchable layers keep their own strides and
    see the same relative map sizes as at 112x112 (2x2 at the end), so the CIFAR form of a MoGA
    network is still its Table-1 choice vector. Training and the CIFAR-10 search share this form.
    """
    first = spec.rows[0]
    if spec.input_size != 224:
        raise SpecError(f"spec {spec.name!r} is already a {spec.input_size}x{spec.input_size} form")
    if first.op != "conv" or first.s != 2:
        raise SpecError(f"spec {spec.name!r}: the CIFAR-10 form sets the stem convolution's stride "
                        f"2 to 1, but row 0 is {first.op!r} with stride {first.s}")
    rows = (replace(first, s=1),) + spec.rows[1:-1] + (replace(spec.rows[-1], c=num_classes),)
    return replace(spec, name=f"{spec.name}_cifar10", rows=rows, input_size=32)


FORMS = {"imagenet": lambda spec: spec, "cifar10": for_cifar10}  # spec transforms weight tags name


def _moga_stems() -> tuple[tuple[Row, ...], ...]:
    return MOGA_STEM, (replace(MOGA_STEM[0], s=1),) + MOGA_STEM[1:]


def to_choices(spec: Spec) -> list[int]:
    """Spec -> choice vector (the 224 or the CIFAR-10 form); fails naming the row when the spec
    leaves the MoGA search space."""
    idx = _searchable(spec)
    if len(idx) != len(MOGA_SKELETON):
        raise SpecError(f"spec {spec.name!r} has {len(idx)} ir rows; the MoGA skeleton has "
                        f"{len(MOGA_SKELETON)}")
    if spec.rows[:idx[0]] not in _moga_stems() or spec.rows[idx[-1] + 1:-1] != MOGA_HEAD[:-1] \
            or spec.options != Options():
        raise SpecError(f"spec {spec.name!r}: stem, head or options differ from the MoGA skeleton")
    out = []
    for i, (c, s, nl) in zip(idx, MOGA_SKELETON):
        r = spec.rows[i]
        if (r.c, r.s, r.nl) != (c, s, nl):
            _fail(i, r, "c/s/nl", f"expected the skeleton's ({c}, {s}, {nl}), got ({r.c}, {r.s}, {r.nl})")
        if r.exp is not None or r.t not in EXPANSIONS:
            _fail(i, r, "t", f"expansion must be one of {EXPANSIONS} as a ratio")
        if r.k not in KERNELS:
            _fail(i, r, "k", f"kernel must be one of {KERNELS}")
        out.append(block_to_choice(r.t, r.k, r.se))
    return out


# --- The released networks, as in the papers' tables -----------------------------------

def _rows(table: Iterable[tuple], **common) -> tuple[Row, ...]:
    """(k, t, c, se, nl, s) tuples, the columns of Table 2, as ir rows."""
    return tuple(Row("ir", k=k, t=t, c=c, se=bool(se), nl=nl, s=s, **common)
                 for k, t, c, se, nl, s in table)


# MoGA-A: exactly the paper's Table 2.   k  t   c   SE  NL    s
MOGA_A = Spec("moga_a", MOGA_STEM + _rows([(5, 6, 24, 0, "RE", 2),
                                           (7, 6, 24, 0, "RE", 1),
                                           (3, 6, 40, 0, "RE", 2),
                                           (3, 6, 40, 1, "RE", 1),
                                           (3, 3, 40, 1, "RE", 1),
                                           (3, 6, 80, 1, "HS", 2),
                                           (3, 6, 80, 0, "HS", 1),
                                           (7, 6, 80, 0, "HS", 1),
                                           (7, 3, 80, 1, "HS", 1),
                                           (7, 6, 112, 0, "HS", 1),
                                           (3, 6, 112, 0, "HS", 1),
                                           (3, 6, 160, 0, "HS", 2),
                                           (5, 6, 160, 1, "HS", 1),
                                           (5, 6, 160, 1, "HS", 1)]) + MOGA_HEAD)

MOGA_B = Spec("moga_b", MOGA_STEM + _rows([(3, 3, 24, 0, "RE", 2),
                                           (3, 3, 24, 0, "RE", 1),
                                           (7, 6, 40, 0, "RE", 2),
                                           (3, 3, 40, 0, "RE", 1),
                                           (5, 6, 40, 0, "RE", 1),
                                           (3, 6, 80, 1, "HS", 2),
                                           (5, 6, 80, 1, "HS", 1),
                                           (3, 3, 80, 0, "HS", 1),
                                           (7, 6, 80, 1, "HS", 1),
                                           (7, 6, 112, 0, "HS", 1),
                                           (5, 3, 112, 0, "HS", 1),
                                           (7, 6, 160, 1, "HS", 2),
                                           (7, 6, 160, 1, "HS", 1),
                                           (3, 6, 160, 1, "HS", 1)]) + MOGA_HEAD)

MOGA_C = Spec("moga_c", MOGA_STEM + _rows([(5, 3, 24, 0, "RE", 2),
                                           (3, 3, 24, 0, "RE", 1),
                                           (5, 3, 40, 0, "RE", 2),
                                           (3, 3, 40, 0, "RE", 1),
                                           (5, 3, 40, 0, "RE", 1),
                                           (5, 3, 80, 0, "HS", 2),
                                           (5, 6, 80, 1, "HS", 1),
                                           (5, 3, 80, 0, "HS", 1),
                                           (5, 3, 80, 0, "HS", 1),
                                           (3, 6, 112, 0, "HS", 1),
                                           (3, 6, 112, 1, "HS", 1),
                                           (3, 6, 160, 1, "HS", 2),
                                           (3, 6, 160, 1, "HS", 1),
                                           (3, 6, 160, 1, "HS", 1)]) + MOGA_HEAD)

# Table-1 choice vectors published with the networks; tests check they encode the rows above.
PUBLISHED_CHOICES = {
    "moga_a": (8, 10, 6, 7, 1, 7, 6, 10, 5, 10, 6, 6, 9, 9),
    "moga_b": (0, 0, 10, 0, 8, 7, 9, 0, 11, 10, 2, 11, 11, 7),
    "moga_c": (2, 0, 2, 0, 2, 2, 9, 2, 2, 6, 7, 7, 7, 7),
}


def _mnv3_rows(table):
    """MobileNetV3's Table 1 columns (k, exp size, out, SE, NL, s): explicit widths."""
    return tuple(Row("ir", k=k, exp=e, c=c, se=bool(se), nl=nl, s=s) for k, e, c, se, nl, s in table)


# MobileNetV3-Large (its paper's Table 1).                 k  exp   c  SE  NL    s
MOBILENETV3_LARGE = Spec("mobilenetv3_large", (Row("conv", k=3, c=16, nl="HS", s=2),) + _mnv3_rows([
    (3, 16, 16, 0, "RE", 1),
    (3, 64, 24, 0, "RE", 2),
    (3, 72, 24, 0, "RE", 1),
    (5, 72, 40, 1, "RE", 2),
    (5, 120, 40, 1, "RE", 1),
    (5, 120, 40, 1, "RE", 1),
    (3, 240, 80, 0, "HS", 2),
    (3, 200, 80, 0, "HS", 1),
    (3, 184, 80, 0, "HS", 1),
    (3, 184, 80, 0, "HS", 1),
    (3, 480, 112, 1, "HS", 1),
    (3, 672, 112, 1, "HS", 1),
    (5, 672, 160, 1, "HS", 2),
    (5, 960, 160, 1, "HS", 1),
    (5, 960, 160, 1, "HS", 1)]) + MOGA_HEAD,
    options=Options(se_round=8, se_act="RE", head_bias=True))


def _stages(stages) -> tuple[Row, ...]:
    """EfficientNet's stage notation (repeats, k, first stride, t, out) expanded to rows."""
    rows = []
    for n, k, s, t, c in stages:
        for j in range(n):
            rows.append(Row("ds" if t == 1 else "ir", k=k, t=t, c=c, nl="R6", s=s if j == 0 else 1))
    return tuple(rows)


EFFICIENTNET_LITE0 = Spec(
    "efficientnet_lite0",
    (Row("conv", k=3, c=32, nl="R6", s=2),)
    + _stages([(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
               (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)])
    + (Row("conv", k=1, c=1280, nl="R6"), Row("pool"), Row("fc", c=1000)),
    options=Options(bn_eps=1e-3, padding="same"))

BUILTIN_SPECS = {s.name: s for s in (MOGA_A, MOGA_B, MOGA_C, MOBILENETV3_LARGE, EFFICIENTNET_LITE0)}


# --- Spec files ------------------------------------------------------------------------

def _row_from(obj, i: int) -> Row:
    if isinstance(obj, (list, tuple)):
        if len(obj) != len(TABLE_ORDER):
            raise SpecError(f"row {i}: a list row needs the {len(TABLE_ORDER)} Table-2 columns "
                            f"{', '.join(TABLE_ORDER)}; got {len(obj)} values")
        obj = dict(zip(TABLE_ORDER, obj))
    if not isinstance(obj, dict):
        raise SpecError(f"row {i}: expected a list or an object, got {type(obj).__name__}")
    unknown = set(obj) - set(ROW_KEYS)
    if unknown:
        raise SpecError(f"row {i}: unknown field(s) {', '.join(sorted(unknown))}; "
                        f"fields are {', '.join(ROW_KEYS)}")
    if "op" not in obj:
        raise SpecError(f"row {i}: field 'op' is missing")
    return Row(**obj)


def spec_from_dict(d: dict, default_name: str = "custom") -> Spec:
    """A spec object: either explicit ``rows`` or a MoGA ``choices`` vector."""
    if "choices" in d:
        return from_choices(d["choices"], name=d.get("name", default_name),
                            num_classes=d.get("num_classes", 1000))
    if "rows" not in d:
        raise SpecError("a spec needs either 'rows' (Table-2 rows) or 'choices' (a MoGA choice vector)")
    opts = d.get("options", {})
    unknown = set(opts) - {f.name for f in fields(Options)}
    if unknown:
        raise SpecError(f"options: unknown field(s) {', '.join(sorted(unknown))}")
    return Spec(d.get("name", default_name), tuple(_row_from(r, i) for i, r in enumerate(d["rows"])),
                Options(**opts), d.get("in_chans", 3), d.get("input_size", 224))


def load_spec(path: str | Path) -> Spec:
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"spec file {path} does not exist") from None
    except json.JSONDecodeError as e:
        raise SpecError(f"spec file {path} is not valid JSON: {e}") from None
    if not isinstance(d, dict):
        raise SpecError(f"spec file {path}: expected a JSON object with 'rows' or 'choices'")
    return spec_from_dict(d, default_name=path.stem)
