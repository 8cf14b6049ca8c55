"""Per-weight configs: spec forms, labels and preprocessing follow the weights; the manifest of
weights trained here; Hub folders that rebuild their network; every model trains (forward+backward)."""
import json

import pytest
import torch

import moga_zoo
from moga_zoo import registry, specs
from moga_zoo.data.preprocess import CIFAR10_PREPROCESS
from moga_zoo.weights import WeightsError, WeightTag

NAMES = moga_zoo.list_models()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("form", ["imagenet", "cifar10"])
def test_every_model_trains_forward_and_backward(name, form):
    spec = specs.FORMS[form](registry.get_entry(name).spec)
    m = moga_zoo.SpecNet(spec, drop_path_rate=0.1).train()
    x = torch.randn(2, 3, spec.input_size, spec.input_size)
    out = m(x)
    assert out.shape == (2, spec.num_classes) and torch.isfinite(out).all()
    out.logsumexp(1).mean().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing


def test_a_spec_files_class_count_wins(tmp_path):
    p = tmp_path / "mine.json"
    p.write_text(json.dumps({"choices": [2] * 14, "num_classes": 10}))
    assert moga_zoo.create_model(p).num_classes == 10
    assert moga_zoo.create_model(p, num_classes=7).num_classes == 7
    rows = specs.for_cifar10(specs.MOGA_C)
    q = tmp_path / "rows.json"
    q.write_text(rows.to_json())
    m = moga_zoo.create_model(q)
    assert (m.num_classes, m.input_size) == (10, 32) and m.pretrained_cfg.label_names() is None


def test_cifar10_form_is_explicit_in_the_spec_and_info(tmp_path, capsys):
    from moga_zoo.cli.main import main
    c = specs.for_cifar10(specs.MOGA_C)
    (tmp_path / "c.json").write_text(c.to_json())
    assert main(["info", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("moga_c_cifar10  (input 32x32, 10 classes)")
    stem = out.splitlines()[3].split()
    assert stem[1:4] == ["32^2x3", "conv2d", "3x3"] and stem[-3] == "1"  # stride 1 at 32x32
    assert c.rows[0].s == 1 and c.input_size == 32 and c.num_classes == 10
    assert specs.to_choices(c) == list(specs.PUBLISHED_CHOICES["moga_c"])
    assert c.rows[1:-1] == specs.MOGA_C.rows[1:-1]
    with pytest.raises(specs.SpecError, match="already a 32x32 form"):
        specs.for_cifar10(c)


def test_a_tag_decides_form_preprocessing_and_labels(tmp_path, monkeypatch):
    net = moga_zoo.SpecNet(specs.for_cifar10(specs.MOGA_C))
    from safetensors.torch import save_file
    f = tmp_path / "c.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(f),
              metadata={"spec": net.spec.to_json()})
    from moga_zoo.files import sha256_file
    tag = WeightTag("cifar10", str(f), sha256_file(f), form="cifar10", preprocess=CIFAR10_PREPROCESS,
                    labels="cifar10")
    entry = registry.get_entry("moga_c")
    monkeypatch.setitem(registry._REGISTRY, "moga_c",
                        registry.replace(entry, cfg=registry.replace(entry.cfg, weights={**entry.cfg.weights,
                                                                                        "cifar10": tag})))
    monkeypatch.setattr("moga_zoo.weights.resolve", lambda w, tags, model: (f, tags.get(w)))
    m = moga_zoo.create_model("moga_c", weights="cifar10")
    assert (m.num_classes, m.input_size, m.spec.rows[0].s) == (10, 32, 1)
    assert m.pretrained_cfg.label_names()[:3] == ["airplane", "automobile", "bird"]
    assert m.pretrained_cfg.preprocess == CIFAR10_PREPROCESS and m.pretrained_cfg.tag == "cifar10"
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(m.eval()(x), net.eval()(x))
    # the same file into the 224 form is refused, not loaded silently (same tensor shapes)
    with pytest.raises(WeightsError, match="trained for spec moga_c_cifar10"):
        moga_zoo.create_model("moga_c", weights=str(f))


def _hf_cache(tmp_path, monkeypatch, repo: str, folder):
    import shutil
    commit = "b" * 40
    snap = tmp_path / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / commit
    shutil.copytree(folder, snap)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text(commit)
    import huggingface_hub.constants as c
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)


