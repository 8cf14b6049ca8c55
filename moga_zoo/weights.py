"""Weight sources (tag, file, hf-hub, URL), safe reading, layout adaptation and strict loading."""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import re
import socket
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .adapters import detect_layout, remap
from .data.preprocess import Preprocess
from .files import atomic_path, sha256_file


class WeightsError(RuntimeError):
    """Weights that cannot be found, fetched, read or fitted; the message says what to do."""


@dataclass(frozen=True)
class WeightTag:
    """A named weight set and what it needs beside the file (torchvision's ``Weights``).

    ``source`` is ``package:<module>/<path>``, ``repo:<path in this project>`` (the trained
    weights in ``weights/``), ``hf-hub:owner/repo[@rev]``, an http(s) URL, or None when the file
    cannot be fetched (``how_to_get`` then explains how to obtain it). ``form`` names the spec
    transform the weights were trained for (``specs.FORMS``: ``imagenet`` = the spec as written,
    ``cifar10`` = its 32x32 form); ``preprocess`` and ``labels`` override the model's defaults.
    """

    tag: str
    source: str | None
    sha256: str | None = None
    how_to_get: str = ""
    meta: dict = field(default_factory=dict)
    form: str = "imagenet"
    preprocess: Preprocess | None = None
    labels: str | tuple[str, ...] | None = "imagenet"


