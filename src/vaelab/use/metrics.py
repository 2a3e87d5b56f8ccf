"""Evaluation metrics beyond the likelihood: active units, KL per dimension, SSIM, and distribution match of
generated vs real low-dimensional points (MMD with an RBF kernel, per-dimension Wasserstein-1)."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from vaelab.core.errors import ConfigError
from vaelab.core.registry import Registry, UnknownNameError


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


def rotation_angle_deg(q_a: Tensor, q_b: Tensor) -> Tensor:
    """Angle in degrees of the rotation between quaternions q_a, q_b (..., 4) -> (...); q_b need not be unit.

    Component order does not matter (both in the same order), nor the sign (q and -q are one rotation).
    4 * atan2(|a - b|, |a + b|) for unit a, b with a.b >= 0 is the rotation angle, accurate near 0 where acos is not.
    """
    a = q_a.double() / q_a.double().norm(dim=-1, keepdim=True).clamp_min(1e-12)
    b = q_b.double() / q_b.double().norm(dim=-1, keepdim=True).clamp_min(1e-12)
    b = torch.where((a * b).sum(-1, keepdim=True) < 0, -b, b)
    return torch.rad2deg(4.0 * torch.atan2((a - b).norm(dim=-1), (a + b).norm(dim=-1)))


def quaternion_metrics(x: Tensor, recon: Tensor) -> dict[str, float]:
    """x, recon (N, 4J) in the data's units: the mean rotation angle between input and reconstruction over
    frames and joints, and the same for the mean pose (per joint, the normalised mean quaternion of these
    frames) predicted for every frame, the baseline a model that ignores its input reaches."""
    if x.shape[-1] % 4:
        raise ValueError(f"quaternion features come in fours, got {x.shape[-1]} per sample")
    q = x.reshape(x.shape[0], -1, 4)  # (N, J, 4)
    mean_pose = q.double().mean(dim=0, keepdim=True).expand_as(q)
    return {"rotation_error_deg": float(rotation_angle_deg(q, recon.reshape(q.shape)).mean()),
            "mean_pose_rotation_error_deg": float(rotation_angle_deg(q, mean_pose).mean())}


FEATURE_METRICS: Registry = Registry("feature metric")
FEATURE_METRICS.register("quaternion", quaternion_metrics,
                         doc="mean rotation angle (degrees) input vs reconstruction, and the mean-pose baseline")


def conditional_sample_accuracy(model, train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, *,
                                per_label: int = 100, temperature: float = 1.0, seed: int = 0) -> dict[str, float]:
    """Do a label-conditional model's samples show their label? A scikit-learn logistic regression fitted on the
    training split (flattened values -> labels) labels `per_label` prior samples of every class; its accuracy on
    them is compared with its own accuracy on the test split (the ceiling a perfect generator would reach).

    model: a VAE with condition_kind "label"; the data in the model's units, labels (N,) ints.
    """
    from sklearn.linear_model import LogisticRegression

    flat = lambda t: t.reshape(t.shape[0], -1).double().numpy()  # noqa: E731
    clf = LogisticRegression(max_iter=1000, C=1.0)
    clf.fit(flat(train_x), train_y.numpy())
    test_acc = float(clf.score(flat(test_x), test_y.numpy()))
    labels = torch.arange(model.condition_width).repeat_interleave(per_label)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        samples = model.sample(len(labels), model.condition_vector(labels), temperature=temperature, generator=g)
    acc = float(clf.score(flat(samples), labels.numpy()))
    return {"conditional_sample_accuracy": acc, "classifier_test_accuracy": test_acc,
            "conditional_sample_accuracy_ratio": acc / max(test_acc, 1e-12), "sample_temperature": float(temperature)}


EMBEDDINGS: Registry = Registry("embedding")


@EMBEDDINGS.register("pca", doc="principal components (scikit-learn PCA): linear, distances within the plane kept")
def pca_2d(flat: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=seed).fit_transform(flat)


@EMBEDDINGS.register("tsne", doc="seeded t-SNE (scikit-learn): keeps neighbourhoods, as seed 003's figure")
def tsne_2d(flat: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = float(min(30, max(2, (flat.shape[0] - 1) // 3)))
    return TSNE(n_components=2, random_state=seed, perplexity=perplexity, init="pca").fit_transform(flat)


def embed_2d(mu: Tensor, method: str = "pca", seed: int = 0) -> np.ndarray:
    """(N, *latent) posterior means -> (N, 2) with a registered embedding (`EMBEDDINGS`: pca, tsne); latents with
    one or two dimensions are shown as they are."""
    flat = mu.reshape(mu.shape[0], -1).double().numpy()
    if flat.shape[1] == 1:
        return np.concatenate([flat, np.zeros_like(flat)], axis=1)
    if flat.shape[1] == 2:
        return flat
    try:
        fn = EMBEDDINGS.get(method)
    except UnknownNameError as e:
        raise ConfigError(f"embedding: {e}") from None
    return fn(flat, seed)


__all__ = ["active_units", "mmd_rbf", "wasserstein_per_dim", "embed_2d", "rotation_angle_deg", "quaternion_metrics",
           "FEATURE_METRICS", "EMBEDDINGS", "conditional_sample_accuracy"]
