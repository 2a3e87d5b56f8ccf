"""Samplers a search can use (registry `SAMPLERS`), and the surrogate pre-screening for Optuna's NSGA-II.

`nsga2` is Optuna's NSGAIISampler. With `search.surrogate.enabled` its public `child_generation_strategy` hook
is `SurrogateChildren`: per generation it breeds `population / keep_fraction` candidate children (binary
tournament on rank and crowding, uniform crossover, random-reset mutation, as NSGA-II does), fits one regressor
per objective on the finished trials, ranks the candidates by predicted non-domination rank then crowding
distance, and hands out the best one whose genes no trial has yet. The ranking depends only on (seed, parents),
so workers sharing a study compute the same list and take its entries in order.
Only Optuna's public API is used, so the range in pyproject.toml is the range the tests run on.
"""
from __future__ import annotations

import hashlib
import math
import os
import warnings
from typing import Any, Callable

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from vaelab.search.space import SAMPLERS, SearchSpace, distributions, encode_genes
from vaelab.search.storage import host_id
from vaelab.search.surrogate import Surrogate, crowding_distance, non_domination_rank, rank_candidates, to_minimise
from vaelab.search.trials import genes_key

SamplerFactory = Callable[[SearchSpace, int], optuna.samplers.BaseSampler]
PREDICTED_ATTR = "predicted"


def _quiet(factory: Callable[[], optuna.samplers.BaseSampler]) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():  # options Optuna marks experimental (multivariate, child_generation_strategy)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return factory()


