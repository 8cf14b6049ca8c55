"""Weighted NSGA-II (MoGA, Eq. 5) on pymoo, over integer choice vectors.

pymoo does the non-dominated sorting, survival, tournament, crossover, duplicate elimination and
hypervolume; this module adds what MoGA changes: the crowding distance weighted per objective
(which, through NSGA-II's tournament, also weights mating), the hierarchical mutation, the
ask/tell loop with per-generation checkpoints, and the pick of K models along the front.
"""
from __future__ import annotations

import io
import pickle
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..files import atomic_path, remove_stale_parts
from ..stopping import StopFlag

CHECKPOINT_FORMAT = "moga-zoo-nsga/1"


class SearchError(ValueError):
    """A search that cannot start or resume as asked; the message says what to do."""


def _pymoo():
    try:
        import pymoo  # noqa: F401
    except ImportError:
        raise SearchError("the search needs pymoo: pip install 'moga-zoo[search]'") from None


try:
    from pymoo.core.mutation import Mutation
    from pymoo.core.problem import ElementwiseProblem, Problem
    from pymoo.operators.survival.rank_and_crowding.metrics import FunctionalDiversity, calc_crowding_distance
except ImportError:  # the search extra is missing; _pymoo() says so when a search starts
    Mutation = ElementwiseProblem = Problem = FunctionalDiversity = object


# --- Eq. 5: weighted crowding distance -----------------------------------------------------

class WeightedCrowding:
    """MoGA's Eq. 5 for a front F (n x m, minimised), as a pymoo crowding function:

        D(p) = sum_i w_i * (O_i(next) - O_i(prev)) / (O_i,max - O_i,min)

    with boundary points infinite. It reuses pymoo's own per-objective distance
    (``calc_crowding_distance`` on one column), so with w_i = 1/m it is pymoo's "cd" to the bit.
    """

    def __init__(self, weights: Sequence[float]):
        w = np.asarray(weights, dtype=float)
        if w.ndim != 1 or (w < 0).any() or not np.isclose(w.sum(), 1.0):
            raise SearchError(f"crowding weights must be non-negative and sum to 1, got {list(weights)}")
        self.scale = w * len(w)  # pymoo divides the summed distances by m; w_i * m undoes that exactly

    def __call__(self, F, **kwargs):
        if F.shape[1] != len(self.scale):
            raise SearchError(f"{len(self.scale)} crowding weights for {F.shape[1]} objectives")
        per = np.stack([calc_crowding_distance(F[:, [i]]) for i in range(F.shape[1])], axis=1)
        # an objective with weight 0 must not make its boundary points infinite
        per = np.where(self.scale > 0, per * np.where(self.scale > 0, self.scale, 1.0), 0.0)
        return np.sum(per, axis=1) / F.shape[1]


def weighted_crowding(weights: Sequence[float]):
    """The crowding operator for ``RankAndCrowding``; duplicates are not zeroed, as in pymoo's "cd"."""
    _pymoo()
    return FunctionalDiversity(WeightedCrowding(weights), filter_out_duplicates=False)


# --- hierarchical mutation -------------------------------------------------------------------

