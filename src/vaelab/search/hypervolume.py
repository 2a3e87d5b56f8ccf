"""Exact hypervolume of a set of minimised points up to a reference point.

Written here because Optuna's own is a private function, and vaelab keeps to Optuna's
public API. Two objectives: a sweep; more: slicing along the last objective (HSO, While et al. 2006), each
slice a hypervolume one dimension lower. Exact, O(N^(M-1) log N): fine for the few hundred trials of a search.
"""
from __future__ import annotations

import numpy as np


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Hypervolume dominated by `points` (N, M, minimised) up to `reference` (M,); points beyond it count nothing."""
    ref = np.asarray(reference, dtype=float)
    pts = np.asarray(points, dtype=float).reshape(-1, len(ref))
    pts = pts[np.all(pts < ref, axis=1)]
    return float(_hv(pts, ref)) if len(pts) else 0.0


def _hv(pts: np.ndarray, ref: np.ndarray) -> float:
    m = pts.shape[1]
    if m == 1:
        return float(ref[0] - pts[:, 0].min())
    if m == 2:
        order = np.lexsort((pts[:, 1], pts[:, 0]))  # by x, then y
        total, best_y = 0.0, ref[1]
        for x, y in pts[order]:
            if y < best_y:
                total += (ref[0] - x) * (best_y - y)
                best_y = y
        return total
    order = np.argsort(pts[:, -1], kind="stable")
    pts = pts[order]
    total = 0.0
    for i in range(len(pts)):
        upper = pts[i + 1, -1] if i + 1 < len(pts) else ref[-1]
        depth = upper - pts[i, -1]
        if depth > 0:  # the slice [z_i, z_{i+1}) is dominated by the first i+1 points' projections
            total += depth * _hv(pts[: i + 1, :-1], ref[:-1])
    return total
