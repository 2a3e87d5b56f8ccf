"""Samplers a search can use (registry `SAMPLERS`), and the surrogate pre-screening for Optuna's NSGA-II.

`nsga2` is Optuna's NSGAIISampler. With `search.surrogate.enabled` its public `child_generation_strategy` hook
is `SurrogateChildren`: per generation it breeds a pool of candidate children (binary tournament on rank and
crowding, uniform crossover, random-reset mutation, as NSGA-II does; the same pool in every worker), measures
what needs no training on each untrained candidate (parameter count, latency), drops candidates that give no
model or repeat a trained config, and lets a screen (registry `SCREENS`, `search.surrogate.screen`) pick the
child: `hvi` (default) refits one regressor per objective on every finished trial before each child and takes the
candidate with the best optimistic hypervolume improvement, the running trials' predictions counting as if
finished (so concurrent workers spread out); `rank` is seed 000's once-per-generation ranking.
Only Optuna's public API is used, so the range in pyproject.toml is the range the tests run on.
"""
from __future__ import annotations

import hashlib
import math
import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from vaelab.search.objectives import OBJECTIVES
from vaelab.search.space import SAMPLERS, SCREENS, SearchSpace, distributions, encode_genes
from vaelab.search.storage import host_id
from vaelab.search.surrogate import (Surrogate, crowding_distance, non_domination_rank, rank_candidates, sms_scores,
                                     to_minimise)
from vaelab.search.trials import KEY_ATTR, genes_key

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
@dataclass
class Candidate:
    params: dict[str, Any]
    key: str  # what it would train (vaelab.search.trials.config_key), else its genes
    measured: dict[int, float]  # objectives that need no training, measured on the untrained model


