"""The four lines that introduce the package, run exactly as a user types them."""
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

BIN = __import__("pathlib").Path(sys.executable).parent


def _run(args, cwd, timeout=900, env=None):
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def test_torch_hub_load_in_the_github_form_offline(tmp_path):
    """torch.hub.load('OWNER/REPO', 'moga_a') with the repo where torch.hub keeps a download
    (<hub dir>/OWNER_REPO_main) and no network: the entry points come from that copy."""
    repo = tmp_path / "hub" / "moga-zoo-ai_moga-zoo_main"
    shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(".git", ".venv", "runs", "__pycache__", "*.egg-info"))
    code = (
        "import sys, torch\n"
        f"torch.hub.set_dir({str(tmp_path / 'hub')!r})\n"
        "names = torch.hub.list('moga-zoo-ai/moga-zoo', trust_repo=True)\n"
        "m = torch.hub.load('moga-zoo-ai/moga-zoo', 'moga_a', trust_repo=True)\n"
        "doc = torch.hub.help('moga-zoo-ai/moga-zoo', 'efficientnet_lite0', trust_repo=True)\n"
        "print(names); print(type(m).__name__, m.spec.name, m.num_classes); print(doc); print(sys.modules['moga_zoo'].__file__)\n")
    out = _run([sys.executable, "-c", code], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "['efficientnet_lite0', 'mobilenetv3_large', 'moga_a', 'moga_b', 'moga_c']"
    assert lines[1] == "SpecNet moga_a 1000"
    assert "Weight tags: 'imagenet' (available" in out.stdout and "385M MACs" in out.stdout
    assert str(repo) in lines[-1]  # the package imported is the hub copy's


def test_hub_pretrained_without_obtainable_weights_says_how_to_get_them():
    import torch
    with pytest.raises(Exception, match="released on request"):
        torch.hub.load(str(ROOT), "moga_a", source="local", pretrained=True)


def test_moga_eval_imagenet_as_typed(imagenet_sample, lite0):
    out = _run([str(BIN / "moga-eval"), "--imagenet", str(imagenet_sample)], cwd=ROOT)
    assert out.returncode == 0, out.stderr
    first, result = out.stdout.splitlines()[0], out.stdout.splitlines()[1]
    assert first.startswith("model: efficientnet_lite0 with weights 'imagenet'") and "--model NAME" in first
    assert result.startswith("top-1 89.00%  top-5 98.50%  on 200 images")


@pytest.mark.slow
def test_moga_export_tflite_as_typed(tmp_path, lite0):
    pytest.importorskip("tensorflow")
    out = _run([str(BIN / "moga-export"), "--format", "tflite"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("model: efficientnet_lite0 with weights 'imagenet'")
    assert lines[1].startswith("wrote exported/efficientnet_lite0.fp32.tflite")
    assert (tmp_path / "exported" / "efficientnet_lite0.fp32.tflite").is_file()


def test_moga_zoo_search_as_typed():
    out = _run([str(BIN / "moga-zoo"), "search"], cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: moga-zoo search")
    assert "moga-zoo search evolve --table" in out.stdout
