"""The FairNAS supernet over the MoGA skeleton: all 12 Table-1 choice blocks in each of the 14
searchable layers, every block built by ``builder.make_row`` from the rows ``specs.from_choices``
writes (no second block implementation), and ``subnet(choices)`` a ``SpecNet`` of those rows that
*holds* the supernet's modules, so export, evaluation and latency tables work on it unchanged.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .. import specs
from ..builder import SpecNet, init_weights, make_row
from ..data.preprocess import CIFAR10_PREPROCESS

N_LAYERS, N_CHOICES = len(specs.MOGA_SKELETON), specs.NUM_CHOICES


def skeleton_spec(choices: Sequence[int], form: str = "imagenet", num_classes: int | None = None) -> specs.Spec:
    """The spec of one path, in the data set's form (``specs.FORMS``)."""
    spec = specs.from_choices(list(int(c) for c in choices), name="moga_path")
    spec = specs.FORMS[form](spec)
    return spec.with_classes(num_classes) if num_classes and num_classes != spec.num_classes else spec


class Supernet(nn.Module):
    """Shared stem and head, ``blocks[layer][choice]`` in between.

    Args:
        form: ``imagenet`` (224 input) or ``cifar10`` (the 32x32 form training uses).
        num_classes: classifier outputs (default: the form's).
        drop_rate: dropout before the classifier.
    """

    def __init__(self, form: str = "imagenet", num_classes: int | None = None, drop_rate: float = 0.2):
        super().__init__()
        self.form = form
        base = skeleton_spec([0] * N_LAYERS, form, num_classes)
        self.num_classes = base.num_classes
        self.input_size = base.input_size
        # the fixed parts come from a SpecNet of any path: identical in every path
        ref = SpecNet(base, drop_rate=drop_rate)
        ir = [i for i, r in enumerate(base.rows) if r.op == "ir"]
        first, last = ir[0], ir[-1]
        self.stem = nn.Sequential(*list(ref.features)[:first])
        self.last_conv = nn.Sequential(*list(ref.features)[last + 1:])
        self.head_convs, self.dropout, self.classifier = ref.head_convs, ref.dropout, ref.classifier
        self.global_pool = ref.global_pool
        opts = base.options
        layers = []
        for layer in range(N_LAYERS):
            row_i = ir[layer]
            cin = base.rows[row_i - 1].c
            rows = [skeleton_spec([c] * N_LAYERS, form).rows[row_i] for c in range(N_CHOICES)]
            layers.append(nn.ModuleList([make_row(r, cin, opts) for r in rows]))
        self.blocks = nn.ModuleList(layers)
        init_weights(self)

    def _check(self, choices) -> list[int]:
        c = [int(v) for v in choices]
        if len(c) != N_LAYERS or not all(0 <= v < N_CHOICES for v in c):
            raise specs.SpecError(f"a path is {N_LAYERS} choices in 0..{N_CHOICES - 1}, got {list(choices)}")
        return c

    def forward(self, x: torch.Tensor, choices: Sequence[int]) -> torch.Tensor:
        """Logits of the single path ``choices``."""
        c = self._check(choices)
        x = self.stem(x.contiguous(memory_format=torch.channels_last))
        for layer, ch in enumerate(c):
            x = self.blocks[layer][ch](x)
        x = self.last_conv(x)
        x = self.head_convs(self.global_pool(x)).flatten(1)
        return self.classifier(self.dropout(x))

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every path uses (stem, last conv, head, classifier)."""
        in_blocks = {id(p) for p in self.blocks.parameters()}
        return [p for p in self.parameters() if id(p) not in in_blocks]

    def path_modules(self, choices: Sequence[int]) -> list[nn.Module]:
        c = self._check(choices)
        return list(self.stem) + [self.blocks[l][ch] for l, ch in enumerate(c)] + list(self.last_conv)

    def subnet(self, choices: Sequence[int], name: str | None = None) -> SpecNet:
        """A ``SpecNet`` of ``from_choices(choices)`` (in this supernet's form) whose modules are the
        supernet's own: same parameters and BN buffers, no copy. Its state dict is a stand-alone
        checkpoint of that architecture."""
        spec = skeleton_spec(choices, self.form, self.num_classes)
        if name:
            spec = specs.Spec(name, spec.rows, spec.options, spec.in_chans, spec.input_size)
        net = SpecNet(spec, drop_rate=self.dropout.p, modules=self.path_modules(choices) + list(self.head_convs))
        net.global_pool, net.dropout, net.classifier = self.global_pool, self.dropout, self.classifier
        from ..registry import PretrainedCfg
        cfg = PretrainedCfg(preprocess=CIFAR10_PREPROCESS, labels="cifar10") if self.form == "cifar10" \
            else PretrainedCfg()
        net.pretrained_cfg, net.weights_info = cfg.for_weights(None, self.num_classes), None
        return net
