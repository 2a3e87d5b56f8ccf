"""Surrogate pre-screening: one scikit-learn regressor per objective predicts each candidate child's objectives
(mean and spread) from its genes. Two ways to choose what is trained (registry `SCREENS` in vaelab.search.sampler):
`hvi`, the optimistic hypervolume improvement of SMS-EGO (Ponweiser et al. 2008), and `rank`, seed 000's
predicted non-domination rank then crowding distance.

Non-dominated sorting and crowding distance are written here (Deb et al. 2002) because Optuna's are private
functions over trials, and these run on plain predicted arrays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from vaelab.core.errors import ConfigError
from vaelab.core.registry import Registry

SURROGATES: Registry[Callable[[int], Any]] = Registry("surrogate model")


def _tree_spread(reg, features: np.ndarray) -> np.ndarray:
    """Standard deviation of the trees' predictions: the forest's own uncertainty."""
    return np.std(np.stack([t.predict(features) for t in reg.estimators_]), axis=0)


def _gp_spread(reg, features: np.ndarray) -> np.ndarray:
    return reg.predict(features, return_std=True)[1]


@SURROGATES.register("random_forest", doc="RandomForestRegressor(200 trees); spread of the trees", spread=_tree_spread)
def _rf(seed: int):
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(n_estimators=200, min_samples_leaf=1, random_state=seed)


@SURROGATES.register("extra_trees", doc="ExtraTreesRegressor(200 trees); spread of the trees", spread=_tree_spread)
def _et(seed: int):
    from sklearn.ensemble import ExtraTreesRegressor

    return ExtraTreesRegressor(n_estimators=200, random_state=seed)


@SURROGATES.register("decision_tree", doc="seed 000's DecisionTreeRegressor with default settings; no spread")
def _dt(seed: int):
    from sklearn.tree import DecisionTreeRegressor

    return DecisionTreeRegressor(random_state=seed)


@SURROGATES.register("gaussian_process", doc="GaussianProcessRegressor on standardised genes (Matern + noise); posterior std",
                     spread=_gp_spread)
def _gp(seed: int):
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import Matern, WhiteKernel
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    gp = GaussianProcessRegressor(Matern(nu=2.5) + WhiteKernel(), normalize_y=True, random_state=seed)
    return make_pipeline(StandardScaler(), gp)


# ------------------------------------------------------------------ ranking
def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """a dominates b (minimisation): <= on every objective and < on at least one."""
    return bool(np.all(a <= b) and np.any(a < b))


def non_domination_rank(values: np.ndarray) -> np.ndarray:
    """Front index (0 = non-dominated) of each row of `values` (N, M), all objectives minimised."""
    n = len(values)
    dominated_by = [[] for _ in range(n)]  # i -> rows i dominates
    count = np.zeros(n, dtype=int)  # how many rows dominate i
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(values[i], values[j]):
                dominated_by[i].append(j)
                count[j] += 1
            elif dominates(values[j], values[i]):
                dominated_by[j].append(i)
                count[i] += 1
    rank = np.full(n, -1)
    front = [i for i in range(n) if count[i] == 0]
    r = 0
    while front:
        nxt = []
        for i in front:
            rank[i] = r
            for j in dominated_by[i]:
                count[j] -= 1
                if count[j] == 0:
                    nxt.append(j)
        front, r = nxt, r + 1
    return rank


def crowding_distance(values: np.ndarray) -> np.ndarray:
    """Deb 2002 crowding distance of each row within one front (N, M): ends are inf; a zero range adds nothing."""
    n, m = values.shape
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, math.inf)
    for k in range(m):
        order = np.argsort(values[:, k], kind="stable")
        lo, hi = values[order[0], k], values[order[-1], k]
        dist[order[0]] = dist[order[-1]] = math.inf
        if hi - lo <= 0:
            continue
        dist[order[1:-1]] += (values[order[2:], k] - values[order[:-2], k]) / (hi - lo)
    return dist


def rank_candidates(predicted: np.ndarray) -> np.ndarray:
    """Indices of `predicted` (N, M, minimised) best first: by non-domination rank, then crowding distance (desc)."""
    rank = non_domination_rank(predicted)
    crowd = np.zeros(len(predicted))
    for r in np.unique(rank):
        members = np.flatnonzero(rank == r)
        crowd[members] = crowding_distance(predicted[members])
    return np.array(sorted(range(len(predicted)), key=lambda i: (rank[i], -crowd[i], i)), dtype=int)


def to_minimise(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    sign = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    return np.asarray(values, dtype=float) * sign


# ------------------------------------------------------------------ the predictor
@dataclass
class Surrogate:
    """One regressor per objective on gene features."""

    model: str = "random_forest"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.model not in SURROGATES:
            raise ConfigError(f"search.surrogate.model: {SURROGATES.entry(self.model)}")
        self._fitted: list[Any] = []

    def fit(self, features: np.ndarray, values: np.ndarray) -> "Surrogate":
        """features (N, F); values (N, M) real objective values."""
        if len(features) < 2:
            raise ConfigError("the surrogate needs at least 2 finished trials to fit; raise search.surrogate.min_trials")
        self._fitted = []
        for k in range(values.shape[1]):
            reg = SURROGATES.get(self.model)(self.seed + k)
            reg.fit(features, values[:, k])
            self._fitted.append(reg)
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        """(N, F) -> (N, M) predicted objective values."""
        if not self._fitted:
            raise RuntimeError("Surrogate.predict before fit")
        return np.stack([reg.predict(features) for reg in self._fitted], axis=1)

    def spread(self, features: np.ndarray) -> np.ndarray:
        """(N, F) -> (N, M) the model's standard deviation of each prediction (zeros for a model without one)."""
        if not self._fitted:
            raise RuntimeError("Surrogate.spread before fit")
        fn = SURROGATES.entry(self.model).meta.get("spread")
        if fn is None:
            return np.zeros((len(features), len(self._fitted)))
        return np.stack([fn(reg, features) for reg in self._fitted], axis=1)


