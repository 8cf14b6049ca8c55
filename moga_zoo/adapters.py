"""Checkpoint layouts other projects wrote, remapped onto our module names.

Each adapter is a list of (regex, replacement) rules; a replacement may be a function of the match
and the target spec, because block indices shift between layouts. Detection looks at keys only.
"""
from __future__ import annotations

import re
from typing import Callable

from .specs import FEATURE_OPS, Spec


def _n_features(spec: Spec) -> int:
    return sum(r.op in FEATURE_OPS for r in spec.rows)


# The authors' MoGA release (models/MoGA_*.py): stem, separable_conv, mb_module.i, head.
OFFICIAL_MOGA = [
    (r"stem\.0\.", lambda m, s: "features.0.conv."),
    (r"stem\.1\.", lambda m, s: "features.0.bn."),
    (r"separable_conv\.0\.", lambda m, s: "features.1.dw.conv."),
    (r"separable_conv\.1\.", lambda m, s: "features.1.dw.bn."),
    (r"separable_conv\.3\.", lambda m, s: "features.1.project.conv."),
    (r"separable_conv\.4\.", lambda m, s: "features.1.project.bn."),
    (r"mb_module\.(\d+)\.(conv|bn)([123])\.", lambda m, s: "features.{}.{}.{}.".format(
        int(m[1]) + 2, ("expand", "dw", "project")[int(m[3]) - 1], m[2])),
    (r"mb_module\.(\d+)\.mid_se\.conv\.0\.", lambda m, s: f"features.{int(m[1]) + 2}.se.reduce."),
    (r"mb_module\.(\d+)\.mid_se\.fc\.0\.", lambda m, s: f"features.{int(m[1]) + 2}.se.expand."),
    (r"conv_before_pooling\.0\.", lambda m, s: f"features.{_n_features(s) - 1}.conv."),
    (r"conv_before_pooling\.1\.", lambda m, s: f"features.{_n_features(s) - 1}.bn."),
    (r"conv_head\.0\.", lambda m, s: "head_convs.0.conv."),
    (r"classifier\.", lambda m, s: "classifier."),
]

_LITE_BLOCK = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "dw.conv",
               "_bn1": "dw.bn", "_se_reduce": "se.reduce", "_se_expand": "se.expand",
               "_project_conv": "project.conv", "_bn2": "project.bn"}

# efficientnet_lite_pytorch / EfficientNet-PyTorch: _conv_stem, _bn0, _blocks.N._*, _conv_head, _bn1, _fc.
LITE_PYTORCH = [
    (r"_conv_stem\.", lambda m, s: "features.0.conv."),
    (r"_bn0\.", lambda m, s: "features.0.bn."),
    (r"_blocks\.(\d+)\.(_\w+?)\.", lambda m, s: f"features.{int(m[1]) + 1}.{_LITE_BLOCK[m[2]]}."),
    (r"_conv_head\.", lambda m, s: f"features.{_n_features(s) - 1}.conv."),
    (r"_bn1\.", lambda m, s: f"features.{_n_features(s) - 1}.bn."),
    (r"_fc\.", lambda m, s: "classifier."),
]

ADAPTERS: dict[str, list[tuple[str, Callable]]] = {
    "official-moga": OFFICIAL_MOGA,
    "efficientnet-lite-pytorch": LITE_PYTORCH,
}


def detect_layout(keys) -> str:
    keys = set(keys)
    if any(k.startswith("mb_module.") for k in keys) or "stem.0.weight" in keys:
        return "official-moga"
    if "_conv_stem.weight" in keys:
        return "efficientnet-lite-pytorch"
    return "moga-zoo"


def remap(state_dict: dict, spec: Spec, layout: str) -> dict:
    """Rename keys; a key no rule matches is kept as is (and then reported as unexpected)."""
    if layout == "moga-zoo":
        return dict(state_dict)
    rules = [(re.compile(p), f) for p, f in ADAPTERS[layout]]
    out = {}
    for key, value in state_dict.items():
        for pattern, fn in rules:
            m = pattern.match(key)
            if m:
                key = fn(m, spec) + key[m.end():]
                break
        out[key] = value
    return out
