import csv
import io
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from moga_zoo.cli.evaluate import main as eval_main
from moga_zoo.data import Preprocess, decode, imagenet_classes
from moga_zoo.data import datasets as D
from moga_zoo.evaluate import BadImagesError, evaluate, evaluate_source
from moga_zoo.runners import TorchRunner

SYNSETS = [s for s, _ in imagenet_classes()]


def test_lite0_reproduces_reference_figures(lite0, imagenet_sample):
    """MOGA_FACTS.md section 7: 89.0% top-1, 98.5% top-5 on the 200 sample images."""
    res = evaluate_source(model="efficientnet_lite0", weights="imagenet", imagenet=imagenet_sample)
    assert res.n == 200 and not res.bad and not res.partial
    assert abs(res.top1 - 89.0) <= 0.5 and abs(res.top5 - 98.5) <= 0.5


@pytest.fixture(scope="module")
def sample_predictions(lite0, imagenet_sample):
    files = sorted(imagenet_sample.glob("*.JPEG"))[::5]  # 40 images, 40 classes
    ds = D.imagenet(imagenet_sample)
    assert ds.layout.startswith("files named <synset>")
    sub = D.Dataset([s for s in ds.samples if s.name in {f.name for f in files}], ds.classes, ds.layout)
    return files, evaluate(TorchRunner(lite0), sub, lite0.pretrained_cfg.preprocess, predictions=None)


