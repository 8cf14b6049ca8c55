import hashlib
import http.server
import json
import pickle
import threading
from functools import partial

import numpy as np
import pytest
import torch

import moga_zoo
from moga_zoo import weights as W
from moga_zoo.adapters import detect_layout
from moga_zoo.data import imagenet_classes


def official_state(shared, letter):
    keys = json.loads((shared / "reference" / "official_checkpoint_keys.json").read_text())[letter]
    g = torch.Generator().manual_seed(0)
    return {k: (torch.randn(shape, generator=g) if shape else torch.tensor(0)) for k, shape in keys["state_dict"]}


@pytest.mark.parametrize("letter", "ABC")
@pytest.mark.parametrize("prefix", ["", "module."])
def test_official_layout_maps_one_to_one(shared, letter, prefix, tmp_path):
    sd = official_state(shared, letter)
    path = tmp_path / "ckpt.pth.tar"
    torch.save({"model_state": {prefix + k: v for k, v in sd.items()}, "epoch": 3}, path)
    model = moga_zoo.create_model(f"moga_{letter.lower()}")
    own = model.state_dict()
    raw = W.read_state_dict(path)
    assert detect_layout(raw) == "official-moga"
    fitted = W.fit_state_dict(model, raw)
    assert len(fitted) == len(sd) == len(own)  # every key consumed, none left over
    assert all(tuple(fitted[k].shape) == tuple(own[k].shape) for k in own)
    moga_zoo.create_model(f"moga_{letter.lower()}", weights=str(path))  # end to end


@pytest.mark.parametrize("name", ["moga_a", "moga_b", "moga_c"])
def test_authors_network_and_ours_compute_the_same(name, tmp_path):
    from reference_moga import ReferenceMoGA
    torch.manual_seed(0)
    ref = ReferenceMoGA(name).eval()
    for m in ref.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    path = tmp_path / "ref.pth.tar"
    torch.save({"model_state": {"module." + k: v for k, v in ref.state_dict().items()}}, path)
    ours = moga_zoo.create_model(name, weights=str(path)).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-4, rtol=1e-4)


def test_lite_pytorch_layout_predicts_imagenet_sample(lite0, imagenet_sample):
    """MOGA_FACTS.md section 7: 89.0% top-1, 98.5% top-5 on the 200 sample images."""
    assert lite0.weights_info["layout"] == "efficientnet-lite-pytorch"
    synsets = [s for s, _ in imagenet_classes()]
    files = sorted(imagenet_sample.glob("*.JPEG"))
    assert len(files) == 200
    pre = lite0.pretrained_cfg.transforms()
    labels = torch.tensor([synsets.index(f.name.split("_")[0]) for f in files])
    x = torch.from_numpy(np.stack([pre(f) for f in files]))
    with torch.no_grad():
        top5 = torch.cat([lite0(b) for b in x.split(50)]).topk(5).indices
    top1 = (top5[:, 0] == labels).float().mean().item() * 100
    top5a = (top5 == labels[:, None]).any(1).float().mean().item() * 100
    assert abs(top1 - 89.0) <= 0.5 and abs(top5a - 98.5) <= 0.5, (top1, top5a)


def test_symmetric_padding_loses_accuracy(lite0, imagenet_sample):
    """The TF 'SAME' option matters: the same weights with symmetric padding lose top-1."""
    from moga_zoo import specs
    from moga_zoo.builder import SpecNet
    opts = specs.replace(specs.EFFICIENTNET_LITE0.options, padding="symmetric")
    sym = SpecNet(specs.replace(specs.EFFICIENTNET_LITE0, options=opts)).eval()
    sym.load_state_dict(lite0.state_dict())
    synsets = [s for s, _ in imagenet_classes()]
    files = sorted(imagenet_sample.glob("*.JPEG"))
    labels = torch.tensor([synsets.index(f.name.split("_")[0]) for f in files])
    x = torch.from_numpy(np.stack([lite0.pretrained_cfg.transforms()(f) for f in files]))
    with torch.no_grad():
        same = (lite0(x).argmax(1) == labels).float().mean().item()
        symm = (sym(x).argmax(1) == labels).float().mean().item()
    assert same - symm >= 0.03, (same, symm)


def test_mismatch_lists_missing_unexpected_misshaped(tmp_path):
    sd = moga_zoo.create_model("moga_a").state_dict()
    sd.pop("features.3.dw.bn.weight")
    sd["extra.weight"] = torch.zeros(1)
    sd["features.2.project.conv.weight"] = torch.zeros(25, 96, 1, 1)
    path = tmp_path / "bad.safetensors"
    from safetensors.torch import save_file
    save_file(sd, path)
    with pytest.raises(W.WeightsError) as e:
        moga_zoo.create_model("moga_a", weights=str(path))
    msg = str(e.value)
    assert "missing (1): features.3.dw.bn.weight" in msg
    assert "unexpected (1): extra.weight" in msg
    assert "mis-shaped (1): features.2.project.conv.weight (25, 96, 1, 1) vs model (24, 96, 1, 1)" in msg


