"""ImageNet training data: streamed batches (random-resized crop) are a function of (seed, epoch,
step) like CIFAR-10's, rank shares form the 1-process batch, and ``moga-zoo train`` /
``search train-supernet`` run end to end on an ImageNet folder layout built from the real sample."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from moga_zoo.data.datasets import DatasetError
from moga_zoo.data.stream import CROP_RATIO, CROP_SCALE, crop_box, load_crop
from moga_zoo.train.data import load_data
from moga_zoo.train.recipes import RECIPES


def make_root(sample, root, n=200):
    """``train/<synset>/`` and ``val/<synset>/`` (every 4th image) over the first ``n`` real sample
    images (links, no copies)."""
    for i, f in enumerate(sorted(sample.iterdir())[:n]):
        d = root / ("val" if i % 4 == 0 else "train") / f.name.split("_")[0]
        d.mkdir(parents=True, exist_ok=True)
        (d / f.name).symlink_to(f.resolve())
    return root


@pytest.fixture
def imagenet_root(imagenet_sample, tmp_path):
    return make_root(imagenet_sample, tmp_path / "inet")


def _cli(*args):
    return [sys.executable, "-m", "moga_zoo", *args]


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def test_crop_box_stays_inside_and_respects_scale_and_ratio():
    rng = np.random.default_rng(0)
    for w, h in [(500, 375), (224, 224), (1000, 12), (12, 1000)]:
        for _ in range(200):
            x0, y0, x1, y1 = crop_box(w, h, rng)
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            if (w, h) == (500, 375):  # a normal photo: a crop is always found within the ranges
                area = (x1 - x0) * (y1 - y0) / (w * h)
                assert CROP_SCALE[0] * 0.9 <= area <= CROP_SCALE[1]
                assert CROP_RATIO[0] * 0.9 <= (x1 - x0) / (y1 - y0) <= CROP_RATIO[1] * 1.1
    assert crop_box(1000, 12, rng) == (492, 0, 508, 12)  # fallback: center crop, 16 = 12 x 4/3 wide


def test_reduced_jpeg_decoding_crops_the_same_region(imagenet_sample):
    """``draft`` decodes at 1/2..1/8 scale: the crop must be the full decode's region."""
    from moga_zoo.data.datasets import Sample
    reduced = 0
    for path in sorted(imagenet_sample.glob("*.JPEG"))[:12]:
        sample = Sample(path.name, lambda p=path: open(p, "rb"), 0)
        for seed in range(3):
            fast = load_crop(sample, 64, np.random.default_rng(seed)).astype(np.float32)
            full = load_crop(sample, 64, np.random.default_rng(seed), draft=False).astype(np.float32)
            assert np.abs(fast - full).mean() < 6, (path.name, seed)  # same region; only resampling differs
            reduced += not np.array_equal(fast, full)
    assert reduced >= 12  # about half the crops (short side >= 128 pixels) decode reduced: 17 of 36 here


def test_streamed_batches_are_reproducible_and_sharded(imagenet_root):
    data = load_data(imagenet=imagenet_root)
    assert (data.form, len(data.train), len(data.eval), data.num_classes) == ("imagenet", 150, 50, 1000)
    recipe = RECIPES["imagenet-moga"].override(batch_size=8)
    one, again = data.loader(recipe, seed=5), data.loader(recipe, seed=5)
    halves = [data.loader(recipe, seed=5, rank=r, world=2) for r in range(2)]
    try:
        b = one.batch(1, 3)
        assert b.x.shape == (8, 3, 224, 224) and b.x.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(again.batch(1, 3).x, b.x)  # a resumed run sees the same batch
        parts = [h.batch(1, 3) for h in halves]
        assert torch.equal(torch.cat([p.x for p in parts]), b.x)
        assert torch.equal(torch.cat([p.y for p in parts]), b.y)
        assert not torch.equal(one.batch(2, 3).x, b.x)
        order = np.random.default_rng([5, 1]).permutation(150)[24:32]
        assert b.y.tolist() == data.train.labels[order].tolist()
        synsets = [data.train.classes[y] for y in b.y.tolist()]
        assert [data.train.samples[i].name.split("/")[0] for i in order] == synsets
    finally:
        for loader in (one, again, *halves):
            loader.close()


def test_imagenet_layout_errors_name_the_fix(tmp_path, imagenet_root):
    with pytest.raises(DatasetError, match="train/<synset>"):
        load_data(imagenet=imagenet_root / "val" / "n01440764")  # images, but no synset folders
    with pytest.raises(DatasetError, match="not a directory"):
        load_data(imagenet=tmp_path / "missing")
    (imagenet_root / "val").rename(imagenet_root / "elsewhere")
    with pytest.raises(DatasetError, match="--val-size"):
        load_data(imagenet=imagenet_root)
    assert len(load_data(imagenet=imagenet_root, val_size=10).eval) == 10
    with pytest.raises(DatasetError, match="exactly one"):
        load_data()


def test_train_cli_on_an_imagenet_folder(imagenet_root, tmp_path):
    """3 steps of MoGA-C at 224 with the paper's ImageNet recipe (RMSProp, EMA) from the folder."""
    out = tmp_path / "run"
    p = subprocess.run(_cli("train", "--model", "moga_c", "--imagenet", str(imagenet_root), "--out", str(out),
                            "--val-size", "14", "--batch-size", "16", "--epochs", "1", "--warmup-epochs", "0", "--threads", "1",
                            "--json"), env=ENV, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    result = json.loads(p.stdout)
    assert result["recipe"]["optimizer"] == "rmsprop" and result["recipe"]["ema_decay"] > 0
    log = json.loads((out / "log.json").read_text())
    assert log["meta"]["form"] == "imagenet" and log["meta"]["train_crop"]["scale"] == list(CROP_SCALE)
    assert log["epochs"][0]["step"] == (150 - 14) // 16
    w = load_file(str(out / "model_ema.safetensors"))
    assert w["classifier.weight"].shape == (1000, 1280)
    assert all(torch.isfinite(v).all() for v in w.values())
    assert 0 <= result["final"]["val_top1"] <= 100 and math.isfinite(result["final"]["train_loss"])


def test_supernet_trains_and_scores_on_an_imagenet_folder(imagenet_sample, tmp_path):
    from moga_zoo.search.pipeline import SUPERNET_RECIPE, train_supernet
    from moga_zoo.search.score import SupernetAccuracy
    from moga_zoo import specs

    root = make_root(imagenet_sample, tmp_path / "inet", n=16)  # 12 train (4 held out), 4 val images
    torch.set_num_threads(1)
    res = train_supernet(imagenet=root, out=tmp_path / "sup", val_size=4, monitor_images=4,
                         recipe=SUPERNET_RECIPE.override(epochs=1, batch_size=4),
                         checkpoint_steps=1000, progress=False)
    assert res["form"] == "imagenet" and res["num_classes"] == 1000
    assert res["block_updates"]["min"] == res["block_updates"]["max"] == (12 - 4) // 4
    acc = SupernetAccuracy(tmp_path / "sup", bn_images=4)
    top1 = acc.score(specs.PUBLISHED_CHOICES["moga_a"])
    assert len(acc.val) == 4 and acc.val.images.shape[1:] == (224, 224, 3)
    assert top1 in (0.0, 25.0, 50.0, 75.0, 100.0)
    assert acc.score(specs.PUBLISHED_CHOICES["moga_a"]) == top1 and len(acc.cache) == 1
