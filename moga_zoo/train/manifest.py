"""The weights this project trained: ``weights/manifest.json`` lists each file with its sha256,
spec, recipe, exact command, epochs, wall time and the test accuracy ``moga-eval`` measured;
the registry turns every entry into a weight tag (source ``repo:weights/<file>``)."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from ..files import atomic_path, sha256_file, write_text_atomic
from ..weights import PROJECT_ROOT, WeightsError

MANIFEST = PROJECT_ROOT / "weights" / "manifest.json"
FORMAT = "moga-zoo-weights/1"


def read_manifest(path: Path = MANIFEST) -> list[dict]:
    if not path.is_file():
        return []
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise WeightsError(f"{path} is not valid JSON ({e}); restore it from git") from None
    if d.get("format") != FORMAT:
        raise WeightsError(f"{path} is not a moga-zoo weight manifest (format {FORMAT})")
    return d["weights"]


def ship(run_dir: str | Path, *, model: str, tag: str, cifar10, weights_dir: Path | None = None,
         manifest: Path | None = None, workers: int = 2) -> dict:
    """Copy a finished ``moga-zoo train`` run's weights into ``weights/``, measure them on the
    10,000 CIFAR-10 test images with ``moga-eval``'s code path, and add the manifest entry."""
    from ..data import datasets
    from ..data.preprocess import CIFAR10_PREPROCESS
    from ..evaluate import evaluate
    from ..registry import create_model
    from ..runners import make_runner

    run_dir = Path(run_dir)
    weights_dir = weights_dir or MANIFEST.parent
    manifest = manifest or weights_dir / "manifest.json"
    result_path = run_dir / "result.json"
    if not result_path.is_file():
        raise WeightsError(f"{run_dir} holds no finished run (result.json): finish it with --resume first")
    result = json.loads(result_path.read_text())
    log = json.loads((run_dir / "log.json").read_text())
    src = run_dir / result["files"]["model"]["file"]
    if sha256_file(src) != result["files"]["model"]["sha256"]:
        raise WeightsError(f"{src} does not match the sha256 its run recorded")
    name = f"{model}_{tag}.safetensors"
    dest = weights_dir / name
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    spec_file = run_dir / "spec.json"
    net = create_model(spec_file, weights=str(dest))  # moga-eval's loop, on the copied file
    res = evaluate(make_runner("torch", model=net), datasets.cifar10(cifar10, "test"), CIFAR10_PREPROCESS,
                   workers=workers, batch_size=250, progress=False)
    entries = [e for e in read_manifest(manifest) if not (e["model"] == model and e["tag"] == tag)]
    entry = {"model": model, "tag": tag, "file": name, "sha256": sha256_file(dest), "form": "cifar10",
             "spec": json.loads(spec_file.read_text()), "preprocess": log["meta"]["preprocess"],
             "labels": "cifar10", "recipe": result["recipe"], "seed": result["seed"],
             "command": result["command"], "epochs": result["epochs"], "wall_seconds": result["wall_seconds"],
             "test_top1": round(res.top1, 2), "test_top5": round(res.top5, 2), "test_images": res.n,
             "eval_command": f"moga-eval --model {model} --weights {tag} --cifar10 {cifar10}",
             "date": time.strftime("%Y-%m-%d"), "versions": result["versions"]}
    entries.append(entry)
    entries.sort(key=lambda e: (e["model"], e["tag"]))
    write_text_atomic(manifest, json.dumps({"format": FORMAT, "weights": entries}, indent=2))
    return entry
