"""FairNAS strict fairness: one optimizer step trains 12 single paths such that every choice block
of every layer is used exactly once (path j takes element j of an independent random permutation
of the 12 choices per layer); gradients accumulate over the paths, then one update follows."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..train.loop import StepContext, StepStats, TrainError, micro_chunks
from .supernet import N_CHOICES, N_LAYERS


def fair_paths(rng: np.random.Generator, n_layers: int = N_LAYERS, n_choices: int = N_CHOICES) -> np.ndarray:
    """(n_choices x n_layers): row j is path j; every column is a permutation of the choices."""
    return np.stack([rng.permutation(n_choices) for _ in range(n_layers)], axis=1)


class FairStep:
    """The supernet's step for ``train.loop.fit``.

    ``same_batch`` True: the 12 paths see the same batch; False: 12 consecutive batches (one per
    path, so an epoch has 12x fewer optimizer steps). Each choice block receives exactly the
    gradient of the one path that used it (a stand-alone step's). ``shared_grad`` says what the
    stem and head, used by all 12 paths, receive: ``mean`` (default) the average over the paths, as
    one stand-alone step would; ``sum`` the paper's accumulation taken literally, which multiplies
    their step by 12 and, on CIFAR-10, kept the supernet's training loss above chance where the
    mean's fell (``benchmarks/bench_fair_grad.py``, BENCHMARKS.md section 9).
    ``counts[layer, choice]`` counts how often each block was trained (checkpointed with the run).
    """

    def __init__(self, label_smoothing: float = 0.0, same_batch: bool = True, micro_batches: int = 1,
                 shared_grad: str = "mean"):
        if shared_grad not in ("mean", "sum"):
            raise ValueError(f"shared_grad is 'mean' or 'sum', got {shared_grad!r}")
        self.label_smoothing, self.same_batch, self.micro_batches = label_smoothing, same_batch, micro_batches
        self.shared_grad = shared_grad
        self.batches_per_step = 1 if same_batch else N_CHOICES
        self.counts = np.zeros((N_LAYERS, N_CHOICES), np.int64)

    def paths(self, ctx: StepContext) -> np.ndarray:
        """The step's paths: a function of (seed, step), identical on every rank."""
        return fair_paths(np.random.default_rng([ctx.seed, ctx.global_step, 0xFA12]))

    def __call__(self, model, batches, ctx: StepContext) -> StepStats:
        stats = StepStats()
        paths = self.paths(ctx)
        for j, path in enumerate(paths):
            parts = micro_chunks(batches[0 if self.same_batch else j], self.micro_batches)
            for m, b in enumerate(parts):
                ctx.reseed((j * ctx.dist.world + ctx.dist.rank) * len(parts) + m)
                x, y = b.x.to(ctx.dist.device), b.y.to(ctx.dist.device)
                with ctx.autocast():
                    logits = model(x, path)
                    loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
                ctx.backward(loss / len(parts))
                stats += StepStats(float(loss.detach()) * len(y), float((logits.argmax(1) == y).sum()), len(y))
            self.counts[np.arange(N_LAYERS), path] += 1
        if self.shared_grad == "mean":
            for p in model.shared_parameters():
                if p.grad is not None:
                    p.grad.div_(len(paths))
        return stats

    def state_dict(self) -> dict:
        return {"counts": torch.from_numpy(self.counts.copy()), "shared_grad": self.shared_grad}

    def load_state_dict(self, state: dict) -> None:
        if state.get("shared_grad", "sum") != self.shared_grad:  # runs before the option summed
            raise TrainError(f"the checkpoint's supernet was trained with shared_grad="
                             f"{state.get('shared_grad', 'sum')}; resume it with the same setting or start anew")
        self.counts = state["counts"].numpy().astype(np.int64)
