"""Out-of-distribution scores and their ranking metrics (OOD is the positive class; higher score = more OOD).

`nll_scores` is the stable entry point the architecture search uses as an objective. Likelihood regret
(Xiao et al. 2020) is in `vaelab.use.regret`, input complexity (Serra et al. 2020) in `vaelab.use.complexity`.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from vaelab.model.vae import VAE
from vaelab.use.likelihood import nll


def nll_scores(
    model: VAE,
    x: Tensor,
    y: Tensor | None = None,
    *,
    k: int = 1,
    batch_size: int = 256,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Per-item NLL in nats -> (N,): negative ELBO for k=1, importance-weighted NLL with k samples otherwise.

    The decoder likelihood is Bernoulli for a sigmoid-output model on [0, 1] data, else Gaussian with
    sigma^2 = 1/2 (the density behind a summed squared-error loss), normalising constant included.
    y: labels or condition vectors for conditional models.
    """
    return nll(model, x, y, k=k, batch_size=batch_size, generator=generator)


def _labels_scores(scores_in, scores_out) -> tuple[np.ndarray, np.ndarray]:
    s_in = np.asarray(torch.as_tensor(scores_in).detach().cpu(), dtype=np.float64).ravel()
    s_out = np.asarray(torch.as_tensor(scores_out).detach().cpu(), dtype=np.float64).ravel()
    if s_in.size == 0 or s_out.size == 0:
        raise ValueError(f"need scores for both in- and out-of-distribution items, got {s_in.size} and {s_out.size}")
    scores = np.concatenate([s_in, s_out])
    if not np.isfinite(scores).all():
        raise ValueError(f"{int((~np.isfinite(scores)).sum())} scores are not finite (NaN or inf); check the model")
    labels = np.concatenate([np.zeros(s_in.size), np.ones(s_out.size)])
    return labels, scores


def auroc(scores_in, scores_out) -> float:
    """Area under the ROC curve with OOD as the positive class (0.5 = chance, 1 = perfect separation)."""
    from sklearn.metrics import roc_auc_score

    labels, scores = _labels_scores(scores_in, scores_out)
    return float(roc_auc_score(labels, scores))


def auprc(scores_in, scores_out) -> float:
    """Average precision with OOD as the positive class."""
    from sklearn.metrics import average_precision_score

    labels, scores = _labels_scores(scores_in, scores_out)
    return float(average_precision_score(labels, scores))


def fpr_at_tpr(scores_in, scores_out, tpr: float = 0.95) -> float:
    """Fraction of in-distribution items flagged when the threshold catches `tpr` of the OOD items."""
    from sklearn.metrics import roc_curve

    labels, scores = _labels_scores(scores_in, scores_out)
    fpr, tpr_curve, _ = roc_curve(labels, scores)
    return float(fpr[np.searchsorted(tpr_curve, tpr, side="left")])


__all__ = ["nll_scores", "auroc", "auprc", "fpr_at_tpr"]
