"""The unit of every number vaelab reports, so tables and figures never show a bare number.

Training losses follow the run's decoder likelihood (`model.likelihood`, which `loss.recon` names), its term
weights and `loss.reduction`: "sum" adds a term over an item's values (the likelihood's NLL in nats per item),
"mean" averages it (nats per value; the KL per latent dim). A `loss.recon: mse` run trains a Gaussian with
variance 0.5 without its constant 0.5 log(pi) per value, so its reconstruction term is nats less that constant
(the summed squared error). A total with weights other than 1 is a weighted sum and says so. Evaluation numbers
are fixed by `vaelab evaluate` (true nats per item under the run's likelihood, bits per dimension, ...).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_EVALUATION = {
    "negative_elbo": "nats/item", "reconstruction_nll": "nats/item", "kl": "nats/item", "bits_per_dim": "bits/dim",
    "mse": "squared error/value", "ssim": "SSIM, 1 = identical", "active_units": "latent dims",
    "latent_dims": "latent dims", "items": "items", "iw_k": "samples", "mmd_rbf": "MMD² (RBF)",
    "first_item": "(index in the split)", "iw_nll_per_item": "",
    "wasserstein_mean": "data units", "auroc": "0..1", "auprc": "0..1", "fpr95": "0..1",
    "conditional_sample_accuracy": "0..1", "classifier_test_accuracy": "0..1", "conditional_sample_accuracy_ratio": "of the classifier's accuracy",
    "sample_temperature": "prior std factor", "rotation_error_deg": "degrees", "mean_pose_rotation_error_deg": "degrees",
}
_HISTORY = {"lr": "dimensionless", "kl_scale": "KL weight factor (0..1)", "seconds": "s", "samples_per_s": "items/s",
            "compile_seconds": "s", "epoch": "epochs", "step": "batches", "kl_per_dim": "nats/item per latent dim",
            "threads": "torch threads", "active_units": "latent dims"}


@dataclass(frozen=True)
class LossUnits:
    """Units of a run's training loss: the weighted total, the reconstruction term and the KL term."""

    total: str
    recon: str
    kl: str

    def __str__(self) -> str:
        return self.total


def training_units(likelihood: Any, reduction: str, weights: dict[str, float] | None = None) -> LossUnits:
    """The units of train_loss / train_recon / train_kl for a run trained with `likelihood` (a
    vaelab.model.likelihoods.Likelihood), `loss.reduction` and the term weights ({term: weight})."""
    per = "item" if reduction == "sum" else "value (mean)"
    recon = f"nats/{per}"
    opts = getattr(likelihood, "options", None)
    if getattr(likelihood, "name", "") == "gaussian" and not getattr(opts, "normalised", True):
        variance = opts.variance
        recon = ("summed squared error/item" if reduction == "sum" else "squared error/value (mean)") if variance == 0.5 \
            else f"{recon} less the Gaussian constant"
        recon += f" (Gaussian, variance {variance:g}, without its constant)"
    kl = "nats/item" if reduction == "sum" else "nats/latent dim (mean)"
    weights = dict(weights or {"recon": 1.0, "kl": 1.0})
    if weights == {"recon": 1.0, "kl": 1.0}:
        total = recon if reduction == "sum" else "mean per value"
    else:
        terms = " + ".join(f"{w:g} x {name}" for name, w in weights.items())
        total = f"weighted: {terms}; recon in {recon}" if reduction == "sum" else f"mean per value, weighted: {terms}"
    return LossUnits(total, recon, kl)


def run_units(run: Any) -> LossUnits:
    """The training loss units of a run (vaelab.training.runs.Run): its model's likelihood, reduction and weights."""
    from vaelab.training.losses import term_weights

    return training_units(run.model.likelihood, run.config.loss.reduction, term_weights(run.config.loss))


def unit_of(key: str, *, training: LossUnits | str = "per item") -> str:
    """The unit of a metric or history key; `training` gives the units of the training loss terms."""
    units = training if isinstance(training, LossUnits) else LossUnits(training, training, _kl_unit(training))
    if key in _HISTORY:
        return _HISTORY[key]
    if key.startswith(("train_", "val_")):
        term = key.split("_", 1)[1]
        if term in _HISTORY:
            return _HISTORY[term]
        return {"loss": units.total, "recon": units.recon, "kl": units.kl, "ssim": "SSIM, 1 = identical",
                "sparse": "mean |mu|"}.get(term, units.total)
    if key == "training_loss":
        return units.total
    if key in _EVALUATION:
        return _EVALUATION[key]
    if key.startswith("iw_nll"):
        return "nats/item"
    if key.startswith("mse_latent_"):
        return "squared error/value"
    return ""


def _kl_unit(training: str) -> str:
    return "nats/item" if "nats" in training or "summed" in training else training


def fmt(value: Any) -> str:
    """5 significant digits for floats, integers as they are."""
    return f"{value:.5g}" if isinstance(value, float) else str(value)


def with_unit(key: str, value: Any, *, training: LossUnits | str = "per item") -> str:
    """`value unit` as one string."""
    unit = unit_of(key, training=training)
    return f"{fmt(value)} {unit}" if unit and unit != "dimensionless" else fmt(value)


__all__ = ["LossUnits", "training_units", "run_units", "unit_of", "with_unit", "fmt"]
