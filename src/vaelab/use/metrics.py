"""Evaluation metrics beyond the likelihood: active units, KL per dimension, SSIM, and distribution match of
generated vs real low-dimensional points (MMD with an RBF kernel, per-dimension Wasserstein-1)."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def active_units(mu: Tensor, threshold: float = 0.01) -> tuple[int, list[float]]:
    """Burda et al. 2016: a latent dim is active when Var_x(E_q[z|x]) > threshold. mu: (N, *latent)."""
    var = mu.reshape(mu.shape[0], -1).float().var(dim=0, unbiased=False)
    return int((var > threshold).sum()), var.tolist()


def mmd_rbf(a: Tensor, b: Tensor, bandwidth: float | None = None, max_items: int = 2000,
            generator: torch.Generator | None = None) -> float:
    """Unbiased squared MMD between samples a (N, D) and b (M, D), Gaussian kernel; bandwidth by the median
    heuristic over the pooled samples when not given. At most `max_items` of each (a random subset)."""
    def cap(t: Tensor) -> Tensor:
        t = t.reshape(t.shape[0], -1).double()
        if t.shape[0] > max_items:
            t = t[torch.randperm(t.shape[0], generator=generator)[:max_items]]
        return t

    a, b = cap(a), cap(b)
    pooled = torch.cat([a, b])
    d2 = torch.cdist(pooled, pooled).pow(2)
    if bandwidth is None:
        med = d2[d2 > 0].median() if bool((d2 > 0).any()) else torch.tensor(1.0, dtype=torch.float64)
        gamma = 1.0 / float(med)
    else:
        gamma = 1.0 / (2.0 * bandwidth**2)
    k = torch.exp(-gamma * d2)
    n, m = a.shape[0], b.shape[0]
    kaa, kbb, kab = k[:n, :n], k[n:, n:], k[:n, n:]
    mmd = (kaa.sum() - kaa.diag().sum()) / (n * (n - 1)) + (kbb.sum() - kbb.diag().sum()) / (m * (m - 1)) - 2 * kab.mean()
    return float(mmd)


def wasserstein_per_dim(a: Tensor, b: Tensor) -> list[float]:
    """1-D Wasserstein-1 distance between the marginals of each dimension (scipy)."""
    from scipy.stats import wasserstein_distance

    a2 = a.reshape(a.shape[0], -1).double().numpy()
    b2 = b.reshape(b.shape[0], -1).double().numpy()
    return [float(wasserstein_distance(a2[:, j], b2[:, j])) for j in range(a2.shape[1])]


def embed_2d(mu: Tensor, method: str = "pca", seed: int = 0) -> np.ndarray:
    """(N, *latent) posterior means -> (N, 2) with PCA (default) or seeded t-SNE (scikit-learn)."""
    flat = mu.reshape(mu.shape[0], -1).double().numpy()
    if flat.shape[1] == 1:
        return np.concatenate([flat, np.zeros_like(flat)], axis=1)
    if flat.shape[1] == 2:
        return flat
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(flat)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30, max(2, (flat.shape[0] - 1) // 3)))
        return TSNE(n_components=2, random_state=seed, perplexity=perplexity, init="pca").fit_transform(flat)
    raise ValueError(f"embedding must be 'pca' or 'tsne', got {method!r}")


__all__ = ["active_units", "mmd_rbf", "wasserstein_per_dim", "embed_2d"]
