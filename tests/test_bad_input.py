"""Bad input and faults, one test per class: each ends in one clear line naming the problem and the
fix, a non-zero exit status, no traceback, and nothing half-written left behind."""
import json
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

import moga_zoo
from moga_zoo import weights as W
from moga_zoo.cli.evaluate import main as eval_main
from moga_zoo.cli.export import main as export_main
from moga_zoo.cli.main import main
from moga_zoo.data import datasets

BIN = __import__("pathlib").Path(sys.executable).parent


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


# --- integrity ----------------------------------------------------------------------------------

def test_malformed_sha256_fragment_is_refused_before_downloading(tmp_path, monkeypatch):
    monkeypatch.setenv("MOGA_ZOO_CACHE", str(tmp_path / "cache"))
    with pytest.raises(W.WeightsError, match="64 hexadecimal digits, got 63"):
        W.download("http://127.0.0.1:9/w.pt#sha256=" + "a" * 63, progress=False)
    assert not (tmp_path / "cache").exists()


def test_zip_members_are_inflated_within_bounds(tmp_path):
    z = tmp_path / "bomb.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as f:
        f.writestr("test/cat/huge.png", b"\0" * (datasets.MAX_IMAGE_BYTES + 1))  # 64 MiB of zeros, ~65 KB deflated
        f.writestr("test/cat/ok.png", b"\0")
    assert z.stat().st_size < 1 << 20
    ds = datasets.cifar10(z, "test")
    huge = next(s for s in ds.samples if s.name.endswith("huge.png"))
    with pytest.raises(datasets.DatasetError, match="not inflated"):
        datasets.read_bytes(huge.open())


def test_a_sidecar_must_match_its_artifact(tmp_path):
    from moga_zoo.runners import artifact_info
    art = tmp_path / "m.onnx"
    art.write_bytes(b"exported bytes")
    (tmp_path / "m.onnx.json").write_text(json.dumps({"sha256": "0" * 64, "preprocess": {}}))
    with pytest.raises(ValueError, match="does not match the sha256 its sidecar"):
        artifact_info(art)
    (tmp_path / "m.onnx.json").write_text("{not json")
    with pytest.raises(ValueError, match="sidecar .*m.onnx.json is not valid JSON"):
        artifact_info(art)


def test_nan_checkpoints_are_refused(tmp_path):
    sd = moga_zoo.create_model("moga_c").state_dict()
    sd["classifier.weight"][0, 0] = float("nan")
    torch.save(sd, tmp_path / "nan.pth")
    with pytest.raises(W.WeightsError, match="NaN or infinite values .* classifier.weight"):
        moga_zoo.create_model("moga_c", weights=str(tmp_path / "nan.pth"))


# --- meaningless results -------------------------------------------------------------------------

def _cifar_binary(root, test_records: bytes):
    d = root / "cifar-10-batches-bin"
    d.mkdir(parents=True)
    (d / "batches.meta.txt").write_text("airplane\n")
    for i in range(1, 6):
        (d / f"data_batch_{i}.bin").write_bytes(b"")
    (d / "test_batch.bin").write_bytes(test_records)
    return root


def test_empty_or_damaged_cifar_files_are_errors(tmp_path, capsys):
    empty = _cifar_binary(tmp_path / "empty", b"")
    assert eval_main(["--model", "moga_c", "--random-init", "--num-classes", "10", "--cifar10", str(empty)]) == 2
    assert "empty file" in _err(capsys)
    rec = np.zeros(3073, np.uint8)
    rec[0] = 200
    bad = _cifar_binary(tmp_path / "label", rec.tobytes())
    with pytest.raises(datasets.DatasetError, match="label 200 is not a CIFAR-10 class"):
        datasets.cifar10(bad, "test")
    py = tmp_path / "py" / "cifar-10-batches-py"
    py.mkdir(parents=True)
    (py / "batches.meta").write_bytes(pickle.dumps({}))
    (py / "test_batch").write_bytes(pickle.dumps({b"labels": [1]}))
    with pytest.raises(datasets.DatasetError, match="b'data' and b'labels'"):
        datasets.cifar10(tmp_path / "py", "test")


