"""Weighted NSGA-II: Eq. 5 against pymoo, determinism, resume, search quality, MoGA objectives."""
import itertools
import json
import multiprocessing
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymoo", reason="the search needs pip install 'moga-zoo[search]'")

from pymoo.operators.survival.rank_and_crowding.metrics import get_crowding_function  # noqa: E402
from pymoo.parallelization.starmap import StarmapParallelization  # noqa: E402

import moga_zoo  # noqa: E402
from moga_zoo import specs  # noqa: E402
from moga_zoo.latency.table import LatencyTable  # noqa: E402
from moga_zoo.search.nsga import (SearchError, hypervolume, non_dominated, nsga2,  # noqa: E402
                                  pick_along_front, weighted_crowding)
from moga_zoo.search.objectives import CsvAccuracy, MogaObjectives, ProxyAccuracy, SpaceCosts  # noqa: E402
from moga_zoo.sizes import count  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "benchmarks" / "results" / "lut_ort_1t.json"


@pytest.fixture(scope="module")
def costs():
    return SpaceCosts.build(LatencyTable.load(TABLE))


def _additive(seed=0, n_obj=3):
    rng = np.random.default_rng(seed)
    tabs = rng.random((n_obj, 14, 12))

    def evaluate(X):
        r = np.arange(X.shape[1])
        return np.stack([t[r, X].sum(1) for t in tabs[:, :X.shape[1]]], 1)
    return evaluate


@pytest.mark.parametrize("n", [3, 7, 40])
@pytest.mark.parametrize("m", [2, 3])
def test_equal_weights_are_pymoos_crowding_to_the_bit(n, m):
    rng = np.random.default_rng(n * m)
    F = rng.random((n, m))
    F[1] = F[0]  # a duplicate
    F[2, 0] = F[3 % n, 0]  # a tie in one objective
    ours = weighted_crowding([1 / m] * m).do(F)
    theirs = get_crowding_function("cd").do(F)
    assert np.array_equal(ours, theirs)


def test_eq5_weights_each_objective():
    # three points on a line: the middle one's distance is sum_i w_i * (next - prev) / range
    F = np.array([[0.0, 10.0, 5.0], [1.0, 4.0, 1.0], [2.0, 0.0, 0.0], [4.0, -2.0, 3.0]])
    w = [0.4, 0.4, 0.2]
    d = weighted_crowding(w).do(F)
    rng = F.max(0) - F.min(0)
    # point 1: neighbours in objective 0 are points 0 and 2; in objective 1 points 2 and 0; objective 2 points 2 and 3
    expect = 0.4 * (2 - 0) / rng[0] + 0.4 * (10 - 0) / rng[1] + 0.2 * (3 - 0) / rng[2]
    assert d[1] == pytest.approx(expect)
    assert np.isinf(d[[0, 2, 3]]).all()  # each is a boundary point of some objective
    with pytest.raises(SearchError, match="sum to 1"):
        weighted_crowding([0.5, 0.6])


def test_same_seed_same_result_and_complete_history():
    ev = _additive()
    a = nsga2(ev, 14, 12, weights=[0.4, 0.4, 0.2], pop_size=20, generations=15, seed=3, progress=False)
    b = nsga2(ev, 14, 12, weights=[0.4, 0.4, 0.2], pop_size=20, generations=15, seed=3, progress=False)
    c = nsga2(ev, 14, 12, weights=[0.4, 0.4, 0.2], pop_size=20, generations=15, seed=4, progress=False)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.F, b.F)
    assert not np.array_equal(a.history_X, c.history_X)
    assert np.allclose(a.history_F, ev(a.history_X))  # every evaluation recorded, in order
    assert set(a.history_gen.tolist()) == set(range(15)) and (np.diff(a.history_gen) >= 0).all()
    # the final set is the non-dominated set of everything evaluated
    nd = non_dominated(a.history_F)
    assert {x.tobytes() for x in a.X} == {x.tobytes() for x in a.history_X[nd]}


