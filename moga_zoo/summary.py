"""A model described the way the paper's Table 2 shows it, with per-row params and MACs."""
from __future__ import annotations

from .builder import feature_info
from .sizes import layer_sizes
from .specs import Spec, SpecError, to_choices

_OP_NAMES = {"conv": "conv2d {k}x{k}", "ds": "sep {k}x{k}", "ir": "bneck {k}x{k}", "pool": "avgpool",
             "conv_nbn": "conv2d 1x1, NBN", "fc": "fc"}


def _shape(c: int, h: int, w: int) -> str:
    return f"{h}x{w}x{c}" if h != w else f"{h}^2x{c}"


def describe(spec: Spec, input_size: int | None = None) -> dict:
    """Rows with input shape, op, t/exp, c, SE, NL, s, params, MACs; totals and feature levels."""
    input_size = input_size or spec.input_size
    sizes = layer_sizes(spec, input_size)
    layers = []
    for r, sz in zip(spec.rows, sizes):
        c, h, w = sz.in_shape
        t = None
        if r.op == "ir":
            t = r.exp if r.exp is not None else r.t
        elif r.op == "ds":
            t = 1
        layers.append({
            "index": sz.index, "input": _shape(c, h, w), "op": _OP_NAMES[r.op].format(k=r.k),
            "t": t, "exp": sz.hidden, "c": r.c if r.op != "pool" else c, "se": r.se,
            "nl": r.nl if r.op not in ("pool", "fc") else None,
            "s": r.s, "params": sz.params, "macs": sz.macs})
    try:
        choices = to_choices(spec)
    except SpecError:
        choices = None
    return {"name": spec.name, "input_size": input_size, "params": sum(s.params for s in sizes),
            "macs": sum(s.macs for s in sizes), "num_classes": spec.num_classes,
            "choices": choices, "options": spec.to_dict()["options"],
            "feature_info": [{k: f[k] for k in ("stride", "channels")} for f in feature_info(spec)],
            "layers": layers}


def format_table(d: dict) -> str:
    head = ["#", "input", "operator", "t", "c", "SE", "NL", "s", "params", "MACs"]
    rows = []
    for l in d["layers"]:
        t = "" if l["t"] is None else (f"{l['t']:g}" if isinstance(l["t"], float) else str(l["t"]))
        rows.append([str(l["index"]), l["input"], l["op"], t, str(l["c"]), "yes" if l["se"] else "-",
                     l["nl"] or "-", str(l["s"]), f"{l['params']:,}", f"{l['macs']:,}"])
    rows.append(["", "", "total", "", "", "", "", "", f"{d['params']:,}", f"{d['macs']:,}"])
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    right = {0, 3, 4, 7, 8, 9}

    def fmt(r):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))

    lines = [f"{d['name']}  (input {d['input_size']}x{d['input_size']}, {d['num_classes']} classes)",
             fmt(head), fmt(["-" * w for w in widths])]
    lines += [fmt(r) for r in rows[:-1]] + [fmt(["-" * w for w in widths]), fmt(rows[-1])]
    if d["choices"] is not None:
        lines.append("Table-1 choice vector: " + " ".join(map(str, d["choices"])))
    lines.append("feature maps: " + ", ".join(f"stride {f['stride']}: {f['channels']} ch"
                                                for f in d["feature_info"]))
    return "\n".join(lines)
