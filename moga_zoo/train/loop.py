"""The one training loop. What a step computes is injected: cross-entropy on one batch for
``moga-zoo train``, 12 strict-fair single paths for the supernet. The loop owns everything else:
schedule, optimizer update, gradient all-reduce, EMA, evaluation, logs, curves, checkpoints.

Reproducibility is by construction: a step's batch and augmentation are functions of
(seed, epoch, step) (``data.loader``), the torch generator is re-seeded from the same numbers
before every forward pass, the learning rate is a function of the step, and the checkpoint holds
model, optimizer, EMA and the step's own state. So a run killed at any point and resumed from its
last checkpoint continues bit-identically (on one process, the same thread count).
"""
from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import torch
import torch.nn.functional as F

from ..data.loader import Batch
from ..files import atomic_path, remove_stale_parts, write_text_atomic
from ..stopping import StopFlag
from .distributed import Dist, all_sum, allreduce_gradients, barrier, broadcast_buffers
from .recipes import Recipe, make_optimizer

CHECKPOINT = "checkpoint.pt"
FORMAT = "moga-zoo-train/1"


class TrainError(RuntimeError):
    """A run that cannot start or resume as asked; the message says what to do."""


@dataclass
class StepContext:
    """What a step needs from the loop: where it is, how to seed, how to run backward."""

    epoch: int
    step: int  # optimizer step within the epoch
    global_step: int
    seed: int
    dist: Dist
    scaler: torch.amp.GradScaler | None = None

    def reseed(self, part: int) -> None:
        """Seed torch's generator for forward pass ``part`` of this step (dropout, drop path).
        Parts are numbered over all ranks, so part j draws the same on 1 or 2 processes."""
        torch.manual_seed((self.seed * 1_000_003 + self.global_step) * 4096 + part)

    def autocast(self):
        if self.dist.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()


@dataclass
class StepStats:
    """Sums over the images a step saw: loss x images, correct top-1, images."""

    loss: float = 0.0
    correct: float = 0.0
    seen: float = 0.0

    def __iadd__(self, o: "StepStats"):
        self.loss += o.loss
        self.correct += o.correct
        self.seen += o.seen
        return self


class Step(Protocol):
    batches_per_step: int

    def __call__(self, model: torch.nn.Module, batches: list[Batch], ctx: StepContext) -> StepStats: ...


def micro_chunks(batch: Batch, n: int) -> list[Batch]:
    """``n`` equal contiguous parts of a batch (gradient accumulation with the same BN batches
    as ``n`` processes would see)."""
    if len(batch.y) % n:
        raise TrainError(f"a batch of {len(batch.y)} does not split into {n} equal micro-batches")
    return [Batch(x, y) for x, y in zip(batch.x.chunk(n), batch.y.chunk(n))]


