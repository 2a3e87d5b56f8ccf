"""VAE loss terms as pure functions returning per-sample (B,) tensors, the LOSS_TERMS registry that names
them, and `vae_loss` that weighs the registered terms.

Every function computes in float32 (inputs are cast with `.float()`), so the loss is the same under autocast.
Reductions (the REDUCTIONS registry) over the non-batch dims: `"sum"` adds them per sample (a log-likelihood
in nats), `"mean"` averages them (seed 003's convention: mean BCE + alpha * mean KL).

To add a loss term: one `@loss_term(...)` function at the end of this file (its per-sample value, how its
weight is read from the config, what the weight multiplies) and its test; `loss.extra_terms: {name: weight}`
switches on a term that has no config key of its own.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, Protocol

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim as _msssim_ssim
from torch import Tensor

from vaelab.core.errors import ConfigError
from vaelab.core.registry import UnknownNameError
from vaelab.core.vocab import LOSS_TERMS, REDUCTIONS
from vaelab.model.distributions import DiagonalGaussian

if TYPE_CHECKING:
    from vaelab.core.config import LossConfig

Reduction = Literal["sum", "mean"]
ReconKind = Literal["bce", "mse"]

SSIM_WIN_SIZE, SSIM_WIN_SIGMA = 11, 1.5
_PROB_EPS = 1e-7  # clamp for plain BCE on probabilities
_LOG_2PI = math.log(2.0 * math.pi)


REDUCTIONS.register("sum", lambda flat: flat.sum(dim=1), doc="add the non-batch dims (a log-likelihood in nats)")
REDUCTIONS.register("mean", lambda flat: flat.mean(dim=1), doc="average the non-batch dims (seed 003)")


def _reduce(t: Tensor, reduction: Reduction) -> Tensor:
    """(B, ...) -> (B,) by the named reduction of the non-batch dims."""
    try:
        fn = REDUCTIONS.get(reduction)
    except UnknownNameError as e:
        raise ConfigError(f"loss.reduction: {e}") from None
    return fn(t.reshape(t.shape[0], -1))


def _check_same_shape(a: Tensor, b: Tensor, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: prediction {tuple(a.shape)} and target {tuple(b.shape)} differ in shape")


def reconstruction(
    x_logits: Tensor, x: Tensor, kind: ReconKind = "bce", *, logits: bool = True, reduction: Reduction = "sum"
) -> Tensor:
    """Reconstruction loss per sample -> (B,).

    logits: the first argument is pre-sigmoid logits (decoder ends in sigmoid). bce then uses the fused,
        stable BCE-with-logits and mse compares sigmoid(logits); with `logits=False` the first argument is the
        decoder output itself (bce clamps it to [1e-7, 1 - 1e-7]).
    kind "mse" is the squared error (summed = Gaussian NLL with sigma^2 = 1/2 up to a constant, see `gaussian_nll`).
    """
    _check_same_shape(x_logits, x, "reconstruction")
    pred, x = x_logits.float(), x.float()
    if kind == "bce":
        if logits:
            per_elem = F.binary_cross_entropy_with_logits(pred, x, reduction="none")
        else:
            per_elem = F.binary_cross_entropy(pred.clamp(_PROB_EPS, 1.0 - _PROB_EPS), x, reduction="none")
    elif kind == "mse":
        per_elem = (torch.sigmoid(pred) if logits else pred).sub(x).pow(2)
    else:
        raise ConfigError(f"loss.recon must be 'bce' or 'mse', got {kind!r}")
    return _reduce(per_elem, reduction)


def kl_divergence(posterior: DiagonalGaussian, reduction: Reduction = "sum", free_bits: float = 0.0) -> Tensor:
    """KL(q(z|x) || N(0, I)) per sample -> (B,).

    free_bits: nats per latent dim (Kingma et al. 2016, "Improved variational inference with inverse
        autoregressive flow"). For each latent dim whose batch-mean KL is below `free_bits`, every sample's KL in
        that dim is replaced by the constant `free_bits` (no gradient), so the batch mean of the result is
        sum_d max(mean_b KL[b, d], free_bits) and collapsed dims stop being pushed further towards the prior.
        The per-sample values are then only meaningful through their batch mean.
    """
    if free_bits < 0:
        raise ConfigError(f"loss.free_bits must be >= 0 nats, got {free_bits}")
    kl = posterior.kl_per_dim()  # (B, *latent), float32
    if free_bits > 0:
        dim_mean = kl.mean(dim=0, keepdim=True)  # (1, *latent)
        kl = torch.where(dim_mean < free_bits, torch.full_like(kl, free_bits), kl)
    return _reduce(kl, reduction)


def _ssim_window(spatial: tuple[int, ...]) -> int:
    """11, or the largest odd size that fits the smallest spatial dim (e.g. 7 for 8x8 digits)."""
    smallest = min(spatial)
    return min(SSIM_WIN_SIZE, smallest if smallest % 2 == 1 else smallest - 1)


def ssim(x: Tensor, y: Tensor, data_range: float) -> Tensor:
    """Structural similarity per sample -> (B,), via pytorch_msssim (Gaussian window 11, sigma 1.5, K=(0.01, 0.03)).

    x, y: images (B, C, H, W) or volumes (B, C, D, H, W).
    data_range: max - min of the data, explicit: 1.0 for [0, 1], 2.0 for [-1, 1].
    Images smaller than 11 px in a spatial dim use the largest odd window that fits (7 for 8x8), since an 11-wide
    window would silently skip smoothing there. Flat or sequence data raises a ConfigError: SSIM needs images.
    """
    _check_same_shape(x, y, "ssim")
    if x.dim() not in (4, 5):
        raise ConfigError(
            f"loss.ssim: SSIM needs image data (B, C, H, W) or (B, C, D, H, W), got shape {tuple(x.shape)}; "
            "set loss.ssim: false"
        )
    if data_range <= 0:
        raise ConfigError(f"loss.data_range must be > 0, got {data_range}")
    x, y = x.float(), y.float()
    spatial = tuple(x.shape[2:])
    if min(spatial) < 3:
        raise ConfigError(f"loss.ssim: SSIM needs spatial sizes >= 3, got {spatial}; set loss.ssim: false")
    # pytorch_msssim squeezes trailing size-1 dims, so keep them away from it (all spatial dims are >= 3 here).
    win = _ssim_window(spatial)
    return _msssim_ssim(x, y, data_range=data_range, size_average=False, win_size=win, win_sigma=SSIM_WIN_SIGMA)


def sparsity(mean: Tensor) -> Tensor:
    """Mean |mu| per sample -> (B,) (seed 001's sparse term)."""
    return _reduce(mean.float().abs(), "mean")


def gaussian_nll(x_hat: Tensor, x: Tensor, sigma: float | Tensor = 1.0) -> Tensor:
    """-log N(x; x_hat, sigma^2 I) in nats per sample, with the normalising constant -> (B,).

    The `mse` reconstruction (sum of squared errors) equals this with sigma^2 = 1/2, minus its constant
    0.5 * D * log(pi).
    """
    _check_same_shape(x_hat, x, "gaussian_nll")
    x_hat, x = x_hat.float(), x.float()
    sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
    if bool((sigma <= 0).any()):
        raise ValueError(f"gaussian_nll: sigma must be > 0, got {sigma}")
    per_elem = 0.5 * _LOG_2PI + torch.log(sigma) + (x - x_hat).pow(2) / (2.0 * sigma.pow(2))
    return _reduce(per_elem.expand_as(x), "sum")


def bernoulli_nll(logits: Tensor, x: Tensor) -> Tensor:
    """-log Bernoulli(x; sigmoid(logits)) in nats per sample -> (B,).

    Exact (no constant is missing) for binary x. For x in (0, 1) it is the cross-entropy, which is not a normalised
    density (the continuous Bernoulli would add log C(lambda)); binarise data before quoting it as an NLL.
    """
    _check_same_shape(logits, x, "bernoulli_nll")
    return _reduce(F.binary_cross_entropy_with_logits(logits.float(), x.float(), reduction="none"), "sum")


# ----------------------------------------------------------------------------------- the registered terms


@dataclass(frozen=True)
class LossOptions:
    """What the terms need besides the batch, fixed for a run."""

    recon_kind: ReconKind = "bce"
    logits: bool = True  # the decoder ends in sigmoid: bce reads out.x_logits (BCE-with-logits)
    reduction: Reduction = "sum"
    free_bits: float = 0.0
    data_range: float = 1.0  # SSIM data range: 1.0 for [0, 1] data, 2.0 for [-1, 1]
    likelihood: Any = None  # the model's p(x|z) (vaelab.model.likelihoods): recon is then its NLL (recon_kind unused)
    critic: Any = None  # vaelab.training.adversarial.Critic when loss.adversarial is set
    perceptual: Any = None  # vaelab.training.perceptual.LPIPS when loss.perceptual is set


class _VAEOutputLike(Protocol):
    x_logits: Tensor
    x_hat: Tensor
    posterior: DiagonalGaussian


class _LikelihoodLike(Protocol):
    def loss(self, params: Tensor, x: Tensor) -> Tensor: ...


def reconstruction_nll(likelihood: _LikelihoodLike, params: Tensor, x: Tensor, reduction: Reduction = "sum") -> Tensor:
    """The model's likelihood's reconstruction term per sample -> (B,): its per-element NLL (in nats; `loss.recon:
    mse` drops the Gaussian's constant) summed or averaged over the non-batch dims. The same likelihood scores the
    run in vaelab.use.likelihood, so training and evaluation agree."""
    return _reduce(likelihood.loss(params, x), reduction)


TermFn = Callable[[_VAEOutputLike, Tensor, LossOptions], Tensor]  # (out, x, options) -> (B,)
WeightFn = Callable[["LossConfig"], "float | None"]  # the term's weight in this config; None: switched off


def _identity(v: Tensor) -> Tensor:
    return v


@dataclass(frozen=True)
class LossTerm:
    """One registered term: its per-sample value, its weight in a config, and what the weight multiplies."""

    value: TermFn
    weight: WeightFn
    penalty: Callable[[Tensor], Tensor] = _identity  # value -> what is minimised (SSIM -> 1 - SSIM)
    scheduled: bool = False  # the KL schedule multiplies the weight
    check: Callable[[tuple[int, ...]], str | None] = lambda shape: None  # noqa: E731  sample shape -> error or None
    key: str | None = None  # the config key of its weight; None: loss.extra_terms.<name>


def loss_term(name: str, *, weight: WeightFn | None = None, key: str | None = None, doc: str = "",
              **spec) -> Callable[[TermFn], TermFn]:
    """Register `fn(out, x, options) -> (B,)` as loss term `name`; without `weight`, the weight is read from
    `loss.extra_terms.<name>` (off when absent)."""

    def add(fn: TermFn) -> TermFn:
        read = weight if weight is not None else (lambda lc: lc.extra_terms.get(name))
        LOSS_TERMS.register(name, LossTerm(fn, read, key=key, **spec), doc=doc or (fn.__doc__ or "").strip())
        return fn

    return add


@loss_term("recon", weight=lambda lc: lc.alpha, key="loss.alpha", doc="reconstruction (loss.recon), weight alpha")
def _recon_term(out: _VAEOutputLike, x: Tensor, o: LossOptions) -> Tensor:
    if o.likelihood is not None:
        return reconstruction_nll(o.likelihood, out.x_logits, x, o.reduction)  # x_logits: the decoder output
    if o.recon_kind == "bce" and o.logits:
        return reconstruction(out.x_logits, x, "bce", logits=True, reduction=o.reduction)
    return reconstruction(out.x_hat, x, o.recon_kind, logits=False, reduction=o.reduction)


@loss_term("kl", weight=lambda lc: lc.kl_weight, key="loss.kl_weight", scheduled=True,
           doc="KL(q(z|x) || N(0, I)) with free bits, weight kl_weight times the KL schedule")
def _kl_term(out: _VAEOutputLike, x: Tensor, o: LossOptions) -> Tensor:
    return kl_divergence(out.posterior, o.reduction, o.free_bits)


def _needs_images(shape: tuple[int, ...]) -> str | None:
    if len(shape) >= 3:
        return None
    return f"loss.ssim needs image data (C, H, W) or volumes; this data is {tuple(shape)} per sample: set loss.ssim: false"


@loss_term("ssim", weight=lambda lc: lc.ssim_weight if lc.ssim else None, key="loss.ssim_weight",
           penalty=lambda v: 1.0 - v, check=_needs_images, doc="1 - SSIM of x_hat and x, on with loss.ssim, weight ssim_weight")
def _ssim_term(out: _VAEOutputLike, x: Tensor, o: LossOptions) -> Tensor:
    return ssim(out.x_hat, x, o.data_range)


@loss_term("sparse", weight=lambda lc: lc.lambd if lc.sparse else None, key="loss.lambd",
           doc="mean |mu| (seed 001), on with loss.sparse, weight lambd")
def _sparse_term(out: _VAEOutputLike, x: Tensor, o: LossOptions) -> Tensor:
    return sparsity(out.posterior.mean)


def _needs_rgb_or_grey_images(shape: tuple[int, ...]) -> str | None:
    if len(shape) == 3:
        return None
    return f"loss.adversarial needs 2-D images (C, H, W); this data is {tuple(shape)} per sample: drop loss.adversarial"


@loss_term("adversarial", weight=lambda lc: lc.adversarial.weight if lc.adversarial is not None else None,
           key="loss.adversarial", check=_needs_rgb_or_grey_images,
           doc="PatchGAN generator loss x the adaptive weight, from loss.adversarial.start_step (training/adversarial.py)")
def _adversarial_term(out: _VAEOutputLike, x: Tensor, o: LossOptions) -> Tensor:
    return o.critic.generator_term(out, x)


def _needs_16px_images(shape: tuple[int, ...]) -> str | None:
    if len(shape) == 3 and min(shape[1:]) >= 16 and shape[0] in (1, 3):
        return None
    return (f"loss.perceptual (LPIPS-VGG) needs grey or RGB images of at least 16x16 px; this data is {tuple(shape)} "
            "per sample: drop loss.perceptual")


@loss_term("perceptual", weight=lambda lc: lc.perceptual.weight if lc.perceptual is not None else None,
           key="loss.perceptual", check=_needs_16px_images,
           doc="LPIPS-VGG distance of x_hat and x from local weights (training/perceptual.py)")
def _perceptual_term(out: _VAEOutputLike, x: Tensor, o: LossOptions) -> Tensor:
    return o.perceptual(out.x_hat, x)


# ------------------------------------------------------------------------------------------ weighing


DEFAULT_WEIGHTS: Mapping[str, float] = {"recon": 1.0, "kl": 1.0}  # the plain negative ELBO


def term_weights(lc: "LossConfig") -> dict[str, float]:
    """{term: weight} of every term the loss config switches on, in registry order (recon and kl first)."""
    out = {}
    for entry in LOSS_TERMS.entries():
        w = entry.obj.weight(lc)
        if w is not None:
            out[entry.name] = float(w)
    return out


@dataclass
class LossTerms:
    """The weighted total and the batch mean of each term switched on (0-d tensors).

    `terms.<name>` reads a term's batch mean, None when that term is off; `ssim` is SSIM itself, not 1 - SSIM.
    """

    total: Tensor
    per_sample: Tensor  # (B,), the per-sample losses whose mean is `total`
    terms: dict[str, Tensor] = field(default_factory=dict)

    def __getattr__(self, name: str):
        if not name.startswith("_") and name in LOSS_TERMS:
            return self.__dict__.get("terms", {}).get(name)
        raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")

    def to_floats(self) -> dict[str, float]:
        """The total and each term switched on as Python floats (for logging)."""
        return {"total": float(self.total.detach()), **{n: float(v.detach()) for n, v in self.terms.items()}}


def weigh_terms(out: _VAEOutputLike, x: Tensor, weights: Mapping[str, float], options: LossOptions,
                kl_scale: float = 1.0) -> LossTerms:
    """sum over terms of weight * penalty(term), the scheduled ones (KL) also times `kl_scale`."""
    total = per_sample = None
    means: dict[str, Tensor] = {}
    for name, weight in weights.items():
        term: LossTerm = LOSS_TERMS.get(name)
        value = term.value(out, x, options)  # (B,)
        means[name] = mean = value.mean()
        coef = weight * kl_scale if term.scheduled else weight
        t, b = coef * term.penalty(mean), coef * term.penalty(value)
        total, per_sample = (t, b) if total is None else (total + t, per_sample + b)
    if total is None:
        raise ConfigError("the loss has no terms: give at least one weight")
    return LossTerms(total=total, per_sample=per_sample, terms=means)


def vae_loss(
    out: _VAEOutputLike,
    x: Tensor,
    weights: Mapping[str, float] = DEFAULT_WEIGHTS,
    *,
    recon_kind: ReconKind = "bce",
    logits: bool = True,
    reduction: Reduction = "sum",
    kl_scale: float = 1.0,
    free_bits: float = 0.0,
    data_range: float = 1.0,
) -> LossTerms:
    """Weighted VAE loss: alpha*recon + kl_scale*kl_weight*KL + ssim_weight*(1-SSIM) + lambd*mean|mu| (seed 001).

    weights: {term: weight}, e.g. `term_weights(config.loss)`; terms not named are off.
    logits: the decoder ends in sigmoid, so bce uses `out.x_logits` with BCE-with-logits; otherwise bce uses
        `out.x_hat`. mse always compares `out.x_hat`, the decoder output after its activation.
    kl_scale: the KL schedule's value at this step.
    """
    options = LossOptions(recon_kind, logits, reduction, free_bits, data_range)
    return weigh_terms(out, x, weights, options, kl_scale)
