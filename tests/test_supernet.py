"""FairNAS supernet: strict fairness, subnets holding the shared weights, BN recalibration,
resume after kill -9, torchrun equality, and the whole pipeline on tiny data."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import moga_zoo
from moga_zoo import specs
from moga_zoo.data.augment import Augment
from moga_zoo.data.loader import TrainLoader, eval_batches
from moga_zoo.data.preprocess import CIFAR10_PREPROCESS
from moga_zoo.search.bn import recalibrate
from moga_zoo.search.fairness import FairStep, fair_paths
from moga_zoo.search.supernet import N_CHOICES, N_LAYERS, Supernet
from moga_zoo.train.distributed import Dist
from moga_zoo.train.loop import StepContext, TrainError
from test_train import _env, _free_port, kill_9_at_step, synthetic_set, write_cifar_binary

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "benchmarks" / "results" / "lut_ort_1t.json"


@pytest.fixture(scope="module")
def supernet():
    torch.manual_seed(0)
    return Supernet("cifar10")


def test_fair_paths_use_every_block_once():
    paths = fair_paths(np.random.default_rng(0))
    assert paths.shape == (N_CHOICES, N_LAYERS)
    for layer in range(N_LAYERS):
        assert sorted(paths[:, layer]) == list(range(N_CHOICES))
    assert not np.array_equal(paths, fair_paths(np.random.default_rng(1)))


@pytest.mark.parametrize("same_batch", [True, False])
def test_a_fair_step_updates_every_block_of_every_layer_exactly_once(supernet, same_batch):
    step = FairStep(same_batch=same_batch)
    data = synthetic_set(16 * step.batches_per_step)
    loader = TrainLoader(data, 16, Augment(), CIFAR10_PREPROCESS)
    supernet.train()
    for s in range(2):
        supernet.zero_grad(set_to_none=True)
        batches = [loader.batch(0, j) for j in range(step.batches_per_step)]
        stats = step(supernet, batches, StepContext(0, s, s, 0, Dist()))
        assert stats.seen == 12 * 16
        assert (step.counts == s + 1).all()
        for layer in supernet.blocks:  # every block received a gradient in this one step
            for block in layer:
                assert block.project.conv.weight.grad is not None
                assert block.project.conv.weight.grad.abs().sum() > 0


def test_shared_parts_get_the_mean_gradient_of_the_paths_and_blocks_their_own(supernet):
    """Each block's gradient is its one path's; the stem's and head's is the paths' average."""
    data = synthetic_set(16)
    batch = TrainLoader(data, 16, Augment(), CIFAR10_PREPROCESS).batch(0, 0)
    supernet.eval()  # BN in running-stat mode: each path's loss is a fixed function of the weights
    grads = {}
    for mode in ("mean", "sum"):
        supernet.zero_grad(set_to_none=True)
        step = FairStep(shared_grad=mode)
        step(supernet, [batch], StepContext(0, 0, 0, 0, Dist()))
        grads[mode] = {n: p.grad.clone() for n, p in supernet.named_parameters() if p.grad is not None}
    shared = {id(p) for p in supernet.shared_parameters()}
    names = {n for n, p in supernet.named_parameters() if id(p) in shared}
    assert names and all(n.startswith(("stem", "last_conv", "head_convs", "classifier")) for n in names)
    for n, g in grads["mean"].items():
        want = grads["sum"][n] / 12 if n in names else grads["sum"][n]
        torch.testing.assert_close(g, want, rtol=1e-5, atol=1e-7)
    path = step.paths(StepContext(0, 0, 0, 0, Dist()))[3]  # one path alone gives its blocks the same gradient
    supernet.zero_grad(set_to_none=True)
    F.cross_entropy(supernet(batch.x, path), batch.y).backward()
    block = supernet.blocks[5][path[5]].project.conv.weight
    torch.testing.assert_close(block.grad, grads["mean"][f"blocks.5.{path[5]}.project.conv.weight"])
    supernet.train()
    with pytest.raises(TrainError, match="shared_grad=sum"):  # a checkpoint resumes only with its own rule
        FairStep(shared_grad="mean").load_state_dict(FairStep(shared_grad="sum").state_dict())


