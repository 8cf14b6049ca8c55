"""The training loop: schedules, augmentation, sharding, resume after kill -9, torchrun equality."""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from moga_zoo import specs
from moga_zoo.builder import SpecNet
from moga_zoo.data.augment import Augment
from moga_zoo.data.loader import InMemorySet, TrainLoader
from moga_zoo.data.preprocess import CIFAR10_MEAN, CIFAR10_STD, Preprocess
from moga_zoo.train.recipes import Recipe, param_groups

PRE = Preprocess(32, 32, "bilinear", CIFAR10_MEAN, CIFAR10_STD)


def write_cifar_binary(root, n_train=64, n_test=32, seed=0, by_class=False):
    """A CIFAR-10 binary release with random pixels (the layout, not the content, is tested); labels
    cycle 0..9, or with ``by_class`` the training images come class by class, as folders give them."""
    d = root / "cifar-10-batches-bin"
    d.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    (d / "batches.meta.txt").write_text("\n".join(["airplane", "automobile", "bird", "cat", "deer", "dog",
                                                    "frog", "horse", "ship", "truck"]))
    per = n_train // 5
    for i, (name, n) in enumerate([(f"data_batch_{i}.bin", per) for i in range(1, 6)] + [("test_batch.bin", n_test)]):
        rec = rng.integers(0, 256, (n, 3073), dtype=np.uint8)
        rec[:, 0] = (i * per + np.arange(n)) * 10 // (5 * per) if by_class and i < 5 else np.arange(n) % 10
        rec.tofile(d / name)
    return root