def test_resume_after_a_crash_equals_the_uninterrupted_run(tmp_path):
    ev = _additive(1)
    kw = dict(weights=[0.4, 0.4, 0.2], pop_size=20, generations=12, seed=0, progress=False)
    full = nsga2(ev, 14, 12, **kw)

    def crash(gen, X, F):
        if gen == 5:
            raise RuntimeError("power cut")
    ckpt = tmp_path / "search.ckpt"
    with pytest.raises(RuntimeError):
        nsga2(ev, 14, 12, checkpoint=ckpt, on_generation=crash, **kw)
    resumed = nsga2(ev, 14, 12, checkpoint=ckpt, resume=True, **kw)
    assert np.array_equal(full.X, resumed.X) and np.array_equal(full.history_X, resumed.history_X)
    with pytest.raises(SearchError, match="another pop_size"):
        nsga2(ev, 14, 12, checkpoint=ckpt, resume=True, **{**kw, "pop_size": 30})


def test_cli_killed_with_sigkill_resumes_to_the_same_front(tmp_path):
    args = [sys.executable, "-m", "moga_zoo", "search", "evolve", "--table", str(TABLE), "--accuracy", "proxy",
            "--pop", "30", "--generations", "150", "--json"]
    ref = subprocess.run(args + ["--out", str(tmp_path / "ref")], capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr
    run = tmp_path / "run"
    p = subprocess.Popen(args + ["--out", str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    gens = 0
    while time.time() < deadline and p.poll() is None:
        try:
            gens = len(pickle.loads((run / "search.ckpt").read_bytes())["hist_gen"])
        except (OSError, EOFError, pickle.UnpicklingError, KeyError):
            pass
        if gens >= 20:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert 20 <= gens < 150, "the search should have been killed mid-way"
    assert not (run / "front.json").exists()
    killed_seconds = pickle.loads((run / "search.ckpt").read_bytes())["seconds"]
    (run / ".search.ckpt.stale.part").write_bytes(b"half a checkpoint")  # as a kill inside a write leaves
    out = subprocess.run(args + ["--out", str(run), "--resume"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert not list(run.glob("*.part"))
    a, b = json.loads(out.stdout), json.loads(ref.stdout)
    assert a["front"] == b["front"] and a["evaluated"] == b["evaluated"] == 30 * 150
    assert a["seconds"] > killed_seconds > 0  # the killed process's search time is still counted


def _small_space(costs, genes=5):
    """Layers 1..genes searched (12^5 = 248,832 architectures), the rest fixed to MoGA-C's."""
    obj = MogaObjectives(ProxyAccuracy(costs), costs)
    base = np.array(specs.PUBLISHED_CHOICES["moga_c"])

    def evaluate(Xs):
        X = np.tile(base, (len(Xs), 1))
        X[:, :genes] = Xs
        return obj(X)
    return evaluate


def test_search_reaches_the_exhaustive_front_on_an_enumerable_space(costs):
    evaluate = _small_space(costs)
    allX = np.array(list(itertools.product(range(12), repeat=5)))
    assert len(allX) >= 50_000
    F = evaluate(allX)
    front = F[non_dominated(F)]
    ideal, nadir = front.min(0), front.max(0)
    best = hypervolume(front, ideal, nadir)
    ratios = []
    for seed in range(3):
        r = nsga2(evaluate, 5, 12, weights=[0.4, 0.4, 0.2], pop_size=70, generations=120, seed=seed, progress=False)
        ratios.append(hypervolume(r.F, ideal, nadir) / best)
    assert np.mean(ratios) >= 0.95, ratios


def _evaluate_in_worker(X):
    return _additive(2)(X)


def test_two_worker_processes_give_the_result_of_one():
    kw = dict(weights=[0.4, 0.4, 0.2], pop_size=16, generations=6, seed=0, progress=False)
    one = nsga2(_evaluate_in_worker, 14, 12, **kw)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        two = nsga2(_evaluate_in_worker, 14, 12, runner=StarmapParallelization(pool.starmap), **kw)
    assert np.array_equal(one.history_X, two.history_X) and np.allclose(one.history_F, two.history_F)


def test_space_costs_agree_with_the_table_and_the_counter(costs):
    table = LatencyTable.load(TABLE)
    rng = np.random.default_rng(0)
    X = np.vstack([rng.integers(0, 12, (20, 14)), [specs.PUBLISHED_CHOICES[n] for n in ("moga_a", "moga_b", "moga_c")]])
    for x, lat, par, mac in zip(X, costs.latency(X), costs.parameters(X), costs.mac_count(X)):
        spec = specs.from_choices(x.tolist())
        assert lat == pytest.approx(table.predict(spec), rel=1e-12)
        assert (par, mac) == count(spec)


def test_objectives_direction_and_csv_source(tmp_path, costs):
    X = np.array([specs.PUBLISHED_CHOICES[n] for n in ("moga_a", "moga_c")])
    csv_path = tmp_path / "acc.csv"
    csv_path.write_text("choices,top1\n" + "\n".join(f"{' '.join(map(str, x))},{a}" for x, a in zip(X, (80.5, 79.0))))
    obj = MogaObjectives(CsvAccuracy(csv_path), costs)
    F = obj(X)
    assert F[:, 0].tolist() == [-80.5, -79.0]
    assert F[0, 2] == -5.159802  # the paper maximises params: minimised as their negative
    assert MogaObjectives(CsvAccuracy(csv_path), costs, params="min")(X)[0, 2] == 5.159802
    with pytest.raises(SearchError, match="no accuracy for choices 0 0 0"):
        obj(np.zeros((1, 14), int))
    bad = tmp_path / "bad.csv"
    bad.write_text("choices,top1\n1 2 3,50\n")
    with pytest.raises(SearchError, match="line 2"):
        CsvAccuracy(bad)


def test_pick_along_front_spreads_over_latency():
    F = np.stack([-np.linspace(70, 80, 21), np.linspace(2, 6, 21)], 1)
    picked = pick_along_front(F, 5, axis=1)
    assert F[picked, 1].tolist() == pytest.approx([2, 3, 4, 5, 6])
    assert pick_along_front(F[:2], 5) == [0, 1]


def test_evolve_writes_specs_the_rest_of_the_package_uses(tmp_path):
    from moga_zoo.search.evolve import evolve

    out = tmp_path / "ev"
    summary = evolve(table=TABLE, accuracy="proxy", out=out, pop_size=20, generations=8, k=3, progress=False)
    assert len(summary["picked"]) == 3 and summary["complete"]
    for name in summary["picked"]:
        model = moga_zoo.create_model(out / name)
        row = next(r for r in summary["front"] if r["picked"] == name)
        choices = [int(v) for v in row["choices"].split()]
        assert specs.to_choices(model.spec) == choices
        assert LatencyTable.load(TABLE).predict(model.spec) == pytest.approx(row["latency_ms"], abs=1e-4)
    lines = (out / "evaluated.csv").read_text().splitlines()
    assert len(lines) == 1 + 20 * 8
    assert {"front.png", "params_hist.png", "front.json"} <= {p.name for p in out.iterdir()}
    refs = summary["references"]
    assert refs["moga_a"]["latency_ms"] > refs["moga_c"]["latency_ms"]
    evaluated = {line.split(",")[1] for line in lines[1:]}
    assert any(r["matched_by"] for r in refs.values())  # the proxy's search beats MoGA-B/C in 8 generations
    for name, r in refs.items():
        m = r["matched_by"]
        if m is None:
            continue
        assert m["top1"] >= r["top1"] and m["latency_ms"] <= r["latency_ms"] and m["choices"] in evaluated
        model = moga_zoo.create_model(out / m["spec"])
        assert specs.to_choices(model.spec) == [int(v) for v in m["choices"].split()]
        assert LatencyTable.load(TABLE).predict(model.spec) == pytest.approx(m["latency_ms"], abs=1e-4)
    assert summary["table"]["sha256"] and summary["accuracy"]["source"].startswith("proxy")
    with pytest.raises(SearchError, match="already holds a search"):
        evolve(table=TABLE, accuracy="proxy", out=out, pop_size=20, generations=8, progress=False)
