"""MoGA's pipeline regenerated: FairNAS supernet training -> weighted NSGA-II with supernet
accuracy -> specs. Every stage is resumable and records its wall time in ``run.json``."""
from __future__ import annotations

import json
import sys
import time
from contextlib import closing
from pathlib import Path

from .. import specs
from ..data.loader import subsample
from ..files import write_text_atomic
from ..train.loop import RunConfig, TrainError, fit
from ..train.recipes import Recipe
from ..train.run import prepare_out, save_weights, start_run, versions
from .fairness import FairStep
from .score import SUPERNET_FILE, SUPERNET_META, score_path
from .supernet import Supernet

# The paper's supernet recipe (ImageNet): SGD momentum 0.9, lr 0.05, one cosine cycle, 32 epochs.
SUPERNET_RECIPE = Recipe(epochs=32, batch_size=128, optimizer="sgd", lr=0.05, momentum=0.9, nesterov=False,
                         weight_decay=4e-5, schedule="cosine", warmup_epochs=0, label_smoothing=0.0,
                         dropout=0.0)


def train_supernet(*, cifar10=None, imagenet=None, out, recipe: Recipe = SUPERNET_RECIPE, val_size: int = 5000,
                   seed: int = 0, resume: bool = False, same_batch: bool = True, shared_grad: str = "mean",
                   micro_batches: int = 1,
                   checkpoint_minutes: float = 5.0, checkpoint_steps: int | None = None,
                   monitor_images: int = 500, workers: int = 2, progress=None, command: str | None = None) -> dict:
    """Train the FairNAS supernet on CIFAR-10 (its 32x32 form) or ImageNet with ``train.loop.fit``.

    Args:
        cifar10, imagenet: the data set (``train.data.load_data``); ``val_size`` images are held out
            of its training split (seeded, class-balanced, recorded) as the search's validation set.
        out: run folder: checkpoint, logs, curve, ``supernet.safetensors``, ``supernet.json``.
        recipe: the optimizer and schedule (default: the paper's supernet recipe).
        same_batch: the 12 fair paths of a step see one batch (True) or 12 consecutive batches.
        shared_grad: what the stem and head get from the 12 paths, ``mean`` or ``sum`` (``FairStep``).
        monitor_images: held-out images the per-epoch curve scores MoGA-C's path on (after BN
            recalibration on as many training images).
    """
    if val_size < 1:
        raise TrainError("the supernet needs a validation split held out of the training images: --val-size N")
    d, out, data = start_run(out, cifar10=cifar10, imagenet=imagenet, val_size=val_size, seed=seed,
                             workers=workers, progress=progress)
    net = Supernet(data.form, data.num_classes, drop_rate=recipe.dropout)
    loader = data.loader(recipe, seed=seed, rank=d.rank, world=d.world)
    step = FairStep(recipe.label_smoothing, same_batch=same_batch, micro_batches=micro_batches,
                    shared_grad=shared_grad)
    meta = {**data.describe(), "data": str(Path(data.source).resolve()),  # what scoring reloads, from anywhere
            "num_classes": data.num_classes, "seed": seed, "val_size": val_size,
            "same_batch": same_batch, "shared_grad": step.shared_grad, "epochs": recipe.epochs,
            "recipe": recipe.to_dict(), "command": command, "versions": versions(), "world_size": d.world}
    if d.main:
        write_text_atomic(out / SUPERNET_META, json.dumps(meta, indent=2))
    monitor = data.in_memory(subsample(data.eval, monitor_images, seed), progress=False)
    bn_set = data.in_memory(subsample(data.train, monitor_images, seed), progress=False)
    moga_c = specs.PUBLISHED_CHOICES["moga_c"]

    def evaluate(model):
        res = score_path(model, moga_c, data, bn_set, monitor, device=d.device)
        model.train()
        return res

    run = RunConfig(out, seed=seed, checkpoint_minutes=checkpoint_minutes, checkpoint_steps=checkpoint_steps,
                    progress=progress, meta={"title": f"FairNAS supernet on {data.form} (curve: MoGA-C path, BN "
                                                      "recalibrated)", "spec": "supernet", **meta})
    with closing(loader):
        state = fit(net, step, loader, recipe, run, evaluate=evaluate, resume=resume, dist=d)
    if not d.main:
        return {}
    info = save_weights(state["model"], out / SUPERNET_FILE, {"supernet": json.dumps(meta)})
    counts = step.counts
    result = {**meta, "weights": info, "wall_seconds": round(state["elapsed"], 1),
              "block_updates": {"min": int(counts.min()), "max": int(counts.max())},
              "final": state["history"][-1]}
    write_text_atomic(out / "result.json", json.dumps(result, indent=2))
    return result


def run_pipeline(*, cifar10=None, imagenet=None, table, out, recipe: Recipe, val_size: int, val_images: int | None,
                 bn_images: int, pop_size: int, generations: int, weights=(0.4, 0.4, 0.2), seed: int = 0,
                 k: int = 5, resume: bool = False, progress=None, command: str | None = None) -> dict:
    """Supernet (``out/supernet``) -> evolve (``out/search``) -> specs, each stage resumable;
    ``run.json`` records the settings and each stage's wall time."""
    from .evolve import evolve

    out = prepare_out(out)
    run_file = out / "run.json"
    state = json.loads(run_file.read_text()) if run_file.is_file() else {"stages": {}}
    if state["stages"] and not resume:
        raise TrainError(f"{out} already holds a pipeline run; pass --resume to continue it or choose another --out")
    state.update(command=command, settings={"val_size": val_size, "val_images": val_images, "bn_images": bn_images,
                                             "pop_size": pop_size, "generations": generations,
                                             "weights": list(weights), "seed": seed, "k": k,
                                             "recipe": recipe.to_dict(), "table": str(table)})

    def save():
        write_text_atomic(run_file, json.dumps(state, indent=2))

    def stage(name, fn):
        """``fn`` returns (complete, the stage's own checkpointed seconds or None): that count
        survives a kill -9 between checkpoints, which this process's clock would not."""
        rec = state["stages"].setdefault(name, {"complete": False, "seconds": 0.0})
        if rec["complete"]:
            print(f"stage {name}: already complete ({rec['seconds']:.0f} s)", file=sys.stderr)
            return
        t0 = time.monotonic()
        try:
            rec["complete"], seconds = fn()
            rec["seconds"] = round(rec["seconds"] + time.monotonic() - t0 if seconds is None else seconds, 1)
        except BaseException:
            rec["seconds"] = round(rec["seconds"] + time.monotonic() - t0, 1)
            raise
        finally:
            save()

    def supernet():
        r = train_supernet(cifar10=cifar10, imagenet=imagenet, out=sup, recipe=recipe, val_size=val_size, seed=seed,
                           resume=(sup / "checkpoint.pt").exists(), progress=progress, command=command)
        return True, r.get("wall_seconds")  # a torchrun worker's result is empty

    def search_stage():
        r = evolve(table=table, accuracy=f"supernet:{sup}", out=search, pop_size=pop_size, generations=generations,
                   weights=weights, seed=seed, resume=(search / "search.ckpt").exists(), k=k, progress=progress,
                   accuracy_kw={"val_images": val_images, "bn_images": bn_images})
        return r["complete"], r["seconds"]

    sup, search = out / "supernet", out / "search"
    stage("supernet", supernet)
    stage("evolve", search_stage)
    state["total_seconds"] = round(sum(s["seconds"] for s in state["stages"].values()), 1)
    save()
    return state