def cache_dir() -> Path:
    root = os.environ.get("MOGA_ZOO_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "moga_zoo"
    return Path(root)


def _check_sha(path: Path, expected: str | None, what: str):
    if expected and sha256_file(path) != expected.lower():
        raise WeightsError(f"{what}: sha256 mismatch (expected {expected}); the file is corrupt or "
                           f"not the published one")


# --- sources -----------------------------------------------------------------------------

def _from_package(source: str, tag: WeightTag) -> Path:
    module, _, rel = source[len("package:"):].partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        dist = module.replace("_", "-")
        raise WeightsError(f"weights '{tag.tag}' ship in the PyPI package '{dist}', which is not "
                           f"installed: pip install {dist}")
    path = Path(list(spec.submodule_search_locations)[0]) / rel
    if not path.is_file():
        raise WeightsError(f"weights '{tag.tag}': {path} is missing from the installed package {module}")
    return path


def download(url: str, sha256: str | None = None, progress: bool = True) -> Path:
    """Fetch ``url`` into the cache once. The file appears under its final name only when complete
    and verified; a ``#sha256=<hex>`` fragment (pip's convention) is honoured."""
    parsed = urllib.parse.urlparse(url)
    m = re.match(r"sha256=([0-9a-fA-F]{64})$", parsed.fragment)
    if parsed.fragment.startswith("sha256=") and not m:
        raise WeightsError(f"{url}: the #sha256= fragment must be 64 hexadecimal digits, got "
                           f"{len(parsed.fragment) - 7} characters; nothing was downloaded")
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise WeightsError(f"sha256 {sha256!r} is not 64 hexadecimal digits")
    sha256 = sha256 or (m[1] if m else None)
    name = Path(parsed.path).name or "weights"
    sub = sha256[:16] if sha256 else hashlib.sha256(url.split("#")[0].encode()).hexdigest()[:16]
    dest = cache_dir() / "downloads" / sub / name
    if dest.is_file():
        if not sha256 or sha256_file(dest) == sha256.lower():
            return dest
        dest.unlink()  # a corrupt cache entry is replaced, not trusted and not left blocking
    try:
        with atomic_path(dest) as tmp, open(tmp, "wb") as out, \
                urllib.request.urlopen(url.split("#")[0], timeout=60) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            from tqdm import tqdm
            with tqdm(total=total, unit="B", unit_scale=True, desc=name, disable=not progress) as bar:
                for chunk in iter(lambda: resp.read(1 << 16), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
            out.flush()
            got = os.path.getsize(tmp)
            if total is not None and got != total:
                raise WeightsError(f"download of {url} stopped at {got} of {total} bytes; run again")
            _check_sha(tmp, sha256, f"download of {url}")
    except OSError as e:
        raise WeightsError(f"cannot download {url}: {e}. Download it yourself and pass the "
                           f"file's path as weights") from e
    return dest


def hub_online() -> bool:
    """Whether the Hub answers, decided in one connection attempt: offline, huggingface_hub would
    spend over a minute retrying before reporting what the cache already tells."""
    import huggingface_hub.constants as c
    if c.HF_HUB_OFFLINE:
        return False
    return _reachable(urllib.parse.urlparse(c.ENDPOINT).hostname or "huggingface.co")


@functools.lru_cache(maxsize=4)
def _reachable(host: str) -> bool:
    try:
        socket.create_connection((host, 443), timeout=3).close()
        return True
    except OSError:
        return False


def _hub_file(ref: str, filename: str) -> Path:
    """One file of an ``hf-hub:`` repo, from the Hub or (offline) the local cache; raises
    FileNotFoundError when the repo has no such file."""
    repo, _, rev = ref.partition("@")
    try:
        import huggingface_hub
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError
    except ImportError:
        raise WeightsError("hf-hub weights need huggingface_hub: pip install 'moga-zoo[hub]'") from None
    online = hub_online()
    try:
        return Path(huggingface_hub.hf_hub_download(repo, filename, revision=rev or None,
                                                    local_files_only=not online))
    except LocalEntryNotFoundError:  # (a subclass of EntryNotFoundError: caught first)
        if online:
            raise FileNotFoundError(filename) from None
        raise WeightsError(f"hf-hub:{ref}: offline (the Hub is unreachable) and {filename} is not in the local "
                           f"cache; fetch it once online, or pass a local file") from None
    except EntryNotFoundError:
        raise FileNotFoundError(filename) from None
    except Exception as e:  # auth, bad repo id, network errors: nothing else to try
        raise WeightsError(f"hf-hub:{ref}: {type(e).__name__}: {e}") from None


def _from_hf_hub(ref: str) -> Path:
    for filename in ("model.safetensors", "pytorch_model.bin", "pytorch_model.pth"):
        try:
            return _hub_file(ref, filename)
        except FileNotFoundError:
            continue
    raise WeightsError(f"hf-hub:{ref}: the repo has none of model.safetensors, pytorch_model.bin, "
                       f"pytorch_model.pth")


PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _from_repo(source: str, tag: WeightTag) -> Path:
    path = PROJECT_ROOT / source[len("repo:"):]
    if not path.is_file():
        raise WeightsError(f"weights '{tag.tag}' live in this project's {source[len('repo:'):]}, which "
                           f"is not here ({path}): install moga-zoo from a clone (pip install -e .) or "
                           f"load it through torch.hub, or pass the file's path")
    return path


def read_hub_config(ref: str) -> dict | None:
    """The ``config.json`` of an ``hf-hub:`` repo written by ``moga-zoo push`` (spec,
    preprocessing, labels), or None when the repo has none (plain weights)."""
    from .specs import SpecError, spec_from_dict

    try:
        path = _hub_file(ref[len("hf-hub:"):], "config.json")
    except FileNotFoundError:
        return None
    except WeightsError as e:
        if "offline" in str(e):
            return None  # plain weights repos have no config; the weights lookup says what is missing
        raise
    try:
        cfg = json.loads(Path(path).read_text())
        spec = spec_from_dict(cfg["spec"])
        labels = cfg.get("labels")
        return {"spec": spec, "base": cfg.get("model"), "preprocess": Preprocess(**cfg["preprocess"]),
                "labels": tuple(labels) if isinstance(labels, list) else labels, "raw": cfg}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, SpecError) as e:
        raise WeightsError(f"{ref}: config.json is not a moga-zoo model config ({type(e).__name__}: {e}); "
                           f"write it with moga-zoo push") from None


def resolve(weights: str | os.PathLike, tags: dict[str, WeightTag], model: str) -> tuple[Path, WeightTag | None]:
    """Any weights argument -> a local file (plus the tag it came from, if any). Every tag's
    file, whatever its source, is checked against the tag's sha256 here."""
    w = os.fspath(weights)
    if w in tags:
        tag = tags[w]
        if tag.source is None:
            raise WeightsError(f"{model} weights '{w}' cannot be downloaded. {tag.how_to_get}")
        if tag.source.startswith("package:"):
            path = _from_package(tag.source, tag)
        elif tag.source.startswith("repo:"):
            path = _from_repo(tag.source, tag)
        elif tag.source.startswith("hf-hub:"):
            path = _from_hf_hub(tag.source[len("hf-hub:"):])
        else:
            return download(tag.source, tag.sha256), tag  # verified while downloading
        _check_sha(path, tag.sha256, f"{model} weights '{w}' ({path})")
        return path, tag
    if w.startswith("hf-hub:"):
        return _from_hf_hub(w[len("hf-hub:"):]), None
    if re.match(r"https?://", w):
        return download(w), None
    path = Path(w).expanduser()
    if path.is_file():
        return path, None
    known = ", ".join(sorted(tags)) or "none"
    raise WeightsError(f"weights {w!r} for {model}: not a registered tag (known: {known}), not an "
                       f"existing file, not hf-hub:owner/repo[@rev] and not an http(s) URL")


# --- reading -----------------------------------------------------------------------------

_WRAPPERS = ("model_state", "state_dict", "model", "model_ema", "ema")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from .safetensors, or torch files read with ``weights_only=True`` (no code runs)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(16)
    is_safetensors = path.suffix == ".safetensors" or (len(head) >= 9 and head[8:9] == b"{")
    try:
        if is_safetensors:
            from safetensors.torch import load_file
            obj = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"cannot read weights from {path}: {type(e).__name__}: {e}. Expected a "
                           f".safetensors file or a torch checkpoint of plain tensors") from e
    for key in _WRAPPERS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} holds no state dict (looked at the top level and under "
                           f"{', '.join(_WRAPPERS)})")
    bad = [k for k, v in obj.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise WeightsError(f"{path} holds NaN or infinite values in {len(bad)} tensor(s), e.g. {bad[0]}: the "
                           f"checkpoint comes from a diverged run; use an earlier one")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def fit_state_dict(model: torch.nn.Module, state_dict: dict) -> dict:
    """Remap a foreign layout onto ``model`` and check every key and shape.

    A classifier of another size is dropped with a warning (fine-tuning); anything else that does
    not fit raises with the missing, unexpected and mis-shaped keys listed.
    """
    layout = detect_layout(state_dict)
    sd = remap(state_dict, model.spec, layout)
    own = model.state_dict()
    if model.features_only:  # a backbone keeps what it has of a full checkpoint
        n = len(model.features)
        sd = {k: v for k, v in sd.items()
              if k.startswith("features.") and int(k.split(".")[1]) < n}
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shaped = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    head = {k for k in own if k.startswith("classifier.")}
    if shaped and set(shaped) <= head and not missing and not unexpected:
        warnings.warn(f"checkpoint classifier has {sd['classifier.weight'].shape[0]} classes, the "
                      f"model {model.num_classes}: classifier left at its initialisation", stacklevel=3)
        for k in shaped:
            sd[k] = own[k]
        shaped = []
    if missing or unexpected or shaped:
        def lst(keys):
            return ", ".join(keys[:12]) + (f" ... (+{len(keys) - 12} more)" if len(keys) > 12 else "")
        lines = [f"checkpoint (layout {layout}) does not fit {model.spec.name}:"]
        if missing:
            lines.append(f"  missing ({len(missing)}): {lst(missing)}")
        if unexpected:
            lines.append(f"  unexpected ({len(unexpected)}): {lst(unexpected)}")
        if shaped:
            lines.append(f"  mis-shaped ({len(shaped)}): " + lst(
                [f"{k} {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in shaped]))
        raise WeightsError("\n".join(lines))
    return sd


def _check_trained_spec(path: Path, model) -> None:
    """Files moga-zoo writes carry their spec; a file trained for another form (e.g. the 32x32
    CIFAR-10 form: same tensor shapes, different strides) must not load silently."""
    if path.suffix != ".safetensors":
        return
    from safetensors import safe_open

    from .specs import spec_from_dict
    try:
        with safe_open(str(path), "pt") as f:
            text = (f.metadata() or {}).get("spec")
        trained = spec_from_dict(json.loads(text)) if text else None
    except Exception:  # noqa: BLE001 - unreadable: read_state_dict reports it properly next
        return
    if trained is None:
        return
    mine = model.spec
    same = (trained.rows[:-1] == mine.rows[:-1] and trained.options == mine.options
            and trained.input_size == mine.input_size)
    if not same:
        raise WeightsError(f"{path} was trained for spec {trained.name} (input {trained.input_size}x"
                           f"{trained.input_size}), not {mine.name} (input {mine.input_size}x{mine.input_size}); "
                           f"its tensors may fit but the network would be wrong. Build that spec: save "
                           f"the file's spec (or the run's spec.json) and pass it as the model")


def load_weights(model: torch.nn.Module, weights, tags: dict[str, WeightTag]) -> dict:
    """Load into ``model``; returns provenance (source, sha256, layout, tag meta)."""
    path, tag = resolve(weights, tags, model.spec.name)
    _check_trained_spec(path, model)
    raw = read_state_dict(path)
    model.load_state_dict(fit_state_dict(model, raw))
    return {"weights": os.fspath(weights), "file": str(path), "sha256": sha256_file(path),
            "layout": detect_layout(raw), "meta": dict(tag.meta) if tag else {}}