def test_other_classifier_is_dropped_with_warning(tmp_path):
    src = moga_zoo.create_model("moga_b", num_classes=10)
    path = tmp_path / "ten.safetensors"
    from safetensors.torch import save_file
    save_file(src.state_dict(), path)
    with pytest.warns(UserWarning, match="classifier has 10 classes, the model 1000"):
        m = moga_zoo.create_model("moga_b", weights=str(path))
    assert torch.equal(m.features[5].dw.conv.weight, src.features[5].dw.conv.weight)
    same = moga_zoo.create_model("moga_b", weights=str(path), num_classes=10)
    assert torch.equal(same.classifier.weight, src.classifier.weight)


def test_safetensors_and_pth_round_trip(tmp_path):
    src = moga_zoo.create_model("mobilenetv3_large")
    from safetensors.torch import save_file
    save_file(src.state_dict(), tmp_path / "w.safetensors")
    torch.save(src.state_dict(), tmp_path / "w.pt")
    for f in ("w.safetensors", "w.pt"):
        m = moga_zoo.create_model("mobilenetv3_large", weights=str(tmp_path / f))
        assert torch.equal(m.classifier.weight, src.classifier.weight)
        assert m.weights_info["sha256"] == hashlib.sha256((tmp_path / f).read_bytes()).hexdigest()


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"model_state": Evil()}, f)
    with pytest.raises(W.WeightsError, match="cannot read weights"):
        moga_zoo.create_model("moga_a", weights=str(path))


def test_unavailable_and_unknown_weights_explain_themselves(tmp_path):
    with pytest.raises(W.WeightsError, match=r"released on request.*weights='/path/to/moga_a.pth.tar'"):
        moga_zoo.create_model("moga_a", weights="imagenet")
    # moga_a's tags: 'imagenet' (the authors', on request) and 'cifar10' (weights/manifest.json)
    with pytest.raises(W.WeightsError,
                       match=r"not a registered tag \(known: cifar10, imagenet\), not an existing file"):
        moga_zoo.create_model("moga_a", weights=str(tmp_path / "nope.pth"))
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(W.WeightsError, match="cannot read weights"):
        moga_zoo.create_model("moga_a", weights=str(tmp_path / "junk.safetensors"))


@pytest.fixture()
def http_dir(tmp_path, monkeypatch):
    root = tmp_path / "srv"
    root.mkdir()
    monkeypatch.setenv("MOGA_ZOO_CACHE", str(tmp_path / "cache"))
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_url_download_caches_and_verifies(http_dir, tmp_path):
    root, base = http_dir
    src = moga_zoo.create_model("moga_c")
    from safetensors.torch import save_file
    save_file(src.state_dict(), root / "c.safetensors")
    digest = hashlib.sha256((root / "c.safetensors").read_bytes()).hexdigest()
    m = moga_zoo.create_model("moga_c", weights=f"{base}/c.safetensors#sha256={digest}")
    assert torch.equal(m.classifier.bias, src.classifier.bias)
    cached = list((tmp_path / "cache").rglob("c.safetensors"))
    assert len(cached) == 1 and not list((tmp_path / "cache").rglob("*.part"))
    (root / "c.safetensors").unlink()  # served from the cache now
    moga_zoo.create_model("moga_c", weights=f"{base}/c.safetensors#sha256={digest}")
    cached[0].write_bytes(b"corrupted")  # a damaged cache entry is fetched again
    save_file(src.state_dict(), root / "c.safetensors")
    m = moga_zoo.create_model("moga_c", weights=f"{base}/c.safetensors#sha256={digest}")
    assert torch.equal(m.classifier.bias, src.classifier.bias)


def test_url_with_wrong_sha_leaves_nothing(http_dir, tmp_path):
    root, base = http_dir
    (root / "w.pt").write_bytes(b"not the file")
    with pytest.raises(W.WeightsError, match="sha256 mismatch"):
        W.download(f"{base}/w.pt", sha256="0" * 64, progress=False)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    with pytest.raises(W.WeightsError, match="cannot download"):
        W.download(f"{base}/missing.pt", progress=False)


def test_hf_hub_offline_from_cache(tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    src = moga_zoo.create_model("moga_a")
    from safetensors.torch import save_file
    commit = "a" * 40
    repo = tmp_path / "hub" / "models--someone--moga-a"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    save_file(src.state_dict(), repo / "snapshots" / commit / "model.safetensors")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    m = moga_zoo.create_model("moga_a", weights="hf-hub:someone/moga-a")
    assert torch.equal(m.classifier.weight, src.classifier.weight)
    with pytest.raises(W.WeightsError, match="hf-hub:someone/other"):
        moga_zoo.create_model("moga_a", weights="hf-hub:someone/other")


def test_pretrained_cfg_carries_preprocessing_and_labels():
    cfg = moga_zoo.get_pretrained_cfg("efficientnet_lite0")
    assert cfg.preprocess.resize == 256 and cfg.preprocess.crop == 224
    assert cfg.preprocess.mean == pytest.approx((127 / 255,) * 3)
    labels = moga_zoo.get_pretrained_cfg("moga_a").label_names()
    assert len(labels) == 1000 and labels[0] == "tench"
    assert moga_zoo.get_pretrained_cfg("moga_a").preprocess.std == (0.229, 0.224, 0.225)


def test_hf_hub_offline_and_not_cached_fails_fast(tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    import time
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(W, "_reachable", lambda host: False)  # as on this machine: no route to the Hub
    t0 = time.monotonic()
    with pytest.raises(W.WeightsError, match="offline .* not in the local cache"):
        moga_zoo.create_model("moga_a", weights="hf-hub:nobody/nothing")
    assert time.monotonic() - t0 < 10