def test_an_imagenet_head_on_cifar10_and_random_networks_are_refused(tmp_path, capsys):
    rec = np.zeros((4, 3073), np.uint8)
    data = _cifar_binary(tmp_path / "c", rec.tobytes())
    assert eval_main(["--model", "moga_c", "--random-init", "--cifar10", str(data)]) == 2
    assert "the model predicts 1000 classes (tench, goldfish" in _err(capsys)
    assert eval_main(["--model", "moga_c", "--cifar10", str(data)]) == 2
    assert "randomly initialised network is meaningless" in _err(capsys)


def test_image_files_without_labels_are_reported(tmp_path, imagenet_sample, lite0, capsys):
    import shutil
    for f in sorted(imagenet_sample.iterdir())[:3]:
        shutil.copy(f, tmp_path / f.name)
    shutil.copy(f, tmp_path / "holiday.jpg")
    assert eval_main(["--imagenet", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "on 3 images" in out and "1 image file(s) carry no label" in out and "holiday.jpg" in out


# --- bad arguments ------------------------------------------------------------------------------

@pytest.mark.parametrize("args,msg", [
    (["--batch-size", "0"], "argument --batch-size: must be >= 1"),  # used to spin forever
    (["--limit", "0"], "argument --limit: must be >= 1"),
    (["--crop", "0"], "argument --crop: must be >= 1"),
    (["--std", "0", "0", "0"], "std values divide the pixels"),
    (["--workers", "-1"], "argument --workers: must be >= 1"),
])
def test_eval_arguments_out_of_range(args, msg, imagenet_sample, capsys):
    code = None
    try:
        code = eval_main(["--model", "efficientnet_lite0", "--weights", "imagenet", "--imagenet",
                          str(imagenet_sample), *args])
    except SystemExit as e:  # argparse's own exit
        code = e.code
    assert code == 2 and msg in _err(capsys)


def test_predictions_path_that_is_a_folder(imagenet_sample, lite0, tmp_path, capsys):
    assert eval_main(["--imagenet", str(imagenet_sample), "--predictions", str(tmp_path), "--limit", "2"]) == 2
    assert "is a folder" in _err(capsys)


def test_export_out_and_opset_are_checked_before_any_work(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("")
    assert export_main(["--model", "moga_c", "--format", "onnx", "--out", str(f)]) == 2
    assert "exists and is not a directory" in _err(capsys)
    assert export_main(["--model", "moga_c", "--format", "onnx", "--opset", "99", "--out", str(tmp_path / "o")]) == 2
    assert "--opset 99" in _err(capsys) and not (tmp_path / "o").exists()
    assert export_main(["--check-mace", str(f)]) == 2
    assert "is not an ONNX model" in _err(capsys)


@pytest.mark.parametrize("spec,msg", [
    ({"options": {"se_divisor": 0}}, "field 'se_divisor'"),
    ({"options": {"bn_eps": -1}}, "field 'bn_eps'"),
    ({"row": ["conv", 1, 1, True, False, "HS", 1]}, "field 'c'"),
    ({"row": ["ir", 3, 6, 16, "yes", "HS", 1]}, "field 'se'"),
    ({"in_chans": 0}, "field 'in_chans'"),
    ({"row": ["conv", 1, 1, 1_000_000, False, "HS", 1], "row2": ["conv", 1, 1, 1_000_000, False, "HS", 1]},
     "parameters"),
])
def test_bad_specs_name_the_field(spec, msg, tmp_path, capsys):
    rows = [["conv", 3, 1, 16, False, "HS", 2]] + [spec[k] for k in ("row", "row2") if k in spec] + \
        [["pool", 1, 1, 0, False, None, 1], ["fc", 1, 1, 10, False, None, 1]]
    d = {"rows": rows, "options": spec.get("options", {}), "in_chans": spec.get("in_chans", 3)}
    p = tmp_path / "s.json"
    p.write_text(json.dumps(d))
    assert main(["predict", "--model", str(p), "--topk", "1"]) == 2
    assert msg in _err(capsys)


def test_predict_keeps_good_results_when_one_image_is_unreadable(tmp_path, lite0, capsys):
    from moga_zoo.inference import default_image
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    assert main(["predict", str(default_image()), str(bad)]) == 1
    out, err = capsys.readouterr()
    assert "military uniform" in out and "unreadable" in out
    assert "1 of 2 image(s) could not be read" in err and "Traceback" not in err
    with pytest.raises(ValueError, match="topk must be"):
        moga_zoo.predict(lite0, default_image(), topk=-1)
    assert len(moga_zoo.predict(lite0, str(default_image()), topk=1)[0]["top"]) == 1  # one path, not a list


# --- interruption and plumbing -----------------------------------------------------------------

def test_a_closed_pipe_is_not_a_traceback():
    p = subprocess.run(f"{BIN / 'moga-zoo'} info moga_a | head -1", shell=True, capture_output=True, text=True)
    assert p.stdout.startswith("moga_a") and "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr


def test_debug_shows_the_traceback(tmp_path):
    args = [str(BIN / "moga-zoo"), "info", str(tmp_path / "missing.json")]
    quiet = subprocess.run(args, capture_output=True, text=True)
    loud = subprocess.run(args + ["--debug"], capture_output=True, text=True)
    assert quiet.returncode == loud.returncode == 2
    assert "does not exist" in quiet.stderr and "Traceback" not in quiet.stderr
    assert "Traceback" in loud.stderr


def test_atomic_write_deletes_its_own_temporary_and_only_its_own(tmp_path, monkeypatch):
    """A Ctrl-C landing just after the temporary file appears on disk (before its name is handed
    back) is the race the subprocess test below hit under load: it must not leave a .part. A
    temporary of the same name made by another writer is not ours to delete."""
    import os

    from moga_zoo import files
    real_open = os.open

    def open_then_interrupt(*args, **kw):
        os.close(real_open(*args, **kw))
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "open", open_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        with files.atomic_path(tmp_path / "model.tflite") as tmp:
            tmp.write_bytes(b"never reached")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    monkeypatch.setattr(files.secrets, "token_hex", lambda n: "same")  # another writer drew the same name
    other = tmp_path / ".model.tflite.same.part"
    other.write_bytes(b"theirs")
    with pytest.raises(FileExistsError):
        with files.atomic_path(tmp_path / "model.tflite"):
            pass
    assert other.read_bytes() == b"theirs" and not (tmp_path / "model.tflite").exists()


def test_ctrl_c_during_tflite_verification_leaves_no_artifact(tmp_path, imagenet_sample):
    """SIGINT while the converted file is being verified: exit 130, one line, and neither the
    unverified .tflite nor its sidecar (nor a .part) is left as if the export had completed."""
    import signal
    out = tmp_path / "out"
    p = subprocess.Popen([str(BIN / "moga-export"), "--model", "moga_c", "--format", "tflite", "--out", str(out),
                          "--verify", str(imagenet_sample), "--threads", "1"],
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                         # a background job's children inherit SIGINT ignored; a user's terminal does not
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    for line in p.stderr:  # progress lines arrive as the export goes
        lines.append(line)
        if "verifying against torch" in line:
            break
    p.send_signal(signal.SIGINT)
    rest = p.stderr.read()
    assert p.wait(timeout=120) == 130, "".join(lines) + rest
    assert "Traceback" not in rest and "interrupted" in rest.lower()
    assert not out.exists() or list(out.iterdir()) == []
    assert [ln.split(" ...")[0].strip() for ln in lines] == [  # progress only: TensorFlow's chatter is filtered
        "building the Keras model of moga_c and copying the weights", "converting to TFLite fp32",
        f"verifying against torch on {imagenet_sample} (200 images)"]
    assert "XNNPACK" not in rest and "oneDNN" not in rest
