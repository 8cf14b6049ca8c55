"""Torch layers for the spec operators. Native nn.Hardswish / nn.Hardsigmoid keep eager fast and
export to single ONNX/TFLite ops."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .specs import Options, Row

_ACT = {"RE": nn.ReLU, "HS": nn.Hardswish, "R6": nn.ReLU6}


def make_act(name: str) -> nn.Module:
    return _ACT[name](inplace=True)


class SamePad(nn.Module):
    """TensorFlow 'SAME' padding for strided convs: the extra pixel goes bottom/right.

    Computed from the input shape at run time so any (even or odd) resolution is exact; for
    stride 1 and odd kernels 'SAME' equals symmetric padding and no module is inserted.
    """

    def __init__(self, k: int, s: int):
        super().__init__()
        self.k, self.s = k, s

    def forward(self, x):
        pads = []
        # int(): exported graphs get constant pads (H, W are static there), not a shape subgraph
        for size in (int(x.shape[-1]), int(x.shape[-2])):
            total = max((math.ceil(size / self.s) - 1) * self.s + self.k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads)


def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Conv weight and bias with an eval-mode BatchNorm folded in."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return conv.weight * scale.reshape(-1, 1, 1, 1), bias


class ConvBnAct(nn.Module):
    """conv + BN + activation.

    Without autograd and with BN in eval mode (plain inference), the conv runs with BN folded
    in: one op instead of two, and channels_last BN (slow on CPU) disappears. The folded tensors
    are cached and recomputed whenever any source tensor is replaced or modified in place, so
    loading weights or moving the model stays correct. With autograd on, while tracing for
    export (the exporter folds BN itself), or with hooks on conv/bn, BN runs as usual.
    """

    def __init__(self, cin: int, cout: int, k: int, s: int, act: str | None, opts: Options,
                 groups: int = 1):
        super().__init__()
        same = opts.padding == "same" and s > 1
        self.pad = SamePad(k, s) if same else None
        self.conv = nn.Conv2d(cin, cout, k, s, 0 if same else k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=opts.bn_eps)
        self.act = make_act(act) if act else nn.Identity()
        self._folded = (None, None)

    def forward(self, x):
        if self.pad is not None:
            x = self.pad(x)
        mods = self._modules  # direct dict access: this runs ~50 times per image
        conv, bn, act = mods["conv"], mods["bn"], mods["act"]
        if bn.training or torch.is_grad_enabled() or torch.jit.is_tracing() or _hooked(conv, bn):
            return act(bn(conv(x)))
        buffers = bn._buffers
        sources = (conv._parameters["weight"], bn._parameters["weight"], bn._parameters["bias"],
                   buffers["running_mean"], buffers["running_var"])
        key = [(t.data_ptr(), t._version, t.dtype) for t in sources]
        key.append(bn.eps)
        if self._folded[0] != key:
            self._folded = (key, fold_bn(conv, bn))
        w, b = self._folded[1]
        return act(conv._conv_forward(x, w, b))


def _hooked(*modules) -> bool:
    """Hooks must see their module's calls (feature extractors, FLOP counters), so a hooked
    conv/bn disables the folded path."""
    g = nn.modules.module
    return bool(g._global_forward_hooks or g._global_forward_pre_hooks
                or any(m._forward_hooks or m._forward_pre_hooks for m in modules))


class SqueezeExcite(nn.Module):
    """SE with a 4-D gate ([N, C, 1, 1]) so exporters keep a broadcast every mobile GPU supports."""

    def __init__(self, hidden: int, squeeze: int, act: str):
        super().__init__()
        self.reduce = nn.Conv2d(hidden, squeeze, 1)
        self.act = make_act(act)
        self.expand = nn.Conv2d(squeeze, hidden, 1)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)  # exports as GlobalAveragePool
        return x * self.gate(self.expand(self.act(self.reduce(s))))


class InvertedResidual(nn.Module):
    """ir and ds rows: [expand], depthwise, [SE], project, residual when shapes allow."""

    def __init__(self, row: Row, cin: int, opts: Options):
        super().__init__()
        hidden = cin if row.op == "ds" else row.hidden(cin)
        self.expand = ConvBnAct(cin, hidden, 1, 1, row.nl, opts) if hidden != cin else None
        self.dw = ConvBnAct(hidden, hidden, row.k, row.s, row.nl, opts, groups=hidden)
        self.se = (SqueezeExcite(hidden, opts.squeeze_width(hidden), opts.se_act or row.nl)
                   if row.se else None)
        self.project = ConvBnAct(hidden, row.c, 1, 1, None, opts)
        self.residual = row.op == "ir" and row.s == 1 and cin == row.c
        self.drop_path = 0.0  # stochastic depth on the residual branch (set by the builder)

    def forward(self, x):
        y = x if self.expand is None else self.expand(x)
        y = self.dw(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        if not self.residual:
            return y
        if self.drop_path and self.training:
            keep = 1.0 - self.drop_path
            y = y * (torch.rand(y.shape[0], 1, 1, 1, dtype=y.dtype, device=y.device) < keep) / keep
        return x + y


class ConvAct(nn.Module):
    """conv_nbn row: 1x1 conv on the pooled map, no BN."""

    def __init__(self, cin: int, cout: int, act: str, bias: bool):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=bias)
        self.act = make_act(act)

    def forward(self, x):
        return self.act(self.conv(x))