class HierarchicalMutation(Mutation):
    """MoreMNAS/FairNAS-style hierarchical mutation: each offspring is mutated either by the
    guided mutator (probability ``p_guided``) or by the random one.

    Both change each gene with probability ``p_gene`` (default 1/n_genes, at least one gene).
    The random mutator draws the new choice uniformly. The guided mutator draws it by roulette
    wheel from the choice frequencies of that gene among the current population's non-dominated
    individuals (rank 0), Laplace-smoothed so every choice stays reachable: mutation is steered
    toward the building blocks the front is made of.
    """

    def __init__(self, n_choices: int, p_guided: float = 0.5, p_gene: float | None = None):
        super().__init__(prob=1.0)
        if not 0 <= p_guided <= 1:
            raise SearchError(f"p_guided must be in [0, 1], got {p_guided}")
        self.n_choices, self.p_guided, self.p_gene = n_choices, p_guided, p_gene

    def _do(self, problem, X, *args, random_state=None, algorithm=None, **kwargs):
        rng = random_state
        X = np.array(X, dtype=int)
        n, g = X.shape
        p_gene = self.p_gene if self.p_gene is not None else 1.0 / g
        mask = rng.random((n, g)) < p_gene
        mask[np.arange(n), rng.integers(0, g, n)] |= ~mask.any(1)  # at least one gene
        probs = np.full((g, self.n_choices), 1.0 / self.n_choices)
        pop = getattr(algorithm, "pop", None)
        if self.p_guided > 0 and pop is not None and len(pop):
            rank = pop.get("rank")
            front = pop.get("X")[rank == 0] if rank is not None and rank[0] is not None else pop.get("X")
            counts = np.ones((g, self.n_choices))
            for j in range(g):
                counts[j] += np.bincount(front[:, j].astype(int), minlength=self.n_choices)
            probs = counts / counts.sum(1, keepdims=True)
        guided = rng.random(n) < self.p_guided
        for i, j in zip(*np.nonzero(mask)):
            if guided[i]:
                X[i, j] = rng.choice(self.n_choices, p=probs[j])
            else:
                X[i, j] = rng.integers(0, self.n_choices)
        return X


# --- the search -------------------------------------------------------------------------------

@dataclass
class SearchResult:
    """``X``/``F``: the final non-dominated set among all evaluated models (choice vectors,
    minimised objectives); ``history``: every evaluated X and F in evaluation order, with the
    generation of each."""

    X: np.ndarray
    F: np.ndarray
    history_X: np.ndarray
    history_F: np.ndarray
    history_gen: np.ndarray
    generations: int
    interrupted: bool = False
    seconds: float = 0.0  # search time over all processes of a resumed run (checkpointed per generation)

    @property
    def history(self) -> dict:
        return {"X": self.history_X, "F": self.history_F, "generation": self.history_gen}


class _Batched(Problem):
    """One ``evaluate`` call per generation."""

    def __init__(self, evaluate, **kw):
        self.fn = evaluate
        super().__init__(**kw)

    def _evaluate(self, x, out, *args, **kwargs):
        out["F"] = np.asarray(self.fn(np.asarray(x, dtype=int)), dtype=float)


class _Elementwise(ElementwiseProblem):
    """One ``evaluate`` call per candidate, dispatched by a pymoo runner (module level, so a
    process pool can pickle it for its workers)."""

    def __init__(self, evaluate, **kw):
        self.fn = evaluate
        super().__init__(**kw)

    def _evaluate(self, x, out, *args, **kwargs):
        out["F"] = np.asarray(self.fn(np.asarray(x, dtype=int)[None]), dtype=float)[0]


def _problem(n_genes: int, n_choices: int, n_obj: int, evaluate, runner=None):
    kw = dict(n_var=n_genes, n_obj=n_obj, xl=0, xu=n_choices - 1, vtype=int)
    if runner is None:
        return _Batched(evaluate, **kw)
    return _Elementwise(evaluate, elementwise_runner=runner, **kw)


def make_algorithm(n_genes: int, n_choices: int, weights: Sequence[float], *, pop_size: int = 70,
                   p_guided: float = 0.5, p_gene: float | None = None, mutation: str = "hierarchical"):
    """pymoo's NSGA2 with MoGA's operators: weighted crowding, single-point crossover,
    hierarchical (or plain random, ``mutation="random"``) mutation, binary tournament on rank
    and crowding, duplicates eliminated by hash."""
    _pymoo()
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.duplicate import HashDuplicateElimination
    from pymoo.operators.crossover.pntx import SinglePointCrossover
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.sampling.rnd import IntegerRandomSampling
    from pymoo.operators.survival.rank_and_crowding import RankAndCrowding

    if mutation not in ("hierarchical", "random"):
        raise SearchError(f"mutation must be 'hierarchical' or 'random', got {mutation!r}")
    mut = HierarchicalMutation(n_choices, p_guided if mutation == "hierarchical" else 0.0, p_gene)
    return NSGA2(pop_size=pop_size, sampling=IntegerRandomSampling(),
                 crossover=SinglePointCrossover(prob=0.9, repair=RoundingRepair()),
                 mutation=mut, survival=RankAndCrowding(crowding_func=weighted_crowding(weights)),
                 eliminate_duplicates=HashDuplicateElimination())


