"""Surrogate pre-screening (seed 000's predictor): one scikit-learn regressor per objective predicts each
candidate child's objectives from its genes; candidates are ranked by predicted non-domination rank, then
crowding distance, and only the best share is trained.

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


@SURROGATES.register("random_forest", doc="RandomForestRegressor(200 trees)")
def _rf(seed: int):
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(n_estimators=200, min_samples_leaf=1, random_state=seed)


@SURROGATES.register("extra_trees", doc="ExtraTreesRegressor(200 trees)")
def _et(seed: int):
    from sklearn.ensemble import ExtraTreesRegressor

    return ExtraTreesRegressor(n_estimators=200, random_state=seed)


@SURROGATES.register("decision_tree", doc="seed 000's DecisionTreeRegressor with default settings")
def _dt(seed: int):
    from sklearn.tree import DecisionTreeRegressor

    return DecisionTreeRegressor(random_state=seed)


@SURROGATES.register("gaussian_process", doc="GaussianProcessRegressor on standardised genes (Matern + noise)")
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


def select(surrogate: Surrogate, features: np.ndarray, directions: Sequence[str], keep: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the `keep` best candidates, best first; their predicted values (keep, M))."""
    pred = surrogate.predict(features)
    order = rank_candidates(to_minimise(pred, directions))[:keep]
    return order, pred[order]


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
