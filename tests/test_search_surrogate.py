"""Non-dominated sorting, crowding distance, surrogate selection, prediction quality, hypervolume."""
import math

import numpy as np
import pytest

from vaelab.search.report import hypervolume
from vaelab.search.surrogate import (Surrogate, crowding_distance, dominates, hypervolume_improvement, non_domination_rank,
                                     prediction_quality, rank_candidates, select, sms_scores)


def test_dominance_needs_every_objective():
    assert dominates(np.array([1, 1]), np.array([1, 2]))
    assert not dominates(np.array([1, 3]), np.array([2, 1]))  # seed 000 compared objective 0 only
    assert not dominates(np.array([1, 1]), np.array([1, 1]))


def test_known_fronts():
    v = np.array([[1, 5], [2, 2], [5, 1], [3, 3], [4, 4], [6, 6], [2, 2]], dtype=float)
    assert non_domination_rank(v).tolist() == [0, 0, 0, 1, 2, 3, 0]


def test_crowding_distance_deb():
    v = np.array([[0, 4], [1, 2], [2, 1], [4, 0]], dtype=float)
    d = crowding_distance(v)
    assert math.isinf(d[0]) and math.isinf(d[3])
    assert d[1] == pytest.approx(2 / 4 + 3 / 4) and d[2] == pytest.approx(3 / 4 + 2 / 4)
    flat = crowding_distance(np.array([[1, 1], [1, 1], [1, 1]], dtype=float))  # zero range: no NaN
    assert not np.isnan(flat).any()


def test_rank_candidates_front_first_then_crowding():
    v = np.array([[3, 3], [0, 4], [1, 2], [4, 0], [2, 1.5]], dtype=float)
    order = rank_candidates(v).tolist()
    assert set(order[:4]) == {1, 2, 3, 4} and order[-1] == 0
    assert order[:2] in ([1, 3], [3, 1])  # the front's ends (infinite crowding) come first


def test_surrogate_selects_the_predicted_best_half_with_directions():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 10, size=(60, 2))
    y = np.stack([x[:, 0] + x[:, 1], -(x[:, 0] * x[:, 1])], axis=1)  # minimise a sum, maximise -product
    sur = Surrogate("random_forest", seed=0).fit(x, y)
    cand = np.array([[1, 1], [9, 9], [0.5, 0.5], [8, 9]], dtype=float)
    idx, pred = select(sur, cand, ["minimize", "maximize"], keep=2)
    assert set(idx.tolist()) == {0, 2} and pred.shape == (2, 2)
    idx_min, _ = select(sur, cand, ["minimize", "minimize"], keep=1)
    assert idx_min.tolist() != [] and pred[0, 0] < 10


def test_prediction_quality():
    actual = np.array([[1, 10], [2, 20], [3, 30]], dtype=float)
    q = prediction_quality(actual + 1, actual[::-1].copy())  # predictions in the reverse order of the truth
    assert q["mae"][0] == pytest.approx(5 / 3)
    assert q["tau"][0] == pytest.approx(-1.0)
    assert prediction_quality(actual, actual)["tau"] == [pytest.approx(1.0), pytest.approx(1.0)]


def test_hypervolume_2d_known_value():
    pts = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [2.0, 2.0]])  # last one beyond the reference
    assert hypervolume(pts, np.array([1.5, 1.5])) == pytest.approx(0.25 + 0.5 + 0.75)  # sweep over x
    assert hypervolume(np.array([[0.5, 0.5]]), np.array([1.0, 1.0])) == pytest.approx(0.25)
    assert hypervolume(np.array([[0.0, 0.5], [0.5, 0.0]]), np.array([1.0, 1.0])) == pytest.approx(0.75)
    assert hypervolume(np.array([[2.0, 2.0]]), np.array([1.0, 1.0])) == 0.0


def test_hypervolume_improvement_is_the_hypervolume_added():
    rng = np.random.default_rng(3)
    ref = np.full(3, 1.1)
    front = rng.uniform(0, 1, size=(7, 3))
    points = rng.uniform(-0.2, 1.2, size=(40, 3))
    got = hypervolume_improvement(points, front, ref)
    want = [hypervolume(np.vstack([front, p]), ref) - hypervolume(front, ref) for p in points]
    assert got == pytest.approx(want, abs=1e-12)
    assert hypervolume_improvement(np.array([[0.5, 0.5]]), np.zeros((0, 2)), np.ones(2)) == pytest.approx([0.25])


def test_sms_scores_rank_improvers_first_then_dominated_by_their_gap():
    front = np.array([[0.2, 0.8], [0.8, 0.2]])
    ref = np.ones(2)
    pts = np.array([[0.1, 0.1],   # improves a lot
                    [0.5, 0.5],   # improves a little
                    [0.3, 0.9],   # dominated by (0.2, 0.8): must move 0.1
                    [0.9, 0.95],  # dominated by both: a uniform shift of 0.15 escapes both (additive epsilon)
                    [1.2, 0.0]])  # outside the reference box in x
    s = sms_scores(pts, front, ref)
    assert s[0] > s[1] > 0 > s[2] > s[3]
    assert s[2] == pytest.approx(-0.1) and s[3] == pytest.approx(-0.15) and s[4] == pytest.approx(-0.2)