def nsga2(evaluate: Callable[[np.ndarray], np.ndarray], n_genes: int, n_choices: int, *,
          weights: Sequence[float], pop_size: int = 70, generations: int = 120, seed: int = 0,
          mutation: str = "hierarchical", p_guided: float = 0.5, p_gene: float | None = None,
          checkpoint: str | Path | None = None, resume: bool = False, runner=None,
          on_generation: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
          progress: bool | None = None) -> SearchResult:
    """Weighted NSGA-II over integer vectors.

    Args:
        evaluate: (n, n_genes) int array -> (n, n_objectives) array of values to minimise.
        n_genes, n_choices: vector length and choices per gene (0..n_choices-1).
        weights: Eq. 5 crowding weight per objective (sum 1; equal weights = standard NSGA-II).
        pop_size, generations: the paper uses 70 and 120.
        seed: same seed, same result (also across a resume).
        mutation: "hierarchical" (guided + random mutators mixed by ``p_guided``) or "random".
        p_gene: per-gene mutation probability (default 1/n_genes).
        checkpoint: file written atomically after every generation.
        resume: continue from ``checkpoint``; the result equals the uninterrupted run.
        runner: pymoo elementwise runner for parallel evaluation, e.g.
            ``StarmapParallelization(pool.starmap)`` (a process pool, Ray or Dask map); None
            evaluates each generation with one ``evaluate`` call.
        on_generation: called with (generation, population X, population F) after each one.

    Returns:
        SearchResult with the final non-dominated X and F and the full evaluation history.
    """
    _pymoo()
    from pymoo.core.evaluator import Evaluator
    from pymoo.termination import get_termination
    from tqdm import tqdm

    if pop_size < 4 or generations < 1:
        raise SearchError(f"population must be >= 4 and generations >= 1, got {pop_size} and {generations}")
    problem = _problem(n_genes, n_choices, len(weights), evaluate, runner)
    config = {"n_genes": n_genes, "n_choices": n_choices, "weights": [float(w) for w in weights],
              "pop_size": pop_size, "seed": seed, "mutation": mutation, "p_guided": p_guided, "p_gene": p_gene}
    hist_X, hist_F, hist_gen, seconds = [], [], [], 0.0
    if resume:
        if checkpoint is None or not Path(checkpoint).is_file():
            raise SearchError(f"nothing to resume: checkpoint {checkpoint} does not exist")
        state = _load(Path(checkpoint))
        remove_stale_parts(Path(checkpoint).parent)
        if state["config"] != config:
            changed = [k for k in config if state["config"].get(k) != config[k]]
            raise SearchError(f"{checkpoint} was made with another {', '.join(changed)}; resume with the "
                              f"same settings or start a new run")
        algorithm = state["algorithm"]
        algorithm.problem = problem
        algorithm.evaluator = Evaluator()
        algorithm.termination = get_termination("n_gen", generations)
        hist_X, hist_F, hist_gen = state["hist_X"], state["hist_F"], state["hist_gen"]
        seconds = state.get("seconds", 0.0)
    else:
        algorithm = make_algorithm(n_genes, n_choices, weights, pop_size=pop_size, p_guided=p_guided,
                                   p_gene=p_gene, mutation=mutation)
        algorithm.setup(problem, termination=("n_gen", generations), seed=seed)
    done = len(hist_gen)
    evaluator = Evaluator()
    bar = tqdm(total=generations, initial=done, desc="NSGA-II", unit="gen", file=sys.stderr,
               disable=(not progress) if progress is not None else None)
    t0 = time.monotonic()
    with StopFlag("generation") as stop:
        while done < generations and not stop.set:
            pop = algorithm.ask()
            evaluator.eval(problem, pop)
            algorithm.tell(infills=pop)
            X, F = pop.get("X").astype(int), pop.get("F")
            hist_X.append(X)
            hist_F.append(F)
            hist_gen.append(np.full(len(X), done))
            done += 1
            if checkpoint is not None:
                _save(Path(checkpoint), {"format": CHECKPOINT_FORMAT, "config": config, "algorithm": algorithm,
                                         "hist_X": hist_X, "hist_F": hist_F, "hist_gen": hist_gen,
                                         "seconds": seconds + time.monotonic() - t0})
            bar.update(1)
            if on_generation is not None:
                on_generation(done, algorithm.pop.get("X").astype(int), algorithm.pop.get("F"))
    bar.close()
    hX = np.concatenate(hist_X) if hist_X else np.zeros((0, n_genes), int)
    hF = np.concatenate(hist_F) if hist_F else np.zeros((0, len(weights)))
    hG = np.concatenate(hist_gen) if hist_gen else np.zeros(0, int)
    # the final set: non-dominated among everything evaluated, not only the last population
    # (a point the population lost to crowding is still a measured trade-off)
    first = np.sort(np.unique(hX, axis=0, return_index=True)[1]) if len(hX) else np.zeros(0, int)
    nd = first[non_dominated(hF[first])] if len(first) else first
    nd = nd[np.lexsort(hF[nd].T[::-1])]
    return SearchResult(hX[nd], hF[nd], hX, hF, hG, done, done < generations, seconds + time.monotonic() - t0)


