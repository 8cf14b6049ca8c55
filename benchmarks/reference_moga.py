"""MoGA-A/B/C written the way the authors' release writes them (models/MoGA_*.py): NCHW,
hard-swish as ``x * relu6(x + 3) / 6``, their module names (so their checkpoints load as is).

This is the speed baseline of ``benchmarks/bench_eager.py`` and an independent oracle in the tests
(its state dict, saved in the authors' format, must load into our builder and give the same
logits). It deliberately does not use moga_zoo's specs.
"""
import torch
import torch.nn.functional as F
from torch import nn

# (expansion, out, kernel, stride, act 0=ReLU 1=h-swish, se) per searchable layer, as released.
CONFIGS = {
    "moga_a": [[6, 24, 5, 2, 0, 0], [6, 24, 7, 1, 0, 0], [6, 40, 3, 2, 0, 0], [6, 40, 3, 1, 0, 1],
               [3, 40, 3, 1, 0, 1], [6, 80, 3, 2, 1, 1], [6, 80, 3, 1, 1, 0], [6, 80, 7, 1, 1, 0],
               [3, 80, 7, 1, 1, 1], [6, 112, 7, 1, 1, 0], [6, 112, 3, 1, 1, 0], [6, 160, 3, 2, 1, 0],
               [6, 160, 5, 1, 1, 1], [6, 160, 5, 1, 1, 1]],
    "moga_b": [[3, 24, 3, 2, 0, 0], [3, 24, 3, 1, 0, 0], [6, 40, 7, 2, 0, 0], [3, 40, 3, 1, 0, 0],
               [6, 40, 5, 1, 0, 0], [6, 80, 3, 2, 1, 1], [6, 80, 5, 1, 1, 1], [3, 80, 3, 1, 1, 0],
               [6, 80, 7, 1, 1, 1], [6, 112, 7, 1, 1, 0], [3, 112, 5, 1, 1, 0], [6, 160, 7, 2, 1, 1],
               [6, 160, 7, 1, 1, 1], [6, 160, 3, 1, 1, 1]],
    "moga_c": [[3, 24, 5, 2, 0, 0], [3, 24, 3, 1, 0, 0], [3, 40, 5, 2, 0, 0], [3, 40, 3, 1, 0, 0],
               [3, 40, 5, 1, 0, 0], [3, 80, 5, 2, 1, 0], [6, 80, 5, 1, 1, 1], [3, 80, 5, 1, 1, 0],
               [3, 80, 5, 1, 1, 0], [6, 112, 3, 1, 1, 0], [6, 112, 3, 1, 1, 1], [6, 160, 3, 2, 1, 1],
               [6, 160, 3, 1, 1, 1], [6, 160, 3, 1, 1, 1]],
}


class Hswish(nn.Module):
    def forward(self, x):
        return x * F.relu6(x + 3.0, inplace=True) / 6.0


class Hsigmoid(nn.Module):
    def forward(self, x):
        return F.relu6(x + 3.0, inplace=True) / 6.0


class SEModule(nn.Module):
    def __init__(self, ch, act, reduction=4):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Sequential(nn.Conv2d(ch, ch // reduction, 1, 1, 0, bias=True), act)
        self.fc = nn.Sequential(nn.Conv2d(ch // reduction, ch, 1, 1, 0, bias=True), Hsigmoid())

    def forward(self, x):
        return torch.mul(x, self.fc(self.conv(self.avg_pool(x))))


class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, k, s, t, act, se):
        super().__init__()
        hidden = round(inp * t)
        self.use_res = s == 1 and inp == oup
        self.act, self.se = act, se
        self.conv1 = nn.Conv2d(inp, hidden, 1, 1, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, k, s, k // 2, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        if se:
            self.mid_se = SEModule(hidden, act)
        self.conv3 = nn.Conv2d(hidden, oup, 1, 1, 0, bias=False)
        self.bn3 = nn.BatchNorm2d(oup)

    def forward(self, x):
        y = self.act(self.bn1(self.conv1(x)))
        y = self.act(self.bn2(self.conv2(y)))
        if self.se:
            y = self.mid_se(y)
        y = self.bn3(self.conv3(y))
        return x + y if self.use_res else y


class ReferenceMoGA(nn.Module):
    def __init__(self, name="moga_a", n_class=1000):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), Hswish())
        self.separable_conv = nn.Sequential(
            nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
            nn.Conv2d(16, 16, 1, 1, 0, bias=False), nn.BatchNorm2d(16))
        layers, cin = [], 16
        for t, c, k, s, a, se in CONFIGS[name]:
            act = nn.ReLU(inplace=True) if a == 0 else Hswish()
            layers.append(InvertedResidual(cin, c, k, s, t, act, bool(se)))
            cin = c
        self.mb_module = nn.Sequential(*layers)
        self.conv_before_pooling = nn.Sequential(nn.Conv2d(cin, 960, 1, 1, 0, bias=False),
                                                 nn.BatchNorm2d(960), Hswish())
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.conv_head = nn.Sequential(nn.Conv2d(960, 1280, 1, bias=False), Hswish(), nn.Dropout2d(0.2))
        self.classifier = nn.Linear(1280, n_class)

    def forward(self, x):
        x = self.conv_before_pooling(self.mb_module(self.separable_conv(self.stem(x))))
        x = self.conv_head(self.global_pooling(x))
        return self.classifier(x.view(x.size(0), -1))