class CrossEntropyStep:
    """``moga-zoo train``'s step: label-smoothed cross-entropy on one batch, optionally in
    ``micro_batches`` accumulated parts."""

    batches_per_step = 1

    def __init__(self, label_smoothing: float = 0.0, micro_batches: int = 1):
        self.label_smoothing, self.micro_batches = label_smoothing, micro_batches

    def __call__(self, model, batches, ctx):
        stats = StepStats()
        parts = micro_chunks(batches[0], self.micro_batches)
        for j, b in enumerate(parts):
            ctx.reseed(ctx.dist.rank * len(parts) + j)
            x, y = b.x.to(ctx.dist.device, non_blocking=True), b.y.to(ctx.dist.device, non_blocking=True)
            with ctx.autocast():
                logits = model(x)
                loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
            ctx.backward(loss / len(parts))
            stats += StepStats(float(loss.detach()) * len(y), float((logits.argmax(1) == y).sum()), len(y))
        return stats

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class ModelEma:
    """Exponential moving average of every parameter and buffer (timm's ModelEmaV2 convention),
    with the decay warmed up as min(decay, (1 + n) / (10 + n)) so early averages are not frozen
    at the initialisation."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.updates = decay, 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module):
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for e, m in zip(self.module.state_dict().values(), model.state_dict().values()):
            if e.dtype.is_floating_point:
                e.mul_(d).add_(m.detach(), alpha=1 - d)
            else:
                e.copy_(m)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict):
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])


@dataclass
class RunConfig:
    """Where and how a run keeps itself: output folder, seed, checkpoint cadence, stop points."""

    out: Path
    seed: int = 0
    checkpoint_minutes: float = 5.0
    checkpoint_steps: int | None = None  # also checkpoint every N optimizer steps (tests)
    stop_after_steps: int | None = None  # stop (checkpointed) after N optimizer steps in all
    progress: bool | None = None
    meta: dict = field(default_factory=dict)  # provenance written into logs and checkpoints


LOG_FIELDS = ("epoch", "step", "lr", "train_loss", "train_top1", "val_top1", "val_top5", "val_loss",
              "ema_val_top1", "ema_val_top5", "epoch_seconds", "images_per_s", "elapsed_seconds")


def _save_checkpoint(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def load_checkpoint(path: Path) -> dict:
    try:
        # TorchVersion is a str subclass that early checkpoints recorded in their provenance
        with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise TrainError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}. It is not a "
                         f"moga-zoo training checkpoint, or it is damaged; start a new --out") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise TrainError(f"{path} is not a moga-zoo training checkpoint (format {FORMAT})")
    return state


def write_logs(out: Path, history: list[dict], meta: dict) -> None:
    """log.csv (one row per epoch), log.json (rows + run provenance) and curve.png."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, LOG_FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(history)
    write_text_atomic(out / "log.csv", buf.getvalue())
    write_text_atomic(out / "log.json", json.dumps({"meta": meta, "epochs": history}, indent=2))
    if history:
        plot_curve(out / "curve.png", history, meta.get("title", out.name))


