"""Training recipes as frozen values: everything that decides what a run learns, recorded in every
checkpoint and in the weight manifest, so a result can be traced to its recipe."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch
from torch import nn

from ..data.augment import Augment

OPTIMIZERS = ("sgd", "rmsprop")
SCHEDULES = ("cosine", "exponential", "onecycle", "constant")


@dataclass(frozen=True)
class Recipe:
    """Optimizer, schedule and regularisation of one run.

    ``lr`` is the peak rate for the whole (global) batch; ``warmup_epochs`` ramp to it linearly.
    ``exponential`` decays by ``decay_rate`` every ``decay_epochs`` (MobileNetV3's 0.01 / 3 at
    batch 4096); ``onecycle`` is cosine up over ``warmup_epochs`` then cosine down to zero.
    Weight decay never applies to BN parameters or biases.
    """

    epochs: int = 90
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-5
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    decay_rate: float = 0.97
    decay_epochs: float = 2.4
    label_smoothing: float = 0.1
    dropout: float = 0.2
    drop_path: float = 0.0
    ema_decay: float = 0.0  # 0 disables the EMA of weights
    grad_clip: float = 0.0  # 0 disables clipping
    augment: Augment = Augment()

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        checks = {"epochs": (self.epochs >= 1, ">= 1"), "batch_size": (self.batch_size >= 1, ">= 1"),
                  "lr": (self.lr > 0, "> 0"), "momentum": (0 <= self.momentum < 1, "in [0, 1)"),
                  "weight_decay": (self.weight_decay >= 0, ">= 0"),
                  "warmup_epochs": (0 <= self.warmup_epochs <= self.epochs, f"in [0, epochs={self.epochs}]"),
                  "decay_rate": (0 < self.decay_rate <= 1, "in (0, 1]"), "decay_epochs": (self.decay_epochs > 0, "> 0"),
                  "label_smoothing": (0 <= self.label_smoothing < 1, "in [0, 1)"),
                  "dropout": (0 <= self.dropout < 1, "in [0, 1)"), "drop_path": (0 <= self.drop_path < 1, "in [0, 1)"),
                  "ema_decay": (0 <= self.ema_decay < 1, "in [0, 1)"), "grad_clip": (self.grad_clip >= 0, ">= 0")}
        bad = [k for k, (ok, _) in checks.items() if not ok]
        if bad:
            raise ValueError("recipe: out of range: " + ", ".join(f"{k}={getattr(self, k)!r} (must be {checks[k][1]})"
                                                                for k in bad))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["augment"] = self.augment.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"recipe: unknown field(s) {', '.join(sorted(unknown))}")
        d = dict(d)
        if isinstance(d.get("augment"), dict):
            d["augment"] = Augment(**d["augment"])
        return cls(**d)

    def override(self, **kw) -> "Recipe":
        return replace(self, **{k: v for k, v in kw.items() if v is not None})

    def lr_at(self, step: int, steps_per_epoch: int) -> float:
        """The learning rate of optimizer step ``step`` (0-based), a pure function of the step so
        that resuming needs no scheduler state."""
        e = step / steps_per_epoch  # fractional epoch
        total, warm = self.epochs, self.warmup_epochs
        if self.schedule == "onecycle":
            if e < warm:
                return self.lr * (1 - math.cos(math.pi * e / warm)) / 2
            return self.lr * (1 + math.cos(math.pi * min(1.0, (e - warm) / max(total - warm, 1e-9)))) / 2
        if e < warm:
            return self.lr * (step + 1) / (warm * steps_per_epoch)
        if self.schedule == "cosine":
            return self.lr * (1 + math.cos(math.pi * min(1.0, (e - warm) / max(total - warm, 1e-9)))) / 2
        if self.schedule == "exponential":
            return self.lr * self.decay_rate ** math.floor((e - warm) / self.decay_epochs)
        return self.lr


# The recipes the project ships results for. CIFAR10 is sized for this 2-core machine;
# IMAGENET_MOGA is the paper's stand-alone recipe (MobileNetV3's, Section 6 of MOGA_FACTS).
RECIPES = {
    "cifar10": Recipe(epochs=40, batch_size=128, optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True,
                      weight_decay=5e-4, schedule="cosine", warmup_epochs=2, label_smoothing=0.1,
                      dropout=0.2, drop_path=0.0, ema_decay=0.0, augment=Augment(pad=4, flip=True)),
    "imagenet-moga": Recipe(epochs=350, batch_size=4096, optimizer="rmsprop", lr=0.1, momentum=0.9,
                            weight_decay=1e-5, schedule="exponential", warmup_epochs=5, decay_rate=0.97,
                            decay_epochs=2.4, label_smoothing=0.1, dropout=0.2, drop_path=0.0,
                            ema_decay=0.9999, augment=Augment(pad=0, flip=True)),
}


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay conv and linear weights only: BN scales/shifts and biases (1-D tensors) are exempt."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    groups = param_groups(model, recipe.weight_decay)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum,
                               nesterov=recipe.nesterov and recipe.momentum > 0)
    # TensorFlow-style RMSProp as MobileNetV3/EfficientNet train with it: decay 0.9, eps 1e-3.
    return torch.optim.RMSprop(groups, lr=recipe.lr, alpha=0.9, eps=1e-3, momentum=recipe.momentum)
