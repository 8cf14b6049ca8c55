"""The one builder: Spec rows -> nn.Module. Every registered model is this class."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .blocks import ConvAct, ConvBnAct, InvertedResidual
from .specs import BLOCK_OPS, FEATURE_OPS, Options, Row, Spec, SpecError


def make_row(r: Row, cin: int, opts: Options) -> nn.Module:
    """The torch module of one row (also timed alone for latency tables)."""
    if r.op == "conv":
        return ConvBnAct(cin, r.c, r.k, r.s, r.nl, opts)
    if r.op in BLOCK_OPS:
        return InvertedResidual(r, cin, opts)
    if r.op == "pool":
        return nn.AdaptiveAvgPool2d(1)
    if r.op == "conv_nbn":
        return ConvAct(cin, r.c, r.nl, opts.head_bias)
    return nn.Sequential(nn.Flatten(1), nn.Dropout(opts.dropout), nn.Linear(cin, r.c))


def feature_info(spec: Spec) -> list[dict]:
    """Where each reduction level ends in ``features``: index into features, stride, channels.

    Level i has stride 2**(i+1); the last row before the pool closes the deepest level, so
    MoGA's stride-32 map is the 960-channel one (as timm reports for MobileNetV3).
    """
    info, stride = [], 1
    body = [r for r in spec.rows if r.op in FEATURE_OPS]
    for i, r in enumerate(body):
        nxt = body[i + 1] if i + 1 < len(body) else None
        stride *= r.s
        if nxt is None or nxt.s > 1:
            info.append({"index": i, "stride": stride, "channels": r.c, "module": f"features.{i}"})
    return info


MAX_PARAMS = 2_000_000_000


def init_weights(root: nn.Module) -> None:
    """The one initialisation of every network built from rows (SpecNet, the supernet)."""
    for m in root.modules():
        if isinstance(m, nn.Conv2d):
            # fan-out per group (as EfficientNet does): plain fan_out shrinks depthwise
            # outputs by the channel count, so an untrained network would output ~0.
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, (2.0 / fan_out) ** 0.5)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


class SpecNet(nn.Module):
    """A network built from spec rows.

    ``features`` holds every row before the pool, so ``forward_features`` gives the final
    feature map; ``forward_head`` pools and classifies. With ``features_only`` the module
    returns the maps at the requested reduction levels (``out_indices`` into ``feature_info``).
    """

    def __init__(self, spec: Spec, *, num_classes: int | None = None, drop_rate: float | None = None,
                 drop_path_rate: float = 0.0, features_only: bool = False,
                 out_indices: Sequence[int] = (1, 2, 3, 4), input_size: int | None = None,
                 modules: Sequence[nn.Module] | None = None):
        """``modules``: the rows' modules already built (a supernet's path, one per row up to the
        classifier), used as they are: no new row modules, no initialisation. Without it the rows
        are built and initialised here."""
        super().__init__()
        input_size = input_size or spec.input_size
        stride = spec.total_stride
        if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < stride \
                or input_size % stride:
            raise SpecError(f"input_size must be a positive multiple of {stride} (the network's total "
                            f"stride), got {input_size!r}; try {max(stride, round(input_size / stride) * stride)}")
        if not 0 <= drop_path_rate < 1:
            raise SpecError(f"drop_path_rate must be in [0, 1), got {drop_path_rate!r}")
        from .sizes import count
        params = count(spec if num_classes is None else spec.with_classes(num_classes), input_size)[0]
        if params > MAX_PARAMS:  # counted from the rows, before a byte is allocated
            raise SpecError(f"spec {spec.name!r} has {params:,} parameters ({params * 4 / 2**30:,.1f} GiB as "
                            f"float32); more than {MAX_PARAMS:,} is refused as a likely typo in a channel count")
        self.input_size = input_size
        if num_classes is not None and num_classes != spec.num_classes:
            spec = spec.with_classes(num_classes)
        self.spec = spec
        opts = spec.options
        if modules is not None and (features_only or drop_path_rate):
            raise SpecError("prebuilt modules are used as they are: features_only and drop_path_rate need "
                            "modules built here")
        built = list(modules) if modules is not None else None
        n_built = sum(r.op in FEATURE_OPS or r.op == "conv_nbn" for r in spec.rows)
        if built is not None and len(built) != n_built:
            raise SpecError(f"spec {spec.name!r} has {n_built} rows before its classifier, got {len(built)} "
                            f"prebuilt modules")
        make = (lambda r, cin: make_row(r, cin, opts)) if built is None else (lambda r, cin: built.pop(0))
        layers, cin = [], spec.in_chans
        rows = iter(spec.rows)
        for r in rows:
            if r.op == "pool":
                break
            layers.append(make(r, cin))
            cin = r.c
        self.feature_info = feature_info(spec)
        self.features_only = features_only
        if features_only:
            levels = len(self.feature_info)
            bad = [i for i in out_indices if not 0 <= i < levels]
            if bad:
                raise SpecError(f"out_indices {bad} out of range: {spec.name} has {levels} "
                                f"reduction levels (strides {[f['stride'] for f in self.feature_info]})")
            self.out_indices = tuple(out_indices)
            self.feature_info = [self.feature_info[i] for i in self.out_indices]
            layers = layers[:max(f["index"] for f in self.feature_info) + 1]
        self.features = nn.Sequential(*layers)
        # stochastic depth grows linearly with depth over the residual blocks (as in timm)
        residual = [m for m in self.features if isinstance(m, InvertedResidual) and m.residual]
        for i, m in enumerate(residual):
            m.drop_path = drop_path_rate * (i + 1) / len(residual)
        if not features_only:
            self.global_pool = nn.AdaptiveAvgPool2d(1)
            head = []
            for r in rows:
                if r.op == "conv_nbn":
                    head.append(make(r, cin))
                    cin = r.c
            self.head_convs = nn.Sequential(*head)
            self.num_features = cin
            self.drop_rate = opts.dropout if drop_rate is None else drop_rate
            self.dropout = nn.Dropout(self.drop_rate)
            self.num_classes = spec.num_classes
            self.classifier = nn.Linear(cin, spec.num_classes)
        if modules is None:
            self._init_weights()

    def _init_weights(self):
        init_weights(self)

    def reset_classifier(self, num_classes: int):
        """New classifier (e.g. for fine-tuning); 0 removes it and the model returns pre-logits."""
        if num_classes > 0:
            self.spec = self.spec.with_classes(num_classes)
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor):
        # channels_last lets oneDNN run the early wide-map convs several times faster on CPU.
        x = x.contiguous(memory_format=torch.channels_last)
        if not self.features_only:
            return self.features(x)
        taps = {f["index"] for f in self.feature_info}
        outs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in taps:
                outs.append(x)
        return outs

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False):
        x = self.head_convs(self.global_pool(x)).flatten(1)
        if pre_logits:
            return x
        return self.classifier(self.dropout(x))

    def forward(self, x):
        x = self.forward_features(x)
        return x if self.features_only else self.forward_head(x)