def test_subnet_is_a_specnet_holding_the_shared_weights(supernet, tmp_path):
    supernet.eval()
    x = torch.randn(3, 3, 32, 32)
    rng = np.random.default_rng(0)
    for choices in [specs.PUBLISHED_CHOICES["moga_a"], rng.integers(0, 12, 14).tolist()]:
        before = {k: v.clone() for k, v in supernet.state_dict().items()}
        sub = supernet.subnet(choices)
        assert all(torch.equal(v, before[k]) for k, v in supernet.state_dict().items())  # not re-initialised
        assert isinstance(sub, moga_zoo.SpecNet) and specs.to_choices(sub.spec) == list(choices)
        assert sub.spec == specs.for_cifar10(specs.from_choices(list(choices), name="moga_path"))
        with torch.no_grad():
            assert torch.equal(sub.eval()(x), supernet(x, choices))
        block = supernet.blocks[5][choices[5]]
        assert sub.features[2 + 5].project.conv.weight is block.project.conv.weight  # shared, not copied
        # a stand-alone network of the same spec loads the subnet's state dict and agrees
        path = tmp_path / "sub.safetensors"
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in sub.state_dict().items()}, str(path))
        alone = moga_zoo.create_model(sub.spec, weights=str(path)).eval()
        with torch.no_grad():
            assert torch.allclose(alone(x), supernet(x, choices), atol=1e-5)


def test_bn_recalibration_is_the_exact_average(supernet):
    sub = supernet.subnet(specs.PUBLISHED_CHOICES["moga_c"])
    data = synthetic_set(64)
    batches = list(eval_batches(data, CIFAR10_PREPROCESS, 16))
    n = recalibrate(sub, batches)
    assert n == 64 and not sub.training
    stem = sub.features[0]
    with torch.no_grad():
        outs = [stem.conv(b.x) for b in batches]
    want_mean = torch.stack([o.mean((0, 2, 3)) for o in outs]).mean(0)
    assert torch.allclose(stem.bn.running_mean, want_mean, atol=1e-5)
    assert stem.bn.momentum == 0.1  # restored


SUPER_ARGS = ["--epochs", "2", "--batch-size", "16", "--val-size", "20", "--threads", "1", "--workers", "1",
              "--json"]


def _cli(*args):
    return [sys.executable, "-m", "moga_zoo", *args]