def _save(path: Path, state: dict) -> None:
    problem = state["algorithm"].problem
    evaluator = state["algorithm"].evaluator
    state["algorithm"].problem = None  # holds the evaluate callable (a supernet, a pool): not state
    state["algorithm"].evaluator = None
    try:
        buf = io.BytesIO()
        pickle.dump(state, buf, protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        state["algorithm"].problem, state["algorithm"].evaluator = problem, evaluator
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def _load(path: Path) -> dict:
    """Search checkpoints are pickles of pymoo's algorithm: only load files this tool wrote."""
    try:
        with open(path, "rb") as f:
            state = pickle.load(f)
    except Exception as e:
        raise SearchError(f"cannot read search checkpoint {path}: {type(e).__name__}: {e}") from e
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise SearchError(f"{path} is not a moga-zoo search checkpoint")
    return state


# --- after the search ------------------------------------------------------------------------

def pick_along_front(F: np.ndarray, k: int, axis: int = 1) -> list[int]:
    """Indices of ``k`` points at equal spacing along the front, by objective ``axis`` (latency):
    targets evenly spread between its minimum and maximum, each taking the nearest unused point."""
    if len(F) == 0:
        return []
    order = np.argsort(F[:, axis], kind="stable")
    k = min(k, len(F))
    targets = np.linspace(F[order[0], axis], F[order[-1], axis], k)
    picked = []
    for t in targets:
        free = [i for i in order if i not in picked]
        picked.append(min(free, key=lambda i: abs(F[i, axis] - t)))
    return sorted(picked, key=lambda i: F[i, axis])


def hypervolume(F: np.ndarray, ideal: np.ndarray, nadir: np.ndarray, ref: float = 1.1) -> float:
    """Hypervolume of F after min-max normalisation by ``ideal``/``nadir`` (pymoo's HV), with the
    reference point ``ref`` in every normalised objective."""
    _pymoo()
    from pymoo.indicators.hv import HV

    span = np.where(nadir > ideal, nadir - ideal, 1.0)
    Fn = (np.asarray(F, float) - ideal) / span
    return float(HV(ref_point=np.full(F.shape[1], ref))(Fn))


def non_dominated(F: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated rows of F (pymoo's sort)."""
    _pymoo()
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting
    return NonDominatedSorting().do(np.asarray(F, float), only_non_dominated_front=True)