@SAMPLERS.register("nsga2", doc="Optuna's NSGA-II; with search.surrogate.enabled, children pre-screened by a surrogate")
def _nsga2(space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    s = space.search
    children = SurrogateChildren(space, seed=seed) if s.surrogate.enabled else None
    sampler = _quiet(lambda: optuna.samplers.NSGAIISampler(
        population_size=s.population, crossover_prob=s.crossover_prob, mutation_prob=s.mutation_prob, seed=seed,
        child_generation_strategy=children))
    sampler.vaelab_children = children  # the runner reads the predicted objectives of each child from here
    return sampler


@SAMPLERS.register("tpe", doc="Optuna's multivariate TPE (multi-objective), first `population` trials random")
def _tpe(space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    return _quiet(lambda: optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=space.search.population))


@SAMPLERS.register("gp", doc="Optuna's GPSampler (log expected hypervolume improvement), first `population` trials random")
def _gp(space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    return _quiet(lambda: optuna.samplers.GPSampler(seed=seed, n_startup_trials=space.search.population))


@SAMPLERS.register("random", doc="independent uniform draws (log-uniform for log genes)")
def _random(space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


def make_sampler(space: SearchSpace, *, existing: int = 0, worker: bool = False) -> optuna.samplers.BaseSampler:
    """The sampler of `space.search.sampler`, seeded so that a re-run (`existing` trials in the study) or another
    worker continues with fresh draws instead of repeating the first run's."""
    return SAMPLERS.get(space.search.sampler)(space, stream_seed(space.search.seed, existing, worker))


def stream_seed(seed: int, existing: int, worker: bool) -> int:
    """`seed` itself for a fresh search; else a seed drawn from (seed, trials so far, this worker)."""
    if existing == 0 and not worker:
        return seed
    who = f"{host_id()}:{os.getpid()}" if worker else ""
    return int.from_bytes(hashlib.sha256(f"{seed}:{existing}:{who}".encode()).digest()[:4], "little")


# ------------------------------------------------------------------ surrogate pre-screening
class SurrogateChildren:
    """`child_generation_strategy` for NSGAIISampler: pre-screen bred candidates with a surrogate."""

    def __init__(self, space: SearchSpace, *, seed: int):
        s = space.search
        self.space, self.seed = space, s.seed  # the ranking uses the search's seed: equal in every worker
        self.directions, self.population = space.directions(), s.population
        self.crossover_prob, self.mutation_prob = s.crossover_prob, s.mutation_prob
        self.keep_fraction, self.model = s.surrogate.keep_fraction, s.surrogate.model
        self.min_trials = s.surrogate.min_trials or s.population
        self.rng = np.random.RandomState(seed % 2**32)  # plain children before the surrogate has data
        self._ranked: dict[str, list[tuple[dict[str, Any], list[float]]]] = {}
        self.predictions: dict[str, dict[str, float]] = {}  # genes_key -> predicted objectives by label
        # genes -> values of the objectives that need no training ({index: value}), None when the genes give no model;
        # set by the runner (it has the data); without it every objective is predicted
        self.measure: Callable[[dict[str, Any]], dict[int, float] | None] | None = None

    def __call__(self, study: optuna.Study, search_space: dict[str, Any], parents: list[FrozenTrial]) -> dict[str, Any]:
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values is not None]
        if len(done) < self.min_trials:
            return breed(parents, search_space, self.directions, self.rng, self.crossover_prob, self.mutation_prob)
        key = ",".join(str(t.number) for t in sorted(parents, key=lambda t: t.number))
        if key not in self._ranked:
            self._ranked[key] = self._rank(parents, search_space, done, key)
        seen = {genes_key(t.params) for t in study.get_trials(deepcopy=False) if t.params}
        for params, predicted in self._ranked[key]:
            k = genes_key(params)
            if k not in seen:
                self.predictions[k] = dict(zip(self.space.labels(), predicted))
                return dict(params)
        return breed(parents, search_space, self.directions, self.rng, self.crossover_prob, self.mutation_prob)

    def _rank(self, parents, dists, done, key: str) -> list[tuple[dict[str, Any], list[float]]]:
        rng = np.random.RandomState(int.from_bytes(hashlib.sha256(f"{self.seed}:{key}".encode()).digest()[:4], "little"))
        seen = {genes_key(t.params) for t in done}
        n = max(self.population, math.ceil(self.population / self.keep_fraction))
        candidates: dict[str, dict[str, Any]] = {}
        for _ in range(n * 20):  # small spaces run out of new children: stop after a bounded number of tries
            if len(candidates) >= n:
                break
            child = breed(parents, dists, self.directions, rng, self.crossover_prob, self.mutation_prob)
            if genes_key(child) not in seen:
                candidates.setdefault(genes_key(child), child)
        if not candidates:
            return []
        pool, exact = list(candidates.values()), [{} for _ in candidates]
        if self.measure is not None:  # measure what needs no training; genes that give no model never get proposed
            measured = [self.measure(c) for c in pool]
            pool, exact = [c for c, m in zip(pool, measured) if m is not None], [m for m in measured if m is not None]
            if not pool:
                return []
        known = sorted(exact[0])  # indices of measured objectives: the same for every candidate
        features = np.array([self._features(t.params, {i: t.values[i] for i in known}) for t in done])
        values = np.array([t.values for t in done], dtype=float)
        surrogate = Surrogate(self.model, seed=self.seed).fit(features, values)
        predicted = surrogate.predict(np.array([self._features(c, m) for c, m in zip(pool, exact)]))
        for row, m in zip(predicted, exact):
            for i, v in m.items():
                row[i] = v
        order = rank_candidates(to_minimise(predicted, self.directions))
        return [(pool[i], [float(v) for v in predicted[i]]) for i in order]

    def _features(self, genes: dict[str, Any], measured: dict[int, float]) -> list[float]:
        """Gene features plus log10 of each measured objective (the parameter count tells a lot about the NLL)."""
        return encode_genes(self.space, genes) + [math.log10(max(abs(v), 1e-12)) for _, v in sorted(measured.items())]


def breed(parents: list[FrozenTrial], dists: dict[str, Any], directions: list[str], rng: np.random.RandomState,
          crossover_prob: float, mutation_prob: float | None) -> dict[str, Any]:
    """One NSGA-II child with every gene set: tournament, uniform crossover, each gene redrawn with mutation_prob
    (default 1 / number of genes)."""
    values = to_minimise(np.array([t.values for t in parents], dtype=float), directions)
    rank = non_domination_rank(values)
    crowd = np.zeros(len(parents))
    for r in np.unique(rank):
        members = np.flatnonzero(rank == r)
        crowd[members] = crowding_distance(values[members])

    def pick() -> FrozenTrial:
        i, j = rng.randint(len(parents), size=2)
        return parents[i] if (rank[i], -crowd[i]) <= (rank[j], -crowd[j]) else parents[j]

    a = pick()
    b = pick() if rng.rand() < crossover_prob else a
    child = {n: (a if rng.rand() < 0.5 else b).params.get(n) for n in dists}
    p = mutation_prob if mutation_prob is not None else 1.0 / max(1, len(dists))
    for name, d in dists.items():
        if child[name] is None or rng.rand() < p:
            child[name] = draw(d, rng)
    return child


def draw(d, rng: np.random.RandomState) -> Any:
    """One uniform draw from an Optuna distribution (log-uniform where log)."""
    if isinstance(d, optuna.distributions.CategoricalDistribution):
        return d.choices[rng.randint(len(d.choices))]
    if isinstance(d, optuna.distributions.IntDistribution):
        if d.log:
            return int(min(d.high, max(d.low, math.floor(math.exp(rng.uniform(math.log(d.low), math.log(d.high + 1)))))))
        return int(d.low + d.step * rng.randint((d.high - d.low) // d.step + 1))
    if d.log:
        return float(math.exp(rng.uniform(math.log(d.low), math.log(d.high))))
    return float(rng.uniform(d.low, d.high))


def predicted_for(sampler: optuna.samplers.BaseSampler, params: dict[str, Any]) -> dict[str, float] | None:
    children = getattr(sampler, "vaelab_children", None)
    return children.predictions.pop(genes_key(params), None) if children is not None else None


def trial_generation(trial: FrozenTrial, population: int) -> int:
    """Generation of a trial: the GA sampler's attribute, else consecutive blocks of `population` trials."""
    for k, v in trial.system_attrs.items():
        if k.endswith(":generation"):
            return int(v)
    return trial.number // population


__all__ = ["SAMPLERS", "PREDICTED_ATTR", "SurrogateChildren", "make_sampler", "breed", "trial_generation", "distributions"]
