"""A Hugging Face Hub folder for a network and its weights: ``model.safetensors``, ``config.json``
(spec, preprocessing, labels, metrics) and a model card, so ``create_model("hf-hub:OWNER/NAME")``
rebuilds exactly that network from the folder alone."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from .. import __version__
from ..files import write_text_atomic
from .run import save_weights

CARD = """---
library_name: moga-zoo
tags: [image-classification, moga, mobile, nas]
{datasets}---

# {title}

{spec_name}: a MoGA-family network ({params:,} parameters, {macs:,} MACs at {size}x{size}) written as
Table-2 rows (`config.json`, key `spec`), with weights `model.safetensors` (sha256 `{sha}`).

## Results

{results}

## Training

{training}

## Usage

```python
import moga_zoo
model = moga_zoo.create_model("hf-hub:{repo_id}")           # spec, preprocessing and labels from config.json
print(moga_zoo.predict(model, "image.jpg")[0]["top"][:3])
```

Preprocessing: resize {pre[resize]}, center crop {pre[crop]}, mean {pre[mean]}, std {pre[std]}.
Labels: {labels}.
"""


def hub_folder(model, out: str | Path, *, repo_id: str, metrics: dict | None = None,
               command: str | None = None, recipe: dict | None = None) -> Path:
    """Write the Hub folder for ``model`` (a SpecNet with ``pretrained_cfg``) into ``out``."""
    from ..sizes import count

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = model.pretrained_cfg
    info = save_weights(model, out / "model.safetensors", {"spec": model.spec.to_json()})
    config = {"moga_zoo": __version__, "model": model.spec.name.removesuffix("_cifar10"),
              "spec": model.spec.to_dict(), "num_classes": model.num_classes,
              "preprocess": cfg.preprocess.to_dict(), "labels": cfg.label_names(),
              "weights_sha256": info["sha256"], "metrics": metrics or {}, "training_command": command,
              "recipe": recipe}
    write_text_atomic(out / "config.json", json.dumps(config, indent=2))
    params, macs = count(model.spec)
    results = "\n".join(f"- {k}: {v}" for k, v in (metrics or {}).items()) or "- not measured"
    training = (f"Command: `{command}`" if command else "Not recorded.") + \
        (f"\n\nRecipe: `{json.dumps(recipe)}`" if recipe else "")
    names = cfg.label_names()
    labels = f"{len(names)} classes ({', '.join(names[:10])}{', ...' if len(names) > 10 else ''})" if names \
        else f"{model.num_classes} unnamed outputs"
    card = CARD.format(datasets="datasets: [cifar10]\n" if model.spec.input_size == 32 else "",
                       title=f"{model.spec.name} ({repo_id})", spec_name=model.spec.name, params=params,
                       macs=macs, size=model.spec.input_size, sha=info["sha256"], results=results,
                       training=training, repo_id=repo_id, pre=cfg.preprocess.to_dict(), labels=labels)
    write_text_atomic(out / "README.md", card)
    return out


def push(model, *, repo_id: str, local_dir: str | Path | None = None, dry_run: bool = False,
         metrics: dict | None = None, command: str | None = None, recipe: dict | None = None,
         private: bool = False) -> Path:
    """Write the Hub folder (``local_dir`` or a temporary one) and upload it unless ``dry_run``.

    Args:
        model: a SpecNet with weights (``create_model(name, weights=...)``).
        repo_id: OWNER/NAME on the Hub.
        local_dir: keep the folder here (required with ``dry_run``).
        metrics, command, recipe: what the model card and config.json report.
    """
    from ..weights import WeightsError

    if "/" not in repo_id or repo_id.count("/") != 1:
        raise WeightsError(f"--repo-id must be OWNER/NAME, got {repo_id!r}")
    if dry_run and local_dir is None:
        raise WeightsError("--dry-run writes the folder only: give --local-dir DIR to keep it")
    if getattr(model, "weights_info", None) is None:
        raise WeightsError("refusing to publish a randomly initialised network: pass --weights")
    folder = Path(local_dir) if local_dir else Path(tempfile.mkdtemp(prefix="moga-zoo-hub-"))
    hub_folder(model, folder, repo_id=repo_id, metrics=metrics, command=command, recipe=recipe)
    if not dry_run:
        try:
            from huggingface_hub import HfApi
        except ImportError:
            raise WeightsError("uploading needs huggingface_hub: pip install 'moga-zoo[hub]'") from None
        try:
            api = HfApi()
            api.create_repo(repo_id, exist_ok=True, private=private)
            api.upload_folder(folder_path=str(folder), repo_id=repo_id,
                              commit_message=f"moga-zoo {__version__}: {model.spec.name}")
        except Exception as e:
            raise WeightsError(f"upload to {repo_id} failed ({type(e).__name__}: {e}); the folder is in "
                               f"{folder} (upload it later with huggingface-cli upload)") from None
    return folder
