"""Parameters and MACs computed from the spec alone (MOGA_FACTS.md section 3 convention).

Counting from rows rather than by running a module lets the search and the latency table price an
architecture without building it; tests cross-check these figures against the built module.
"""
from __future__ import annotations

from dataclasses import dataclass

from .specs import BLOCK_OPS, Spec


def out_size(size: int, k: int, s: int) -> int:
    # Both paddings give ceil(size / s) for odd k (symmetric k//2 and TF 'SAME').
    return (size + 2 * (k // 2) - k) // s + 1


@dataclass(frozen=True)
class LayerSize:
    index: int
    op: str
    in_shape: tuple[int, int, int]  # C, H, W
    out_shape: tuple[int, int, int]
    hidden: int | None
    params: int
    macs: int


def _bn(c: int) -> int:
    return 2 * c  # trainable affine only; running stats are buffers


def layer_sizes(spec: Spec, input_size: int | None = None) -> list[LayerSize]:
    """Per-row shapes, params and MACs at ``input_size`` (default: the spec's own)."""
    input_size = input_size or spec.input_size
    o = spec.options
    c, h, w = spec.in_chans, input_size, input_size
    out = []
    for i, r in enumerate(spec.rows):
        hidden, params, macs = None, 0, 0
        if r.op == "conv":
            h2, w2 = out_size(h, r.k, r.s), out_size(w, r.k, r.s)
            params = r.k * r.k * c * r.c + _bn(r.c)
            macs = h2 * w2 * r.c * c * r.k * r.k
            shape = (r.c, h2, w2)
        elif r.op in BLOCK_OPS:
            hidden = c if r.op == "ds" else r.hidden(c)
            h2, w2 = out_size(h, r.k, r.s), out_size(w, r.k, r.s)
            if hidden != c:  # expand conv
                params += c * hidden + _bn(hidden)
                macs += h * w * hidden * c
            params += r.k * r.k * hidden + _bn(hidden)
            macs += h2 * w2 * hidden * r.k * r.k
            if r.se:
                sq = o.squeeze_width(hidden)
                params += hidden * sq + sq + sq * hidden + hidden
                macs += 2 * hidden * sq
            params += hidden * r.c + _bn(r.c)
            macs += h2 * w2 * r.c * hidden
            shape = (r.c, h2, w2)
        elif r.op == "pool":
            shape = (c, 1, 1)
        elif r.op == "conv_nbn":
            params = c * r.c + (r.c if o.head_bias else 0)
            macs = c * r.c
            shape = (r.c, 1, 1)
        else:  # fc
            params = c * r.c + r.c
            macs = c * r.c
            shape = (r.c, 1, 1)
        out.append(LayerSize(i, r.op, (c, h, w), shape, hidden, params, macs))
        c, h, w = shape
    return out


def count(spec: Spec, input_size: int | None = None) -> tuple[int, int]:
    """(params, MACs) of the whole network."""
    sizes = layer_sizes(spec, input_size)
    return sum(s.params for s in sizes), sum(s.macs for s in sizes)