def _link(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(src, dst)


@pytest.mark.parametrize("layout", ["folders", "val_folders", "loc_csv", "devkit"])
def test_imagenet_layouts_give_the_same_result(layout, tmp_path, sample_predictions, lite0):
    files, expected = sample_predictions
    truth = [f.name.split("_")[0] for f in files]
    if layout in ("folders", "val_folders"):
        base = tmp_path / ("val" if layout == "val_folders" else "")
        for f, syn in zip(files, truth):
            _link(f, base / syn / f.name)
    else:
        for i, f in enumerate(files, start=1):
            _link(f, tmp_path / f"ILSVRC2012_val_{i:08d}.JPEG")
        if layout == "loc_csv":
            (tmp_path / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "".join(
                f"ILSVRC2012_val_{i:08d},{syn} 1 2 3 4 {syn} 5 6 7 8\n" for i, syn in enumerate(truth, start=1)))
        else:  # devkit: ILSVRC2012_IDs are not in sorted-synset order; shuffle to prove the mapping
            from scipy.io import savemat
            rng = np.random.default_rng(0)
            ids = rng.permutation(1000) + 1
            syn_of_id = {int(i): s for i, s in zip(ids, SYNSETS)}
            rec = np.zeros(1000, dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O")])
            for j, (i, s) in enumerate(syn_of_id.items()):
                rec[j] = (i, s)
            kit = tmp_path / "ILSVRC2012_devkit_t12" / "data"
            kit.mkdir(parents=True)
            savemat(kit / "meta.mat", {"synsets": rec})
            id_of = {s: i for i, s in syn_of_id.items()}
            (kit / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{id_of[s]}\n" for s in truth))
    ds = D.imagenet(tmp_path)
    assert len(ds) == len(files)
    assert sorted(s.label for s in ds.samples) == sorted(SYNSETS.index(t) for t in truth)
    res = evaluate(TorchRunner(lite0), ds, lite0.pretrained_cfg.preprocess)
    assert (res.n, res.top1, res.top5) == (expected.n, expected.top1, expected.top5)


def test_unknown_layout_lists_what_was_looked_for(tmp_path):
    (tmp_path / "cat.jpg").write_bytes(b"")
    with pytest.raises(D.DatasetError) as e:
        D.imagenet(tmp_path)
    msg = str(e.value)
    for part in ("synset class folders", "LOC_val_solution.csv", "ILSVRC2012_validation_ground_truth.txt",
                 "<synset>_<anything>"):
        assert part in msg


def _jpeg_bytes(arr, **kw):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=kw.pop("format", "JPEG"), **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def cifar_zip(shared):
    path = shared / "data" / "cifar10-jpeg.zip"
    if not path.is_file():
        pytest.skip(f"needs {path}")
    return path


def test_cifar10_releases_and_zip_agree(cifar_zip, tmp_path):
    zipped = D.cifar10(cifar_zip, "test")
    assert len(zipped) == 10_000 and zipped.classes == list(D.CIFAR10_CLASSES)
    assert len(D.cifar10(cifar_zip, "train")) == 50_000
    picks = zipped.samples[::500]  # 20 images, every class
    arrays = np.stack([np.asarray(decode(D.read_bytes(s.open()))) for s in picks])
    labels = [s.label for s in picks]
    assert sorted(set(labels)) == list(range(10))
    flat = arrays.transpose(0, 3, 1, 2).reshape(len(picks), -1)
    py = tmp_path / "py" / "cifar-10-batches-py"
    py.mkdir(parents=True)
    with open(py / "test_batch", "wb") as f:  # the release's structure: bytes keys, uint8 rows
        pickle.dump({b"batch_label": b"testing batch 1 of 1", b"labels": labels, b"data": flat,
                     b"filenames": [b"x.png"] * len(picks)}, f, protocol=2)
    binary = tmp_path / "bin" / "cifar-10-batches-bin"
    binary.mkdir(parents=True)
    np.concatenate([np.array(labels, np.uint8)[:, None], flat], 1).tofile(binary / "test_batch.bin")
    for root, layout in ((tmp_path / "py", "python"), (tmp_path / "bin", "binary")):
        ds = D.cifar10(root, "test")
        assert layout in ds.layout and [s.label for s in ds.samples] == labels
        got = np.stack([np.asarray(decode(D.read_bytes(s.open()))) for s in ds.samples])
        assert np.array_equal(got, arrays)


def test_cifar_pickle_with_code_is_refused(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(d / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f)
    with pytest.raises(D.DatasetError, match="refusing to load (posix|os|nt).system"):
        D.cifar10(tmp_path, "test")


def test_cifar_missing_layout(tmp_path):
    with pytest.raises(D.DatasetError, match="no CIFAR-10 layout recognised.*python release.*binary release"):
        D.cifar10(tmp_path, "test")


def test_decoding_odd_files_and_bad_file_accounting(tmp_path, lite0, imagenet_sample):
    rgb = np.asarray(decode(imagenet_sample / "n01440764_tench.JPEG"))
    syn = "n01440764"
    (tmp_path / f"{syn}_gray.JPEG").write_bytes(_jpeg_bytes(rgb[..., 0]))
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / f"{syn}_cmyk.JPEG", format="JPEG")
    (tmp_path / f"{syn}_png.JPEG").write_bytes(_jpeg_bytes(rgb, format="PNG"))
    full = _jpeg_bytes(rgb)
    (tmp_path / f"{syn}_truncated.JPEG").write_bytes(full[: len(full) // 2])
    (tmp_path / f"{syn}_garbage.JPEG").write_bytes(b"this is not an image")
    png = decode(tmp_path / f"{syn}_png.JPEG")
    assert png.mode == "RGB" and np.array_equal(np.asarray(png), rgb)
    assert decode(tmp_path / f"{syn}_gray.JPEG").mode == "RGB"
    assert decode(tmp_path / f"{syn}_cmyk.JPEG").mode == "RGB"
    ds = D.imagenet(tmp_path)
    pre = lite0.pretrained_cfg.preprocess
    with pytest.raises(BadImagesError) as e:
        evaluate(TorchRunner(lite0), ds, pre)
    res = e.value.result
    assert sorted(b["name"] for b in res.bad) == [f"{syn}_garbage.JPEG", f"{syn}_truncated.JPEG"]
    assert res.n == 3 and "2 unreadable image(s)" in res.report() and "truncated" in res.report()
    ok = evaluate(TorchRunner(lite0), ds, pre, skip_bad=True)
    assert ok.n == 3 and ok.top1 > 0  # the tench survives grayscale, CMYK and PNG


def test_interrupt_returns_partial_and_keeps_predictions_apart(imagenet_sample, lite0, tmp_path):
    class Interrupting(TorchRunner):
        calls = 0

        def __call__(self, batch):
            Interrupting.calls += 1
            if Interrupting.calls == 3:
                raise KeyboardInterrupt
            return super().__call__(batch)

    ds = D.imagenet(imagenet_sample)
    out = tmp_path / "pred.csv"
    res = evaluate(Interrupting(lite0), ds, lite0.pretrained_cfg.preprocess, batch_size=8, predictions=out)
    assert res.partial and res.n == 16 and res.total == 200
    assert "PARTIAL" in res.report()
    assert not out.exists()
    rows = list(csv.reader(open(tmp_path / "pred.partial.csv")))
    assert len(rows) == 17


def test_cli_json_predictions_limit_and_overrides(lite0, imagenet_sample, tmp_path, capsys):
    import json
    out = tmp_path / "p.csv"
    assert eval_main(["--model", "efficientnet_lite0", "--weights", "imagenet", "--imagenet", str(imagenet_sample),
                      "--limit", "20", "--batch-size", "8", "--predictions", str(out), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["n"] == 20 and {"top1", "top5", "images_per_s"} <= set(d)
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 20 and len({r["label"] for r in rows}) == 20  # evenly spaced: 20 classes
    assert sum(r["top1"] == r["label"] for r in rows) == round(d["top1"] * 20 / 100)
    assert eval_main(["--model", "efficientnet_lite0", "--weights", "imagenet", "--imagenet", str(imagenet_sample),
                      "--limit", "20", "--crop", "160", "--resize", "182", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 20
    assert eval_main(["--model", "moga_a", "--random-init", "--imagenet", str(tmp_path)]) == 2
    assert "no ImageNet layout recognised" in capsys.readouterr().err


def test_data_folders_matched_to_label_names(tmp_path, lite0, imagenet_sample):
    names = dict(imagenet_classes())
    for f in sorted(imagenet_sample.glob("*.JPEG"))[:6]:
        _link(f, tmp_path / names[f.name.split("_")[0]].replace(" ", "_") / f.name)
    res = evaluate_source(model="efficientnet_lite0", weights="imagenet", data=tmp_path)
    assert res.n == 6 and res.top1 >= 50
    _link(f, tmp_path / "not a class" / f.name)
    with pytest.raises(D.DatasetError, match="not a class match none of the model's 1000 label names"):
        evaluate_source(model="efficientnet_lite0", weights="imagenet", data=tmp_path)


def test_preprocess_geometry():
    pre = Preprocess(resize=256, crop=224)
    out = pre(Image.new("RGB", (500, 375)))
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    with pytest.raises(ValueError, match="crop 300 is larger than resize 256"):
        Preprocess(resize=256, crop=300)
