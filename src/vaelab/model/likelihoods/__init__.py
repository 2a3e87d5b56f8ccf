"""Decoder likelihoods p(x | z) by name: `LIKELIHOODS` (declared in vaelab.core.vocab, filled here).

Each entry is a Likelihood subclass registered with its options model; `model.likelihood: NAME` with
`model.likelihood_args: {...}` picks one, `auto` (the default) is bernoulli for [0, 1] data and loss.recon's
mse (a Gaussian with variance 1/2, trained without its constant) otherwise. Adding one: subclass Likelihood in
continuous.py or discrete.py, register it below, and the contract tests in tests/test_likelihoods.py cover it.
"""
from __future__ import annotations

from typing import Any

from vaelab.core.config import auto_likelihood
from vaelab.core.errors import ConfigError
from vaelab.core.vocab import LIKELIHOODS, entry_options
from vaelab.model.likelihoods.base import OUTPUT_ACTIVATIONS, Likelihood, NoOptions
from vaelab.model.likelihoods.continuous import (
    Bernoulli,
    ContinuousBernoulli,
    Gaussian,
    GaussianLearned,
    GaussianOptions,
    GaussianPerDim,
    Laplace,
    LaplaceOptions,
    LearnedVarianceOptions,
    PerDimOptions,
)
from vaelab.model.likelihoods.discrete import Categorical256, LogisticMixture, MixtureOptions

for _cls, _opts, _doc in (
    (Bernoulli, NoOptions, "Bernoulli per value (loss.recon bce): [0, 1] data; exact for binary values"),
    (ContinuousBernoulli, NoOptions, "continuous Bernoulli (Loaiza-Ganem & Cunningham 2019): normalised density on [0, 1]"),
    (Gaussian, GaussianOptions, "Gaussian with a fixed variance (loss.recon mse: variance 0.5, normalised false)"),
    (GaussianLearned, LearnedVarianceOptions, "Gaussian with one learned variance shared by all values"),
    (GaussianPerDim, PerDimOptions, "Gaussian with a learned variance per value: the decoder gives 2 outputs per value"),
    (Laplace, LaplaceOptions, "Laplace with a fixed scale (an L1 loss with its normaliser)"),
    (Categorical256, NoOptions, "256-way categorical per value for 8-bit data: 256 logits per value"),
    (LogisticMixture, MixtureOptions, "discretised logistic mixture (PixelCNN++, NVAE) for 8-bit data: 3K outputs per value"),
):
    LIKELIHOODS.register(_cls.name, _cls, options=_opts, doc=_doc)


def likelihood_choice(name: str, args: dict[str, Any] | None, in_unit_interval: bool) -> tuple[type[Likelihood], Any]:
    """(class, validated options) for `model.likelihood` / `model.likelihood_args`; auto picks by the data's range."""
    if name == "auto":
        name, args = auto_likelihood(in_unit_interval)
    opts = entry_options(LIKELIHOODS, name, args, "model.likelihood_args", "model.likelihood")
    return LIKELIHOODS.get(name), opts


def check_fits(cls: type[Likelihood], value_range: tuple[float, float], bits: int | None) -> None:
    """Raise a ConfigError naming model.likelihood and the fix when the data cannot be modelled by `cls`."""
    why = cls.misfit(value_range, bits)
    if why is not None:
        raise ConfigError(f"model.likelihood: {why}")


def likelihood_for(model: Any, name: str, args: dict[str, Any] | None = None) -> Likelihood:
    """Likelihood `name` over `model`'s decoder output (its value range and output activation), for scoring
    models trained with different likelihoods under one (e.g. a search's NLL objective); the decoder must give
    the outputs per value `name` needs."""
    current = model.likelihood
    cls, opts = likelihood_choice(name, args, True)
    lik = cls(opts, value_range=current.value_range, activation=current.activation)
    if lik.params_per_value != current.params_per_value:
        raise ConfigError(f"likelihood {name!r} reads {lik.params_per_value} outputs per value but this model's decoder "
                          f"gives {current.params_per_value} (it was trained with {current.describe()})")
    return lik


def default_likelihood(output_activation: str = "sigmoid") -> Likelihood:
    """What a VAE built by hand (without a likelihood) uses: auto's choice for its output activation."""
    cls, opts = likelihood_choice("auto", None, output_activation == "sigmoid")
    return cls(opts, value_range=(0.0, 1.0), activation=output_activation)


__all__ = ["LIKELIHOODS", "OUTPUT_ACTIVATIONS", "Likelihood", "likelihood_choice", "likelihood_for", "check_fits",
           "default_likelihood", "Bernoulli", "ContinuousBernoulli", "Gaussian", "GaussianLearned", "GaussianPerDim",
           "Laplace", "Categorical256", "LogisticMixture"]
