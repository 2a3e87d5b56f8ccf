"""The unit of every number vaelab reports, so tables and figures never show a bare number.

Training losses follow `loss.reduction`: "sum" adds the terms over an item's values (BCE in nats per item,
MSE as a squared error summed per item); "mean" averages them (per value). Evaluation numbers are fixed by
`vaelab evaluate` (nats per item, bits per dimension, ...).
"""
from __future__ import annotations

from typing import Any

_EVALUATION = {
    "negative_elbo": "nats/item", "reconstruction_nll": "nats/item", "kl": "nats/item", "bits_per_dim": "bits/dim",
    "mse": "squared error/value", "ssim": "SSIM, 1 = identical", "active_units": "latent dims",
    "latent_dims": "latent dims", "items": "items", "iw_k": "samples", "mmd_rbf": "MMD² (RBF)",
    "wasserstein_mean": "data units", "auroc": "0..1", "auprc": "0..1", "fpr95": "0..1",
}
_HISTORY = {"lr": "dimensionless", "kl_scale": "KL weight factor (0..1)", "seconds": "s", "samples_per_s": "items/s",
            "compile_seconds": "s", "epoch": "epochs", "step": "batches", "kl_per_dim": "nats/item per latent dim"}


def training_unit(recon: str, reduction: str) -> str:
    """Unit of the training loss terms (train_loss, val_recon, ...) for a run's loss settings."""
    if reduction == "mean":
        return "mean per value"
    return "nats/item" if recon == "bce" else "summed squared error/item" if recon == "mse" else "per item (summed)"


def run_recon_kind(config: Any, value_range: Any) -> str:
    """The reconstruction loss a run trained with ('auto' resolved like the trainer does)."""
    kind = config.loss.recon
    if kind != "auto":
        return kind
    lo, hi = value_range or (0.0, 1.0)
    return "bce" if lo >= 0 and hi <= 1 else "mse"


def unit_of(key: str, *, training: str = "per item") -> str:
    """The unit of a metric or history key; `training` is the unit of the training loss terms."""
    if key in _HISTORY:
        return _HISTORY[key]
    if key.startswith(("train_", "val_")):
        term = key.split("_", 1)[1]
        if term in _HISTORY:
            return _HISTORY[term]
        if term == "kl":
            return "nats/item" if "nats" in training or "summed" in training else training
        if term == "ssim":
            return "1 - SSIM"
        return training
    if key in _EVALUATION:
        return _EVALUATION[key]
    if key.startswith("iw_nll"):
        return "nats/item"
    if key.startswith("mse_latent_"):
        return "squared error/value"
    return ""


def fmt(value: Any) -> str:
    """5 significant digits for floats, integers as they are."""
    return f"{value:.5g}" if isinstance(value, float) else str(value)


def with_unit(key: str, value: Any, *, training: str = "per item") -> str:
    """`value unit` as one string."""
    unit = unit_of(key, training=training)
    return f"{fmt(value)} {unit}" if unit and unit != "dimensionless" else fmt(value)


__all__ = ["training_unit", "run_recon_kind", "unit_of", "with_unit", "fmt"]