def test_supernet_training_resumes_bit_identically_after_kill_9(tmp_path):
    data = write_cifar_binary(tmp_path / "data", n_train=70)  # 50 training images: 3 fair steps an epoch
    ref = tmp_path / "ref"
    out = subprocess.run(_cli("search", "train-supernet", "--cifar10", str(data), "--out", str(ref), *SUPER_ARGS),
                         env=_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["block_updates"] == {"min": 6, "max": 6}  # 2 epochs x 3 steps, every block once a step
    run = tmp_path / "run"
    p = subprocess.Popen(_cli("search", "train-supernet", "--cifar10", str(data), "--out", str(run),
                              "--checkpoint-steps", "1", *SUPER_ARGS), env=_env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    step = kill_9_at_step(p, run / "checkpoint.pt", 4)
    assert 4 <= step < 6, step
    out = subprocess.run(_cli("search", "train-supernet", "--cifar10", str(data), "--out", str(run), "--resume",
                              *SUPER_ARGS), env=_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    a, b = load_file(str(ref / "supernet.safetensors")), load_file(str(run / "supernet.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads(out.stdout)["block_updates"] == {"min": 6, "max": 6}


def test_supernet_two_processes_equal_one(tmp_path):
    data = write_cifar_binary(tmp_path / "data", n_train=52)  # 32 training images: 2 fair steps
    args = ["--epochs", "1", "--batch-size", "16", "--val-size", "20", "--threads", "1", "--workers", "1"]
    one = subprocess.run(_cli("search", "train-supernet", "--cifar10", str(data), "--out", str(tmp_path / "one"),
                              "--micro-batches", "2", *args), env=_env(), capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr",
                          "127.0.0.1", "--master-port", str(_free_port()), "-m", "moga_zoo", "search",
                          "train-supernet", "--cifar10", str(data), "--out", str(tmp_path / "two"), *args],
                         env=_env(), capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    a = load_file(str(tmp_path / "one" / "supernet.safetensors"))
    b = load_file(str(tmp_path / "two" / "supernet.safetensors"))
    compared = 0
    for k in a:
        if "running" in k or "num_batches" in k:
            continue
        assert torch.allclose(a[k], b[k], atol=1e-6, rtol=0), (k, (a[k] - b[k]).abs().max())
        compared += 1
    assert compared > 1000


def test_pipeline_end_to_end_on_tiny_data(tmp_path):
    data = write_cifar_binary(tmp_path / "data", n_train=60, by_class=True)
    out = tmp_path / "pipe"
    args = ["search", "run", "--cifar10", str(data), "--table", str(TABLE), "--out", str(out), "--epochs", "1",
            "--batch-size", "16", "--val-size", "20", "--val-images", "20", "--bn-images", "32", "--pop", "6",
            "--generations", "2", "--k", "2", "--threads", "1", "--workers", "1", "--json"]
    res = subprocess.run(_cli(*args), env=_env(), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    state = json.loads(res.stdout)
    assert all(s["complete"] and s["seconds"] > 0 for s in state["stages"].values())
    front = json.loads((out / "search" / "front.json").read_text())
    assert front["accuracy"]["source"].startswith("supernet:") and front["evaluated"] == 12
    assert len(front["picked"]) == 2
    for name in front["picked"]:
        m = moga_zoo.create_model(out / "search" / name)
        assert m.spec.input_size == 32 and m.num_classes == 10
    again = subprocess.run(_cli(*args[:-1], "--resume"), env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "already complete" in again.stderr
    assert "stage evolve: complete" in again.stdout and "moga_c (reference)" in again.stdout
    wrong = subprocess.run(_cli("search", "evolve", "--table", str(TABLE), "--accuracy", f"supernet:{out / 'supernet'}",
                                "--out", str(tmp_path / "wrong"), "--form", "imagenet", "--bn-images", "32"),
                           env=_env(), capture_output=True, text=True, timeout=300)
    assert wrong.returncode == 2 and "cifar10 form" in wrong.stderr and "Traceback" not in wrong.stderr
    # the ranking study: stand-alone runs first (they need only supernet.json), then both scores
    rank = [sys.executable, str(ROOT / "benchmarks" / "bench_ranking.py"), "--supernet", str(out / "supernet"),
            "--cifar10", str(data), "--table", str(TABLE), "--out", str(tmp_path / "rank"), "--archs", "4",
            "--epochs", "1", "--batch-size", "16", "--val-images", "20", "--bn-images", "32", "--threads", "1"]
    first = subprocess.run(rank + ["--train-only"], env=_env(), capture_output=True, text=True, timeout=300)
    assert first.returncode == 0 and "4 stand-alone runs trained" in first.stderr, first.stderr[-2000:]
    assert len(list((tmp_path / "rank").glob("*/result.json"))) == 4 and not (tmp_path / "rank" / "ranking.json").exists()
    second = subprocess.run(rank, env=_env(), capture_output=True, text=True, timeout=300)
    assert second.returncode == 0 and "training" not in second.stderr, second.stderr[-2000:]
    study = json.loads((tmp_path / "rank" / "ranking.json").read_text())
    assert [r["name"] for r in study["architectures"]][:3] == ["moga_a", "moga_b", "moga_c"]
    assert study["kendall"]["n"] == 4 and (tmp_path / "rank" / "ranking.png").is_file()
    assert not (tmp_path / "wrong").exists()
    from moga_zoo.search.nsga import SearchError
    from moga_zoo.search.score import SupernetAccuracy
    assert Path(json.loads((out / "supernet" / "supernet.json").read_text())["data"]).is_absolute()
    other = write_cifar_binary(tmp_path / "other", n_train=60, seed=1)  # same size, other images
    with pytest.raises(SearchError, match="held-out images the supernet"):
        SupernetAccuracy(out / "supernet", bn_images=32, data=other)
    with pytest.raises(SearchError, match="is not there"):
        SupernetAccuracy(out / "supernet", bn_images=32, data=tmp_path / "moved")
    # images stored class by class: the scored and BN images are still spread over every class
    acc = SupernetAccuracy(out / "supernet", val_images=10, bn_images=20)
    assert np.bincount(acc.val.labels, minlength=10).tolist() == [1] * 10
    assert np.bincount(acc.bn.labels, minlength=10).tolist() == [2] * 10