class SurrogateChildren:
    """`child_generation_strategy` for NSGAIISampler: pre-screen bred candidates with a surrogate."""

    def __init__(self, space: SearchSpace, *, seed: int):
        s = space.search
        self.space, self.seed = space, s.seed  # pools and fits use the search's seed: equal in every worker
        self.directions, self.population = space.directions(), s.population
        self.crossover_prob, self.mutation_prob = s.crossover_prob, s.mutation_prob
        self.spec = s.surrogate
        self.min_trials = s.surrogate.min_trials or s.population
        self.log_scale = [OBJECTIVES.entry(o.name).meta.get("scale") == "log" for o in space.objectives]
        self.rng = np.random.RandomState(seed % 2**32)  # plain children before the surrogate has data
        self._pools: dict[tuple[str, int, float], list[Candidate]] = {}
        self._ranked: dict[str, list[tuple[Candidate, list[float]]]] = {}
        self.predictions: dict[str, dict[str, float]] = {}  # genes_key -> predicted objectives by label
        # genes -> (config key, {objective index: value} of the objectives that need no training), None when the genes
        # give no model; set by the runner (it has the data); without it every objective is predicted
        self.measure: Callable[[dict[str, Any]], tuple[str, dict[int, float]] | None] | None = None

    def __call__(self, study: optuna.Study, search_space: dict[str, Any], parents: list[FrozenTrial]) -> dict[str, Any]:
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values is not None]
        if len(done) >= self.min_trials:
            chosen = SCREENS.get(self.spec.screen)(self, study, search_space, parents, done)
            if chosen is not None:
                params, predicted = chosen
                self.predictions[genes_key(params)] = dict(zip(self.space.labels(), predicted))
                return dict(params)
        return breed(parents, search_space, self.directions, self.rng, self.crossover_prob, self.mutation_prob)

    def pool(self, parents: list[FrozenTrial], dists: dict[str, Any], n: int, done: list[FrozenTrial],
             random_share: float = 0.0) -> list[Candidate]:
        """Up to `n` candidates that give a model, one per config, none already trained: children of `parents`, and a
        `random_share` of them drawn uniformly from the whole space (what the parents' neighbourhood cannot reach);
        the same list in every worker (drawn from the search's seed and the parents)."""
        key = ",".join(str(t.number) for t in sorted(parents, key=lambda t: t.number))
        if (key, n, random_share) in self._pools:
            return self._pools[key, n, random_share]
        rng = np.random.RandomState(int.from_bytes(hashlib.sha256(f"{self.seed}:{key}".encode()).digest()[:4], "little"))
        seen = {genes_key(t.params) for t in done} | {t.user_attrs.get(KEY_ATTR) for t in done}
        found: dict[str, Candidate] = {}
        n_random = int(round(n * random_share))
        for want, bred in ((n - n_random, True), (n, False)):
            for _ in range(want * 20):  # small spaces run out of new children: stop after a bounded number of tries
                if len(found) >= want:
                    break
                child = (breed(parents, dists, self.directions, rng, self.crossover_prob, self.mutation_prob) if bred
                         else {name: draw(d, rng) for name, d in dists.items()})
                gk = genes_key(child)
                if gk in seen:
                    continue
                seen.add(gk)
                got = self.measure(child) if self.measure is not None else (gk, {})
                if got is not None and got[0] not in found:  # genes that give no model are never proposed
                    found[got[0]] = Candidate(child, got[0], got[1])
        self._pools[key, n, random_share] = list(found.values())
        return self._pools[key, n, random_share]

    def features(self, genes: dict[str, Any], measured: dict[int, float]) -> list[float]:
        """Gene features plus log10 of each measured objective (the parameter count tells a lot about the NLL)."""
        return encode_genes(self.space, genes) + [math.log10(max(abs(v), 1e-12)) for _, v in sorted(measured.items())]

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Objective values -> minimised, log10 where the objective spans orders of magnitude."""
        v = np.asarray(values, dtype=float).copy()
        for i, log in enumerate(self.log_scale):
            if log:
                v[:, i] = np.log10(np.maximum(np.abs(v[:, i]), 1e-12))
        return to_minimise(v, self.directions)

    def untransform(self, row: np.ndarray) -> list[float]:
        v = to_minimise(np.asarray(row, dtype=float)[None], self.directions)[0]
        return [float(10 ** x if log else x) for x, log in zip(v, self.log_scale)]


@SCREENS.register("hvi", doc="refit on every finished trial before each child; train the candidate of the pool (pool x "
                  "population bred children) whose optimistic prediction (mean - kappa std) adds the most hypervolume "
                  "to the front of finished and running trials (SMS-EGO, Ponweiser et al. 2008)")
def screen_hvi(ch: SurrogateChildren, study: optuna.Study, dists, parents, done) -> tuple[dict[str, Any], list[float]] | None:
    trials = study.get_trials(deepcopy=False)
    taken = {t.user_attrs.get(KEY_ATTR) for t in trials} | {genes_key(t.params) for t in trials if t.params}
    left = [c for c in ch.pool(parents, dists, ch.spec.pool * ch.population, done, ch.spec.random_share)
            if c.key not in taken and genes_key(c.params) not in taken]
    if not left:
        return None
    known = sorted(left[0].measured)  # the same objectives are measured for every candidate
    guess = [i for i in range(len(ch.directions)) if i not in known]
    y = ch.transform(np.array([t.values for t in done], dtype=float))
    x = np.array([ch.features(t.params, {i: t.values[i] for i in known}) for t in done])
    xc = np.array([ch.features(c.params, c.measured) for c in left])
    mean, spread = np.zeros((len(left), y.shape[1])), np.zeros((len(left), y.shape[1]))
    if guess:
        sur = Surrogate(ch.spec.model, seed=ch.seed).fit(x, y[:, guess])
        mean[:, guess], spread[:, guess] = sur.predict(xc), sur.spread(xc)
    if known:
        exact = np.array([[c.measured[i] for i in known] for c in left], dtype=float)
        full = np.zeros((len(left), y.shape[1]))
        full[:, known] = exact
        mean[:, known] = ch.transform(full)[:, known]
    pending = [t.user_attrs[PREDICTED_ATTR] for t in trials if t.state == TrialState.RUNNING and t.user_attrs.get(PREDICTED_ATTR)]
    believed = ch.transform(np.array([[p[lab] for lab in ch.space.labels()] for p in pending], dtype=float)) if pending else y[:0]
    lo, hi = y.min(axis=0), y.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    front = (np.vstack([y, believed]) - lo) / span
    front = front[non_domination_rank(front) == 0]
    scores = sms_scores((mean - ch.spec.kappa * spread - lo) / span, front, np.full(y.shape[1], 1.1))
    best = int(np.argmax(scores))
    predicted = ch.untransform(mean[best])
    for i, v in left[best].measured.items():  # exact, not through the log and back
        predicted[i] = v
    return left[best].params, predicted


@SCREENS.register("rank", doc="seed 000's: once per generation, rank population / keep_fraction bred candidates by "
                  "predicted non-domination rank then crowding distance, and train them best first")
def screen_rank(ch: SurrogateChildren, study: optuna.Study, dists, parents, done) -> tuple[dict[str, Any], list[float]] | None:
    key = ",".join(str(t.number) for t in sorted(parents, key=lambda t: t.number))
    if key not in ch._ranked:
        pool = ch.pool(parents, dists, max(ch.population, math.ceil(ch.population / ch.spec.keep_fraction)), done)
        ch._ranked[key] = []
        if pool:
            known = sorted(pool[0].measured)
            features = np.array([ch.features(t.params, {i: t.values[i] for i in known}) for t in done])
            sur = Surrogate(ch.spec.model, seed=ch.seed).fit(features, np.array([t.values for t in done], dtype=float))
            predicted = sur.predict(np.array([ch.features(c.params, c.measured) for c in pool]))
            for row, c in zip(predicted, pool):
                for i, v in c.measured.items():
                    row[i] = v
            order = rank_candidates(to_minimise(predicted, ch.directions))
            ch._ranked[key] = [(pool[i], [float(v) for v in predicted[i]]) for i in order]
    seen = {genes_key(t.params) for t in study.get_trials(deepcopy=False) if t.params}
    for c, predicted in ch._ranked[key]:
        if genes_key(c.params) not in seen:
            return c.params, predicted
    return None


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


def generation_quality(trials: list[FrozenTrial], labels: list[str], population: int) -> list[dict[str, Any]]:
    """Per generation with >= 2 finished pre-screened trials: {generation, n, mae_<label>, tau_<label>}, the surrogate's
    mean absolute error and Kendall tau between its prediction and the trained value (measured objectives: tau 1)."""
    from vaelab.search.surrogate import prediction_quality

    done = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None and t.user_attrs.get(PREDICTED_ATTR)]
    rows = []
    for g in sorted({trial_generation(t, population) for t in done}):
        chosen = [t for t in done if trial_generation(t, population) == g]
        if len(chosen) < 2:
            continue
        pred = np.array([[t.user_attrs[PREDICTED_ATTR][lab] for lab in labels] for t in chosen], dtype=float)
        q = prediction_quality(pred, np.array([t.values for t in chosen], dtype=float))
        row: dict[str, Any] = {"generation": g, "n": len(chosen)}
        for i, lab in enumerate(labels):
            row[f"mae_{lab}"], row[f"tau_{lab}"] = q["mae"][i], q["tau"][i]
        rows.append(row)
    return rows


def trial_generation(trial: FrozenTrial, population: int) -> int:
    """Generation of a trial: the GA sampler's attribute, else consecutive blocks of `population` trials."""
    for k, v in trial.system_attrs.items():
        if k.endswith(":generation"):
            return int(v)
    return trial.number // population


__all__ = ["SAMPLERS", "SCREENS", "PREDICTED_ATTR", "SurrogateChildren", "make_sampler", "breed", "trial_generation", "generation_quality", "distributions"]
