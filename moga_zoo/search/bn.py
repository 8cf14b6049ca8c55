"""BN recalibration for one-shot evaluation: a path's BN statistics, shared with 11 other blocks'
worth of traffic during supernet training, are reset and recomputed exactly (cumulative average,
``momentum=None``) on training images before its accuracy is measured (Once-for-All's
``set_running_statistics``, which uses 2,000 images)."""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def recalibrate(model: nn.Module, batches, device=torch.device("cpu")) -> int:
    """Reset every BatchNorm of ``model`` and set its running statistics to the exact average over
    ``batches`` (an iterable of ``Batch``); returns the number of images used. The model is left
    in eval mode with the BN momenta restored."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    model.train()
    n = 0
    try:
        for b in batches:
            model(b.x.to(device))
            n += len(b.y)
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
        model.eval()
    if n == 0:
        raise ValueError("BN recalibration needs at least one batch of training images")
    return n