def select(surrogate: Surrogate, features: np.ndarray, directions: Sequence[str], keep: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the `keep` best candidates, best first; their predicted values (keep, M))."""
    pred = surrogate.predict(features)
    order = rank_candidates(to_minimise(pred, directions))[:keep]
    return order, pred[order]


# ------------------------------------------------------------------ optimistic hypervolume improvement
def hypervolume_improvement(points: np.ndarray, front: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Hypervolume each row of `points` (N, M) would add to `front` (K, M), all minimised, up to `reference`.

    HVI(p) = vol([p, ref]) - HV({max(p, f) : f in front}): the box p dominates less the part the front already has."""
    from vaelab.search.hypervolume import hypervolume

    out = np.zeros(len(points))
    for i, p in enumerate(points):
        if np.any(p >= reference):
            continue
        box = float(np.prod(reference - p))
        out[i] = box - (hypervolume(np.maximum(front, p), reference) if len(front) else 0.0)
    return np.maximum(out, 0.0)


def sms_scores(optimistic: np.ndarray, front: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """SMS-EGO's infill score (Ponweiser et al. 2008) of each optimistic point (N, M; mean - kappa * std, minimised):
    its hypervolume improvement when positive; otherwise minus how far it must still move to leave the region the
    front dominates (the largest over dominating points of their smallest gap) and to get inside the reference
    box, so that candidates that add nothing are still ordered by how close they come."""
    hvi = hypervolume_improvement(optimistic, front, reference)
    gap = np.zeros(len(optimistic))
    if len(front):
        diff = optimistic[:, None, :] - front[None, :, :]  # (N, K, M): >= 0 everywhere when front point k dominates
        gap = np.maximum(np.max(np.min(diff, axis=2), axis=1), 0.0)
    gap += np.maximum(optimistic - reference, 0.0).max(axis=1)
    return np.where(hvi > 0, hvi, -gap)


# ------------------------------------------------------------------ quality per generation
def prediction_quality(predicted: np.ndarray, actual: np.ndarray) -> dict[str, list[float]]:
    """Mean absolute error and Kendall tau per objective between predicted and real values (N, M)."""
    from scipy.stats import kendalltau

    mae, tau = [], []
    for k in range(actual.shape[1]):
        mae.append(float(np.mean(np.abs(predicted[:, k] - actual[:, k]))))
        t = kendalltau(predicted[:, k], actual[:, k]).statistic if len(actual) >= 2 else math.nan
        tau.append(float(t) if t is not None else math.nan)
    return {"mae": mae, "tau": tau}
