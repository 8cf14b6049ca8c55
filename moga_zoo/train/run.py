"""``moga-zoo train`` as a library call: spec + data set + recipe -> trained weights with logs."""
from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import torch

from .. import specs
from ..builder import SpecNet
from ..files import atomic_path, sha256_file, write_text_atomic
from .data import load_data
from .distributed import init_from_env
from .loop import CrossEntropyStep, RunConfig, TrainError, evaluate_arrays, fit
from .recipes import Recipe


def resolve_spec(model: str | specs.Spec, form: str, num_classes: int) -> specs.Spec:
    """A registered name, a spec file or a Spec, in the data set's form (``specs.FORMS``): a 224
    spec trained on CIFAR-10 becomes its 32x32 form; a spec already in that form stays."""
    from ..registry import resolve_model

    spec = model if isinstance(model, specs.Spec) else resolve_model(model).spec
    if not (form == "cifar10" and spec.input_size == 32):
        spec = specs.FORMS[form](spec)
    return spec.with_classes(num_classes) if spec.num_classes != num_classes else spec


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


def start_run(out, *, cifar10, imagenet, val_size: int, seed: int, workers: int, progress):
    """What every training command does first, in this order: join the process group (torchrun),
    check the run folder, load the data with its held-out split, seed torch. Returns
    ``(dist, out, data)``."""
    d = init_from_env()
    out = prepare_out(out)
    data = load_data(cifar10=cifar10, imagenet=imagenet, val_size=val_size, seed=seed, workers=workers,
                     progress=progress if d.main else False)
    torch.manual_seed(seed)
    return d, out, data


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


def train(model: str | specs.Spec, *, cifar10=None, imagenet=None, out, recipe: Recipe, resume: bool = False,
          val_size: int = 0, seed: int = 0, checkpoint_minutes: float = 5.0,
          checkpoint_steps: int | None = None, micro_batches: int = 1,
          stop_after_steps: int | None = None, workers: int = 2, progress=None,
          command: str | None = None) -> dict:
    """Train ``model`` (a registered name, spec file or Spec) on CIFAR-10 or ImageNet and write
    ``model.safetensors`` (and ``model_ema.safetensors`` with EMA), ``result.json``, logs and curve.

    Args:
        model: registered name, spec .json or Spec, trained in the data set's form (a 224 spec on
            CIFAR-10 becomes its 32x32 form) with the data set's class count.
        cifar10: CIFAR-10 (python/binary release, folders or zip), decoded into memory.
        imagenet: an ImageNet root with ``train/<synset>/`` (and ``val/``), streamed from the files.
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
    d, out, data = start_run(out, cifar10=cifar10, imagenet=imagenet, val_size=val_size, seed=seed,
                             workers=workers, progress=progress)
    net = SpecNet(resolve_spec(model, data.form, data.num_classes), drop_rate=recipe.dropout,
                  drop_path_rate=recipe.drop_path)
    spec = net.spec
    loader = data.loader(recipe, seed=seed, rank=d.rank, world=d.world)
    title = {"cifar10": "CIFAR-10", "imagenet": "ImageNet"}[data.form]
    meta = {"title": f"{spec.name} on {title}", "spec": spec.to_dict(), **data.describe(), "command": command,
            "versions": versions(), "world_size": d.world}
    if d.main:
        write_text_atomic(out / "spec.json", spec.to_json(indent=2))
        print(f"training {spec.name} ({spec.input_size}x{spec.input_size}, {spec.num_classes} classes) "
              f"on {len(data.train)} images, {recipe.epochs} epochs, batch {recipe.batch_size}, "
              f"{d.world} process(es); evaluating on {data.eval_desc}", file=sys.stderr)
    step = CrossEntropyStep(recipe.label_smoothing, micro_batches)
    run = RunConfig(out, seed=seed, checkpoint_minutes=checkpoint_minutes, checkpoint_steps=checkpoint_steps,
                    stop_after_steps=stop_after_steps,
                    progress=progress, meta=meta)
    evaluate = lambda m: evaluate_arrays(m, data.batches(data.eval), d.device)  # noqa: E731
    with closing(loader):
        state = fit(net, step, loader, recipe, run, evaluate=evaluate, resume=resume, dist=d)
    if not d.main:
        return {}
    files = {key: save_weights(module, out / f"{key}.safetensors", {"spec": spec.to_json()})
             for key, module in (("model", state["model"]), ("model_ema", state["ema"])) if module is not None}
    last = state["history"][-1]
    result = {"spec": spec.name, "epochs": recipe.epochs, "recipe": recipe.to_dict(), "seed": seed,
              "eval_set": data.eval_desc, "final": {k: last.get(k) for k in ("val_top1", "val_top5", "ema_val_top1",
                                                                         "ema_val_top5", "train_loss")},
              "wall_seconds": round(state["elapsed"], 1), "files": files, "command": command,
              "date": time.strftime("%Y-%m-%d"), "versions": versions()}
    write_text_atomic(out / "result.json", json.dumps(result, indent=2))
    return result


def default_command() -> str:
    return " ".join(["moga-zoo"] + [a if " " not in a else repr(a) for a in sys.argv[1:]]) \
        if os.path.basename(sys.argv[0]) in ("moga-zoo", "__main__.py") else " ".join(sys.argv)