def test_push_dry_run_folder_rebuilds_its_network_from_the_hub_cache(tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    from moga_zoo.cli.main import main
    from safetensors.torch import save_file
    net = moga_zoo.SpecNet(specs.for_cifar10(specs.MOGA_B))
    (tmp_path / "spec.json").write_text(net.spec.to_json())
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "w.safetensors"),
              metadata={"spec": net.spec.to_json()})
    folder = tmp_path / "folder"
    assert main(["push", str(tmp_path / "spec.json"), "--weights", str(tmp_path / "w.safetensors"),
                 "--repo-id", "someone/moga-b-cifar10", "--local-dir", str(folder), "--dry-run",
                 "--data", "cifar10"]) == 0
    assert {p.name for p in folder.iterdir()} == {"model.safetensors", "config.json", "README.md"}
    card = (folder / "README.md").read_text()
    assert "hf-hub:someone/moga-b-cifar10" in card and "airplane" in card
    _hf_cache(tmp_path, monkeypatch, "someone/moga-b-cifar10", folder)
    for m in (moga_zoo.create_model("hf-hub:someone/moga-b-cifar10"),
              moga_zoo.create_model("moga_b", weights="hf-hub:someone/moga-b-cifar10")):
        assert (m.num_classes, m.input_size) == (10, 32)
        assert m.pretrained_cfg.label_names()[-1] == "truck" and m.pretrained_cfg.preprocess == CIFAR10_PREPROCESS
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            assert torch.allclose(m.eval()(x), net.eval()(x))
    with pytest.raises(WeightsError, match="not of moga_a"):
        moga_zoo.create_model("moga_a", weights="hf-hub:someone/moga-b-cifar10")
    assert main(["push", "moga_a", "--weights", str(tmp_path / "w.safetensors"), "--repo-id", "x",
                 "--dry-run", "--local-dir", str(tmp_path / "f2")]) == 2


def test_registry_and_manifest_agree_and_files_match():
    from moga_zoo.files import sha256_file
    from moga_zoo.train.manifest import MANIFEST, read_manifest
    from moga_zoo.weights import PROJECT_ROOT
    entries = read_manifest()
    if not entries:
        pytest.skip(f"{MANIFEST} lists no trained weights yet")
    for e in entries:
        tag = registry.get_pretrained_cfg(e["model"]).weights[e["tag"]]
        assert tag.source == f"repo:weights/{e['file']}" and tag.sha256 == e["sha256"]
        assert sha256_file(PROJECT_ROOT / "weights" / e["file"]) == e["sha256"]
        assert tag.meta["test_top1"] == e["test_top1"] and e["test_images"] == 10000


def test_shipped_cifar10_weights_measure_what_the_manifest_says(shared):
    """Every 10th CIFAR-10 test image (1,000, all classes) through moga-eval's code path: the
    shipped file must score within 2.5 points of its manifest figure (binomial sd ~0.9 points)."""
    from moga_zoo.evaluate import evaluate_source
    from moga_zoo.train.manifest import MANIFEST, read_manifest
    entries = [e for e in read_manifest() if e["form"] == "cifar10"]
    if not entries:
        pytest.skip(f"{MANIFEST} lists no CIFAR-10 weights yet")
    for e in entries:
        res = evaluate_source(model=e["model"], weights=e["tag"], cifar10=shared / "data" / "cifar10-jpeg.zip",
                              limit=1000, progress=False, batch_size=250)
        assert res.n == 1000 and abs(res.top1 - e["test_top1"]) < 2.5, (e["model"], res.top1, e["test_top1"])
