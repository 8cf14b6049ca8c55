"""``moga-zoo train`` as a library call: spec + data set + recipe -> trained weights with logs."""
from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .. import specs
from ..builder import SpecNet
from ..data import datasets
from ..data.loader import InMemorySet, TrainLoader, eval_batches
from ..data.preprocess import CIFAR10_PREPROCESS
from ..files import atomic_path, sha256_file, write_text_atomic
from .distributed import init_from_env
from .loop import CrossEntropyStep, RunConfig, TrainError, evaluate_arrays, fit
from .recipes import Recipe


def resolve_spec(model: str | specs.Spec, form: str) -> specs.Spec:
    """A registered name, a spec file or a Spec, in the data set's form (``specs.FORMS``): a 224
    spec trained on CIFAR-10 becomes its 32x32 form; a spec already in that form stays."""
    from ..registry import resolve_model

    spec = model if isinstance(model, specs.Spec) else resolve_model(model).spec
    if form == "cifar10" and spec.input_size == 32:
        return spec.with_classes(10) if spec.num_classes != 10 else spec
    return specs.FORMS[form](spec)


def load_cifar10(path, *, val_size: int, seed: int, workers: int = 2, progress=None):
    """(train, eval set, eval description, val indices). With ``val_size`` 0 the eval set is the
    test split; otherwise a seeded, class-balanced split held out of the training images."""
    train = InMemorySet.from_dataset(datasets.cifar10(path, "train"), 32, workers=workers, progress=progress)
    if val_size:
        train, val, idx = train.split(val_size, seed)
        return train, val, f"{val_size} images held out of the training split (seed {seed})", idx
    test = InMemorySet.from_dataset(datasets.cifar10(path, "test"), 32, workers=workers, progress=progress)
    return train, test, "the test split", None


def prepare_out(out) -> Path:
    """A run folder that exists and is writable, checked before any work is done."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TrainError(f"--out {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()  # a unique name: every torchrun rank probes at once
    except OSError as e:
        raise TrainError(f"cannot write to --out {out}: {e.strerror}") from None
    return out


def save_weights(module: torch.nn.Module, path: Path, metadata: dict) -> dict:
    """The module's state dict as safetensors, written atomically; returns file name and sha256."""
    from safetensors.torch import save_file

    sd = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata={"format": "moga-zoo", **metadata})
    return {"file": path.name, "sha256": sha256_file(path)}


def versions() -> dict:
    return {"python": platform.python_version(), "torch": str(torch.__version__), "numpy": np.__version__,
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "threads": torch.get_num_threads()}


def train(model: str | specs.Spec, *, cifar10=None, out, recipe: Recipe, resume: bool = False,
          val_size: int = 0, seed: int = 0, checkpoint_minutes: float = 5.0,
          checkpoint_steps: int | None = None, micro_batches: int = 1,
          stop_after_steps: int | None = None, workers: int = 2, progress=None,
          command: str | None = None) -> dict:
    """Train ``model`` (a registered name, spec file or Spec) on CIFAR-10 and write
    ``model.safetensors`` (and ``model_ema.safetensors`` with EMA), ``result.json``, logs and curve.

    Args:
        model: registered name, spec .json or Spec; a 224 spec is trained in its CIFAR-10 form.
        cifar10: the data set (python/binary release, folders or zip).
        out: run folder (checkpoint, logs, weights).
        recipe: optimizer, schedule, regularisation, augmentation.
        resume: continue the checkpoint in ``out``.
        val_size: images held out of the training split for the per-epoch curve (0: test split).
        seed: data order, augmentation, initialisation and dropout seed.
        checkpoint_minutes: the most work a crash can lose.
        checkpoint_steps: also checkpoint every this many optimizer steps.
        micro_batches: split each batch into accumulated parts (1-process twin of N processes).
        stop_after_steps: stop early (checkpointed) after this many optimizer steps.
        command: the command line recorded as provenance.

    Returns:
        result.json's content: final metrics, wall time, weights files and their sha256.
    """
    if cifar10 is None:
        raise TrainError("give the training data: --cifar10 PATH (ImageNet training needs a GPU "
                         "machine and --imagenet PATH)")
    d = init_from_env()
    spec = resolve_spec(model, "cifar10")
    out = prepare_out(out)
    torch.manual_seed(seed)
    net = SpecNet(spec, drop_rate=recipe.dropout, drop_path_rate=recipe.drop_path)
    train_set, eval_set, eval_desc, _ = load_cifar10(cifar10, val_size=val_size, seed=seed, workers=workers,
                                                     progress=progress if d.main else False)
    loader = TrainLoader(train_set, recipe.batch_size, recipe.augment, CIFAR10_PREPROCESS,
                         seed=seed, rank=d.rank, world=d.world)
    meta = {"title": f"{spec.name} on CIFAR-10", "spec": spec.to_dict(), "data": str(cifar10),
            "train_images": len(train_set), "eval_set": eval_desc, "eval_images": len(eval_set),
            "preprocess": CIFAR10_PREPROCESS.to_dict(), "command": command, "versions": versions(),
            "world_size": d.world}
    if d.main:
        write_text_atomic(out / "spec.json", spec.to_json(indent=2))
        print(f"training {spec.name} ({spec.input_size}x{spec.input_size}, {spec.num_classes} classes) "
              f"on {len(train_set)} images, {recipe.epochs} epochs, batch {recipe.batch_size}, "
              f"{d.world} process(es); evaluating on {eval_desc}", file=sys.stderr)
    step = CrossEntropyStep(recipe.label_smoothing, micro_batches)
    run = RunConfig(out, seed=seed, checkpoint_minutes=checkpoint_minutes, checkpoint_steps=checkpoint_steps,
                    stop_after_steps=stop_after_steps,
                    progress=progress, meta=meta)
    evaluate = lambda m: evaluate_arrays(m, eval_batches(eval_set, CIFAR10_PREPROCESS), d.device)  # noqa: E731
    state = fit(net, step, loader, recipe, run, evaluate=evaluate, resume=resume, dist=d)
    if not d.main:
        return {}
    files = {key: save_weights(module, out / f"{key}.safetensors", {"spec": spec.to_json()})
             for key, module in (("model", state["model"]), ("model_ema", state["ema"])) if module is not None}
    last = state["history"][-1]
    result = {"spec": spec.name, "epochs": recipe.epochs, "recipe": recipe.to_dict(), "seed": seed,
              "eval_set": eval_desc, "final": {k: last.get(k) for k in ("val_top1", "val_top5", "ema_val_top1",
                                                                         "ema_val_top5", "train_loss")},
              "wall_seconds": round(state["elapsed"], 1), "files": files, "command": command,
              "date": time.strftime("%Y-%m-%d"), "versions": versions()}
    write_text_atomic(out / "result.json", json.dumps(result, indent=2))
    return result


def default_command() -> str:
    return " ".join(["moga-zoo"] + [a if " " not in a else repr(a) for a in sys.argv[1:]]) \
        if os.path.basename(sys.argv[0]) in ("moga-zoo", "__main__.py") else " ".join(sys.argv)
