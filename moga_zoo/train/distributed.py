"""torchrun support: one process group, gradients all-reduced once per optimizer step.

DDP's ``no_sync`` + ``find_unused_parameters`` only synchronises what the *last* forward used
(pytorch issue 69031); a strict-fair supernet step runs 12 different paths before one update.
So ranks accumulate locally and one flat all-reduce of every parameter's gradient follows
(a parameter no path touched contributes zeros), which is correct for any step.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_from_env() -> Dist:
    """The process group torchrun describes in the environment (gloo on CPU, nccl on GPU);
    a plain single process when there is none."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device, backend = torch.device("cuda", local), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return Dist(rank, world, device)


def allreduce_gradients(model: torch.nn.Module, d: Dist) -> None:
    """Average every parameter's gradient over ranks with one flat all-reduce."""
    if d.world == 1:
        return
    params = [p for p in model.parameters() if p.requires_grad]
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= d.world
    offset = 0
    for p in params:
        n = p.numel()
        g = flat[offset:offset + n].view_as(p)
        if p.grad is None:
            p.grad = g.clone()
        else:
            p.grad.copy_(g)
        offset += n


def broadcast_buffers(model: torch.nn.Module, d: Dist) -> None:
    """BN running statistics follow rank 0, so every rank holds the same model (DDP's convention)."""
    if d.world == 1:
        return
    for b in model.buffers():
        dist.broadcast(b, 0)


def all_sum(values: list[float], d: Dist) -> list[float]:
    """Sum per-rank counters (loss, correct, seen) so logs describe the global batch."""
    if d.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def barrier(d: Dist) -> None:
    if d.world > 1:
        dist.barrier()
