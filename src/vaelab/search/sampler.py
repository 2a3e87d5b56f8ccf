"""Optuna's NSGAIISampler with surrogate pre-screening plugged into its child-generation hook.

Per generation, the hook builds `population / keep_fraction` candidate children with NSGA-II's own uniform
crossover and mutation (a mutated gene is redrawn at random, as NSGAIISampler does without a `mutation`),
fits one regressor per objective on the finished trials, and keeps the `population` candidates ranked best by
predicted non-domination rank, then crowding distance. The batch depends only on (seed, generation, finished
trials), so workers that share a study compute the same batch and take its entries by trial number.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import warnings

import optuna
from optuna.samplers import NSGAIISampler
from optuna.samplers._lazy_random_state import LazyRandomState
from optuna.samplers.nsgaii import UniformCrossover
from optuna.samplers.nsgaii._child_generation_strategy import NSGAIIChildGenerationStrategy
from optuna.trial import FrozenTrial, TrialState

from vaelab.search.space import SearchSpace, distributions, encode_genes
from vaelab.search.surrogate import Surrogate, select

GENERATION_ATTR = "generation"
PREDICTED_ATTR = "predicted"


class SurrogateChildGeneration:
    """`child_generation_strategy` for NSGAIISampler: pre-screen candidates with a surrogate, train the best."""

    def __init__(self, space: SearchSpace, *, seed: int, swapping_prob: float = 0.5):
        s = space.search
        self.space, self.seed, self.swapping_prob = space, seed, swapping_prob
        self.directions = space.directions()
        self.population = s.population
        self.keep_fraction = s.surrogate.keep_fraction
        self.min_trials = s.surrogate.min_trials or s.population
        self.enabled = s.surrogate.enabled
        self.model = s.surrogate.model
        self.plain = self._strategy(LazyRandomState(seed))
        self.current: tuple[FrozenTrial, int] | None = None  # set by the sampler before each call
        self._batches: dict[int, list[tuple[dict[str, Any], list[float]]]] = {}
        self.predictions: dict[int, dict[str, float]] = {}  # trial number -> predicted objectives

    def _strategy(self, rng: LazyRandomState) -> NSGAIIChildGenerationStrategy:
        s = self.space.search
        return NSGAIIChildGenerationStrategy(crossover=UniformCrossover(self.swapping_prob), crossover_prob=s.crossover_prob,
                                             mutation=None, mutation_prob=s.mutation_prob, swapping_prob=self.swapping_prob,
                                             rng=rng)

    def __call__(self, study: optuna.Study, search_space: dict[str, Any], parent_population: list[FrozenTrial]) -> dict[str, Any]:
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values is not None]
        if not self.enabled or self.current is None or len(done) < self.min_trials:
            return self.plain(study, search_space, parent_population)
        trial, generation = self.current
        batch = self._batches.get(generation)
        if batch is None:
            batch = self._batches[generation] = self._make_batch(study, parent_population, done, generation)
        gen_key = study.sampler._get_generation_key()
        index = sum(1 for t in study.get_trials(deepcopy=False)
                    if t.system_attrs.get(gen_key) == generation and t.number < trial.number) % len(batch)
        params, predicted = batch[index]
        self.predictions[trial.number] = dict(zip(self.space.labels(), predicted))
        return dict(params)

    def _make_batch(self, study, parents, done, generation) -> list[tuple[dict[str, Any], list[float]]]:
        dists = distributions(self.space)
        gen_seed = (self.seed * 1_000_003 + generation) % (2**32)
        strategy = self._strategy(LazyRandomState(gen_seed))
        fill = np.random.RandomState(gen_seed + 1)
        seen = {_key(t.params) for t in study.get_trials(deepcopy=False) if t.params}
        n_candidates = max(self.population, math.ceil(self.population / self.keep_fraction))
        candidates: list[dict[str, Any]] = []
        for _ in range(n_candidates * 20):
            if len(candidates) >= n_candidates:
                break
            child = strategy(study, dists, parents)
            for name, d in dists.items():  # mutated genes come back missing: redraw them, as NSGAIISampler does
                if name not in child:
                    child[name] = _draw(d, fill)
            k = _key(child)
            if k not in seen:
                seen.add(k)
                candidates.append(child)
        if not candidates:  # the space is exhausted: fall back to plain children
            return [({n: _draw(d, fill) for n, d in dists.items()}, [math.nan] * len(self.directions))]
        features = np.array([encode_genes(self.space, t.params) for t in done])
        values = np.array([t.values for t in done], dtype=float)
        surrogate = Surrogate(self.model, seed=self.seed).fit(features, values)
        cand = np.array([encode_genes(self.space, c) for c in candidates])
        keep = min(len(candidates), self.population)
        order, pred = select(surrogate, cand, self.directions, keep)
        return [(candidates[i], [float(v) for v in p]) for i, p in zip(order, pred)]


def _key(params: dict[str, Any]) -> str:
    return repr(sorted(params.items()))


def _draw(d, rng: np.random.RandomState) -> Any:
    if isinstance(d, optuna.distributions.CategoricalDistribution):
        return d.choices[rng.randint(len(d.choices))]
    if isinstance(d, optuna.distributions.IntDistribution):
        if d.log:
            return int(min(d.high, max(d.low, round(math.exp(rng.uniform(math.log(d.low), math.log(d.high + 1)) - 0.5)))))
        return int(d.low + d.step * rng.randint((d.high - d.low) // d.step + 1))
    if d.log:
        return float(math.exp(rng.uniform(math.log(d.low), math.log(d.high))))
    return float(rng.uniform(d.low, d.high))


class SurrogateNSGAIISampler(NSGAIISampler):
    """NSGAIISampler that tells its child-generation hook which trial and generation it is sampling for."""

    def __init__(self, space: SearchSpace, *, seed: int, worker_seed: int | None = None):
        self.surrogate_hook = SurrogateChildGeneration(space, seed=seed)
        s = space.search
        with warnings.catch_warnings():  # the hook is marked experimental; its interface is pinned by our tests
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__init__(population_size=s.population, crossover_prob=s.crossover_prob, mutation_prob=s.mutation_prob,
                             seed=seed if worker_seed is None else worker_seed, child_generation_strategy=self.surrogate_hook)

    def sample_relative(self, study, trial, search_space):
        self.surrogate_hook.current = (trial, self.get_trial_generation(study, trial))
        try:
            return super().sample_relative(study, trial, search_space)
        finally:
            self.surrogate_hook.current = None


def make_sampler(space: SearchSpace, *, worker_seed: int | None = None) -> optuna.samplers.BaseSampler:
    """The sampler of `space.search.sampler`: surrogate-assisted (or plain, surrogate.enabled false) NSGA-II, or random."""
    s = space.search
    if s.sampler == "random":
        return optuna.samplers.RandomSampler(seed=s.seed if worker_seed is None else worker_seed)
    return SurrogateNSGAIISampler(space, seed=s.seed, worker_seed=worker_seed)


def trial_generation(trial: FrozenTrial, population: int) -> int:
    """Generation of a trial: the GA sampler's attribute, else consecutive blocks of `population` trials."""
    for k, v in trial.system_attrs.items():
        if k.endswith(":generation"):
            return int(v)
    return trial.number // population