def plot_curve(path: Path, history: list[dict], title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(ep, [h["train_loss"] for h in history], label="train loss")
    if any(h.get("val_loss") is not None for h in history):
        a1.plot(ep, [h.get("val_loss") for h in history], label="val loss")
    a1.set_xlabel("epoch")
    a1.legend()
    a2.plot(ep, [h["train_top1"] for h in history], label="train top-1 (augmented)")
    for key, label in (("val_top1", "val top-1"), ("ema_val_top1", "EMA val top-1")):
        if any(h.get(key) is not None for h in history):
            a2.plot(ep, [h.get(key) for h in history], label=label)
    a2.set_xlabel("epoch")
    a2.set_ylabel("%")
    a2.legend()
    a2.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


class Interrupted(KeyboardInterrupt):
    """The run stopped early with its state checkpointed; ``resume`` continues it."""


def fit(model: torch.nn.Module, step: Step, loader, recipe: Recipe, run: RunConfig, *,
        evaluate: Callable[[torch.nn.Module], dict] | None = None, resume: bool = False,
        dist: Dist = Dist()) -> dict:
    """Train ``model`` for ``recipe.epochs`` epochs of ``loader`` with ``step``.

    Args:
        model: the network (moved to ``dist.device`` here).
        step: computes forward and backward for one optimizer step (``Step`` protocol); may carry
            state (``state_dict``/``load_state_dict``) that is checkpointed with the run.
        loader: ``batch(epoch, i)`` and ``len()`` (``data.loader.TrainLoader``).
        recipe: optimizer, schedule, EMA (``recipes.Recipe``).
        run: output folder, seed, checkpoint cadence, provenance.
        evaluate: model -> {"top1", "top5", "loss"} on held-out data, run after every epoch.
        resume: continue from ``run.out/checkpoint.pt`` (which must match recipe, seed and meta).
        dist: the process group (``distributed.init_from_env``).

    Returns:
        the final state: {"history", "elapsed", "model", "ema"} (modules trained in place).
    """
    from tqdm import tqdm

    out = Path(run.out)
    ckpt_path = out / CHECKPOINT
    model.to(dist.device)
    optimizer = make_optimizer(model, recipe)
    ema = ModelEma(model, recipe.ema_decay) if recipe.ema_decay else None
    scaler = torch.amp.GradScaler("cuda") if dist.device.type == "cuda" else None
    per_epoch = len(loader) // step.batches_per_step
    if per_epoch < 1:
        raise TrainError(f"an epoch has {len(loader)} batches, fewer than the {step.batches_per_step} "
                         f"one step needs: use a smaller batch size or more data")
    identity = {"recipe": recipe.to_dict(), "seed": run.seed, "world": dist.world,
                "spec": run.meta.get("spec")}
    epoch, first, global_step, history, elapsed = 0, 0, 0, [], 0.0
    acc = StepStats()
    if ckpt_path.exists() and not resume:
        raise TrainError(f"{out} already holds a run ({CHECKPOINT}); pass --resume to continue it or "
                         f"choose another --out")
    if resume:
        if not ckpt_path.exists():
            raise TrainError(f"nothing to resume: {ckpt_path} does not exist")
        state = load_checkpoint(ckpt_path)
        diff = [k for k in identity if state["identity"].get(k) != identity[k]]
        if diff:
            raise TrainError(f"{ckpt_path} was made with another {', '.join(diff)}; resume with the "
                             f"options it was started with (see {out / 'log.json'}) or use a new --out")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if hasattr(step, "load_state_dict"):
            step.load_state_dict(state["step_state"])
        epoch, first, global_step = state["epoch"], state["next_step"], state["global_step"]
        acc = StepStats(*state["epoch_acc"])
        history, elapsed = list(state["history"]), float(state["elapsed"])
        if dist.main:
            remove_stale_parts(out)
    elif dist.main:
        out.mkdir(parents=True, exist_ok=True)

    def checkpoint():
        nonlocal elapsed
        elapsed = elapsed_before + time.monotonic() - t_start
        if not dist.main:
            return
        _save_checkpoint(ckpt_path, {
            "format": FORMAT, "identity": identity, "meta": run.meta,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "step_state": step.state_dict() if hasattr(step, "state_dict") else {},
            "epoch": epoch, "next_step": first, "global_step": global_step,
            "epoch_acc": [acc.loss, acc.correct, acc.seen], "history": history, "elapsed": elapsed})

    t_start, elapsed_before = time.monotonic(), elapsed
    t_last_ckpt = t_start
    steps_run = 0
    with StopFlag("step (checkpoint follows)") as stop:
        while epoch < recipe.epochs:
            model.train()
            t_epoch = time.monotonic()
            seen_here = 0
            bar = tqdm(total=per_epoch, initial=first, desc=f"epoch {epoch + 1}/{recipe.epochs}",
                       unit="step", file=sys.stderr, leave=False, disable=not dist.main or run.progress is False,
                       mininterval=0.1 if sys.stderr.isatty() else 60)  # a log file gets a line a minute
            for i in range(first, per_epoch):
                lr = recipe.lr_at(global_step, per_epoch)
                for g in optimizer.param_groups:
                    g["lr"] = lr
                batches = [loader.batch(epoch, i * step.batches_per_step + j)
                           for j in range(step.batches_per_step)]
                ctx = StepContext(epoch, i, global_step, run.seed, dist, scaler)
                optimizer.zero_grad(set_to_none=True)
                stats = step(model, batches, ctx)
                if not math.isfinite(stats.loss):
                    raise TrainError(f"loss became {stats.loss} at epoch {epoch + 1} step {i}: lower the "
                                     f"learning rate (now {lr:.4g}) or enable --grad-clip; the last good "
                                     f"state is in {ckpt_path}")
                if scaler is not None:
                    scaler.unscale_(optimizer)
                allreduce_gradients(model, dist)
                if recipe.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                broadcast_buffers(model, dist)
                if ema is not None:
                    ema.update(model)
                acc += StepStats(*all_sum([stats.loss, stats.correct, stats.seen], dist))
                global_step += 1
                first = i + 1
                steps_run += 1
                seen_here += stats.seen * dist.world
                bar.update(1)
                bar.set_postfix(loss=f"{acc.loss / max(acc.seen, 1):.3f}",
                                top1=f"{100 * acc.correct / max(acc.seen, 1):.1f}", lr=f"{lr:.3g}", refresh=False)
                due = (time.monotonic() - t_last_ckpt > 60 * run.checkpoint_minutes
                       or (run.checkpoint_steps and global_step % run.checkpoint_steps == 0))
                halt = stop.set or (run.stop_after_steps is not None and steps_run >= run.stop_after_steps)
                if (due or halt) and first < per_epoch:
                    checkpoint()
                    t_last_ckpt = time.monotonic()
                if halt and first < per_epoch:
                    bar.close()
                    barrier(dist)
                    raise Interrupted(f"stopped at epoch {epoch + 1}, step {first} of {per_epoch}; "
                                      f"checkpoint {ckpt_path}")
            bar.close()
            row = {"epoch": epoch + 1, "step": global_step, "lr": round(lr, 6),
                   "train_loss": round(acc.loss / max(acc.seen, 1), 5),
                   "train_top1": round(100 * acc.correct / max(acc.seen, 1), 3)}
            if evaluate is not None:
                m = evaluate(model)
                row.update(val_top1=m["top1"], val_top5=m["top5"], val_loss=m.get("loss"))
                if ema is not None:
                    e = evaluate(ema.module)
                    row.update(ema_val_top1=e["top1"], ema_val_top5=e["top5"])
            elapsed = elapsed_before + time.monotonic() - t_start
            row.update(epoch_seconds=round(time.monotonic() - t_epoch, 1),
                       images_per_s=round(seen_here / max(time.monotonic() - t_epoch, 1e-9), 1),
                       elapsed_seconds=round(elapsed, 1))
            history.append(row)
            epoch, first, acc = epoch + 1, 0, StepStats()
            checkpoint()
            t_last_ckpt = time.monotonic()
            if dist.main:
                write_logs(out, history, run.meta)
                msg = f"epoch {row['epoch']}/{recipe.epochs}: train loss {row['train_loss']:.3f}"
                if "val_top1" in row:
                    msg += f", val top-1 {row['val_top1']:.2f}%"
                print(msg + f" ({row['epoch_seconds']:.0f} s)", file=sys.stderr)
            halt = stop.set or (run.stop_after_steps is not None and steps_run >= run.stop_after_steps)
            if halt and epoch < recipe.epochs:
                barrier(dist)
                raise Interrupted(f"stopped after epoch {epoch}; checkpoint {ckpt_path}")
    return {"history": history, "elapsed": elapsed, "model": model,
            "ema": ema.module if ema is not None else None}


@torch.no_grad()
def evaluate_arrays(model: torch.nn.Module, batches, device=torch.device("cpu")) -> dict:
    """Top-1, top-5 (percent) and mean cross-entropy of ``model`` in eval mode over batches."""
    was = model.training
    model.eval()
    n = c1 = c5 = 0
    loss = 0.0
    for b in batches:
        x, y = b.x.to(device), b.y.to(device)
        logits = model(x).float()
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
        top = logits.topk(min(5, logits.shape[1]), 1).indices
        c1 += int((top[:, 0] == y).sum())
        c5 += int((top == y[:, None]).any(1).sum())
        n += len(y)
    model.train(was)
    if n == 0:
        raise TrainError("evaluation set is empty")
    return {"top1": round(100 * c1 / n, 3), "top5": round(100 * c5 / n, 3), "loss": round(loss / n, 5), "n": n}