def synthetic_set(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return InMemorySet(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 10,
                       [str(i) for i in range(10)])


def test_schedules_hit_their_landmarks():
    spe = 100
    cos = Recipe(epochs=10, lr=0.4, schedule="cosine", warmup_epochs=1)
    assert cos.lr_at(0, spe) == pytest.approx(0.4 / 100)  # linear warm-up from lr / warm-up steps
    assert cos.lr_at(99, spe) == pytest.approx(0.4)
    assert cos.lr_at(100 + 450, spe) == pytest.approx(0.2, rel=1e-3)  # half-way through the cosine
    assert cos.lr_at(999, spe) < 1e-4
    one = Recipe(epochs=10, lr=0.4, schedule="onecycle", warmup_epochs=3)
    assert one.lr_at(0, spe) == 0 and one.lr_at(300, spe) == pytest.approx(0.4)
    assert one.lr_at(150, spe) == pytest.approx(0.2)
    exp = Recipe(epochs=10, lr=0.1, schedule="exponential", warmup_epochs=0, decay_rate=0.5, decay_epochs=2)
    assert [exp.lr_at(e * spe, spe) for e in (0, 1, 2, 4)] == pytest.approx([0.1, 0.1, 0.05, 0.025])
    with pytest.raises(ValueError, match="warmup_epochs"):
        Recipe(epochs=1, warmup_epochs=2)


def test_augment_is_a_function_of_the_generator():
    imgs = synthetic_set(8).images
    aug = Augment(pad=4, flip=True, cutout=8)
    a = aug(imgs, np.random.default_rng(1))
    b = aug(imgs, np.random.default_rng(1))
    c = aug(imgs, np.random.default_rng(2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape == imgs.shape and a.dtype == np.uint8
    # a crop is a shifted window of the zero-padded image: every output pixel exists in the input or is padding
    one = Augment(pad=4, flip=False)(imgs[:1], np.random.default_rng(3))[0]
    padded = np.pad(imgs[0], ((4, 4), (4, 4), (0, 0)))
    assert any(np.array_equal(one, padded[y:y + 32, x:x + 32]) for y in range(9) for x in range(9))
    flipped = Augment(pad=0, flip=True)(imgs, np.random.default_rng(0))
    same = [np.array_equal(f, i) for f, i in zip(flipped, imgs)]
    mirrored = [np.array_equal(f, i[:, ::-1]) for f, i in zip(flipped, imgs)]
    assert all(s or m for s, m in zip(same, mirrored)) and any(mirrored) and any(same)


def test_rank_shards_partition_the_global_batch():
    data = synthetic_set(64)
    one = TrainLoader(data, 16, Augment(), PRE, seed=5)
    two = [TrainLoader(data, 16, Augment(), PRE, seed=5, rank=r, world=2) for r in range(2)]
    for epoch, step in [(0, 0), (1, 3)]:
        full = one.batch(epoch, step)
        parts = [t.batch(epoch, step) for t in two]
        assert torch.equal(torch.cat([p.x for p in parts]), full.x)
        assert torch.equal(torch.cat([p.y for p in parts]), full.y)
    assert not torch.equal(one.batch(0, 0).y, one.batch(1, 0).y)  # reshuffled per epoch
    assert torch.equal(one.batch(2, 1).x, one.batch(2, 1).x)  # and reproducible
    with pytest.raises(ValueError, match="divisible"):
        TrainLoader(data, 15, Augment(), PRE, world=2)


def test_validation_split_is_seeded_balanced_and_disjoint():
    data = synthetic_set(200)
    train, val, idx = data.split(50, seed=3)
    assert len(val) == 50 and len(train) == 150
    assert np.bincount(val.labels, minlength=10).tolist() == [5] * 10
    assert np.array_equal(data.split(50, seed=3)[2], idx) and not np.array_equal(data.split(50, seed=4)[2], idx)
    kept = {x.tobytes() for x in train.images}
    assert not any(x.tobytes() in kept for x in val.images)


def test_subsample_spreads_over_classes_of_a_set_stored_class_by_class():
    from moga_zoo.data.loader import InMemorySet, subsample

    data = InMemorySet(np.zeros((1000, 2, 2, 3), np.uint8), np.repeat(np.arange(10), 100), list("abcdefghij"))
    assert np.bincount(subsample(data, 500, 0).labels).tolist() == [50] * 10  # a prefix would be 5 classes
    assert np.array_equal(subsample(data, 37, 0).labels, subsample(data, 37, 0).labels)
    assert subsample(data, 1000, 0) is data


def test_no_weight_decay_on_bn_and_biases():
    m = SpecNet(specs.for_cifar10(specs.MOGA_C))
    decay, no_decay = param_groups(m, 1e-4)
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert no_decay["weight_decay"] == 0
    n_bn = sum(2 for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d))
    assert len(no_decay["params"]) >= n_bn


def test_drop_path_is_random_in_training_and_off_in_eval():
    m = SpecNet(specs.for_cifar10(specs.MOGA_C), drop_path_rate=0.5)
    rates = [b.drop_path for b in m.features if getattr(b, "residual", False)]
    assert rates == sorted(rates) and rates[-1] == pytest.approx(0.5) and rates[0] > 0
    x = torch.randn(4, 3, 32, 32)
    m.train()
    torch.manual_seed(0)
    a = m(x)
    torch.manual_seed(1)
    b = m(x)
    assert not torch.allclose(a, b)
    m.eval()
    assert torch.equal(m(x), m(x))


def _cli(*args):
    return [sys.executable, "-m", "moga_zoo", *args]


def _env(threads=1):
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}


def kill_9_at_step(proc, ckpt, min_step: int, timeout: float = 600) -> int:
    """SIGKILL ``proc`` once its checkpoint records ``min_step`` optimizer steps; returns the step
    the checkpoint on disk holds afterwards (what a resume starts from). The timeout only bounds a
    hung run: a loaded machine reaches the step later, not never."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            if torch.load(ckpt, weights_only=True, mmap=True)["global_step"] >= min_step:
                break
        except Exception:
            pass  # not written yet (the file only ever appears complete, by atomic rename)
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return torch.load(ckpt, weights_only=True)["global_step"]


TRAIN_ARGS = ["--model", "moga_c", "--epochs", "2", "--batch-size", "16", "--warmup-epochs", "0.5",
              "--threads", "1", "--workers", "1", "--json"]


def test_resume_after_kill_9_is_bit_identical(tmp_path):
    data = write_cifar_binary(tmp_path / "data", n_train=320)  # 20 steps an epoch
    ref = tmp_path / "ref"
    subprocess.run(_cli("train", "--cifar10", str(data), "--out", str(ref), *TRAIN_ARGS),
                   check=True, env=_env(), capture_output=True)
    run = tmp_path / "run"
    p = subprocess.Popen(_cli("train", "--cifar10", str(data), "--out", str(run), "--checkpoint-steps", "1",
                              *TRAIN_ARGS), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    step = kill_9_at_step(p, run / "checkpoint.pt", 25)  # in the second epoch
    assert not (run / "model.safetensors").exists()
    assert 25 <= step < 40, "the run should have been killed in its second epoch"
    (run / ".checkpoint.pt.stale.part").write_bytes(b"half a checkpoint")  # as a kill inside a write leaves
    out = subprocess.run(_cli("train", "--cifar10", str(data), "--out", str(run), "--resume", *TRAIN_ARGS),
                         env=_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    # a kill inside a checkpoint write leaves its temporary; resuming clears it
    assert [f.name for f in run.iterdir() if f.name.endswith(".part")] == []
    a, b = load_file(str(ref / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert json.loads((ref / "log.json").read_text())["epochs"][-1]["train_loss"] == \
        json.loads((run / "log.json").read_text())["epochs"][-1]["train_loss"]


def test_a_second_run_into_the_same_folder_is_refused(tmp_path):
    data = write_cifar_binary(tmp_path / "data")
    out = tmp_path / "run"
    args = ["train", "--cifar10", str(data), "--out", str(out), *TRAIN_ARGS]
    first = subprocess.run(_cli(*args, "--epochs", "1"), env=_env(), capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    again = subprocess.run(_cli(*args, "--epochs", "1"), env=_env(), capture_output=True, text=True)
    assert again.returncode == 2 and "already holds a run" in again.stderr and "Traceback" not in again.stderr
    other = subprocess.run(_cli(*args, "--epochs", "1", "--resume", "--lr", "0.3"), env=_env(),
                           capture_output=True, text=True)
    assert other.returncode == 2 and "another recipe" in other.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_process(tmp_path):
    """torchrun with 2 gloo processes (each half of every batch) == 1 process accumulating the
    same halves: the parameters after training agree to 1e-6."""
    data = write_cifar_binary(tmp_path / "data")
    args = ["--model", "moga_c", "--epochs", "1", "--batch-size", "16", "--warmup-epochs", "0.5",
            "--threads", "1", "--workers", "1"]
    one = subprocess.run(_cli("train", "--cifar10", str(data), "--out", str(tmp_path / "one"),
                              "--micro-batches", "2", *args), env=_env(), capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
                          "-m", "moga_zoo", "train", "--cifar10", str(data), "--out", str(tmp_path / "two"), *args],
                         env=_env(), capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    log = json.loads((tmp_path / "two" / "log.json").read_text())
    assert log["meta"]["world_size"] == 2
    a = load_file(str(tmp_path / "one" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "model.safetensors"))
    moved = 0
    for k in a:
        if "running" in k or "num_batches" in k:
            continue  # BN statistics follow rank 0's half on 2 processes, both halves on 1
        assert torch.allclose(a[k], b[k], atol=1e-6, rtol=0), (k, (a[k] - b[k]).abs().max())
        moved += 1
    assert moved > 100


def test_training_learns_real_cifar10_images(shared):
    """Overfitting 64 real images: the loss must fall far below chance (2.30) within 40 steps."""
    from moga_zoo.data import datasets
    from moga_zoo.data.loader import eval_batches
    from moga_zoo.train.loop import CrossEntropyStep, RunConfig, fit

    zip_path = shared / "data" / "cifar10-jpeg.zip"
    ds = datasets.cifar10(zip_path, "test")
    ds.samples = ds.samples[::156][:64]
    data = InMemorySet.from_dataset(ds, 32, progress=False)
    # the 64 images repeated: 40 steps of 64 in one epoch, each step a shuffled mix of them
    repeated = InMemorySet(np.tile(data.images, (40, 1, 1, 1)), np.tile(data.labels, 40), data.classes)
    recipe = Recipe(epochs=1, batch_size=64, lr=0.05, warmup_epochs=0, schedule="constant",
                    label_smoothing=0.0, dropout=0.0, weight_decay=0.0, augment=Augment(pad=0, flip=False))
    torch.manual_seed(0)
    net = SpecNet(specs.for_cifar10(specs.MOGA_C), drop_rate=0.0)
    batch = next(eval_batches(data, PRE, 64))

    def fitted():  # with batch statistics: what the training steps optimised
        net.train()
        with torch.no_grad():
            logits = net(batch.x)
        return float(torch.nn.functional.cross_entropy(logits, batch.y)), float((logits.argmax(1) == batch.y).float().mean())
    loss0, _ = fitted()
    loader = TrainLoader(repeated, 64, recipe.augment, PRE)
    with tempfile.TemporaryDirectory() as d:
        fit(net, CrossEntropyStep(), loader, recipe, RunConfig(d, progress=False))
    loss1, acc1 = fitted()
    assert loss0 > 2.0 and loss1 < 0.5 and acc1 > 0.8, (loss0, loss1, acc1)


def test_ship_puts_a_finished_run_into_a_manifest(tmp_path):
    from moga_zoo.files import sha256_file
    from moga_zoo.train.manifest import read_manifest, ship
    data = write_cifar_binary(tmp_path / "data")
    run = tmp_path / "run"
    out = subprocess.run(_cli("train", "--cifar10", str(data), "--out", str(run), *TRAIN_ARGS, "--epochs", "1"),
                         env=_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    weights = tmp_path / "weights"
    weights.mkdir()
    e = ship(run, model="moga_c", tag="cifar10", cifar10=data, weights_dir=weights)
    assert e["file"] == "moga_c_cifar10.safetensors" and e["sha256"] == sha256_file(weights / e["file"])
    assert e["test_images"] == 32 and 0 <= e["test_top1"] <= 100 and e["epochs"] == 1
    assert e["command"].startswith("moga-zoo train") and e["spec"]["input_size"] == 32
    assert read_manifest(weights / "manifest.json") == [e]
    with pytest.raises(Exception, match="no finished run"):
        ship(tmp_path / "data", model="moga_c", tag="cifar10", cifar10=data, weights_dir=weights)
