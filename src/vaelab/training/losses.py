"""VAE loss terms as pure functions returning per-sample (B,) tensors, and `vae_loss` that weighs them.

Every function computes in float32 (inputs are cast with `.float()`), so the loss is the same under autocast.
Reductions over the non-batch dims: `"sum"` adds them per sample (a log-likelihood in nats),
`"mean"` averages them (seed 003's convention: mean BCE + alpha * mean KL).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim as _msssim_ssim
from torch import Tensor

from vaelab.model.distributions import DiagonalGaussian
from vaelab.core.errors import ConfigError

Reduction = Literal["sum", "mean"]
ReconKind = Literal["bce", "mse"]

SSIM_WIN_SIZE, SSIM_WIN_SIGMA = 11, 1.5
_PROB_EPS = 1e-7  # clamp for plain BCE on probabilities
_LOG_2PI = math.log(2.0 * math.pi)


def _reduce(t: Tensor, reduction: Reduction) -> Tensor:
    """(B, ...) -> (B,) by summing or averaging the non-batch dims."""
    flat = t.reshape(t.shape[0], -1)
    if reduction == "sum":
        return flat.sum(dim=1)
    if reduction == "mean":
        return flat.mean(dim=1)
    raise ConfigError(f"loss.reduction must be 'sum' or 'mean', got {reduction!r}")


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


@dataclass(frozen=True)
class LossWeights:
    """total = alpha*recon + kl_weight*KL + ssim*beta*(1-SSIM) + sparse*lambd*mean|mu| (seed 001's formula)."""

    alpha: float = 1.0
    kl_weight: float = 1.0
    ssim: bool = False
    beta: float = 1.0
    sparse: bool = False
    lambd: float = 0.0


@dataclass
class LossTerms:
    """Batch means of each term (0-d tensors); `ssim` is SSIM itself, not 1 - SSIM. Terms switched off are None."""

    total: Tensor
    recon: Tensor
    kl: Tensor
    ssim: Tensor | None
    sparse: Tensor | None
    per_sample: Tensor  # (B,), the per-sample losses whose mean is `total`

    def to_floats(self) -> dict[str, float]:
        """The scalar terms as Python floats (for logging), skipping the ones switched off."""
        names = ("total", "recon", "kl", "ssim", "sparse")
        return {n: float(getattr(self, n).detach()) for n in names if getattr(self, n) is not None}


class _VAEOutputLike(Protocol):
    x_logits: Tensor
    x_hat: Tensor
    posterior: DiagonalGaussian


def vae_loss(
    out: _VAEOutputLike,
    x: Tensor,
    weights: LossWeights = LossWeights(),
    *,
    recon_kind: ReconKind = "bce",
    logits: bool = True,
    reduction: Reduction = "sum",
    kl_scale: float = 1.0,
    free_bits: float = 0.0,
    data_range: float = 1.0,
) -> LossTerms:
    """Weighted VAE loss: alpha*recon + kl_scale*kl_weight*KL + ssim*beta*(1-SSIM) + sparse*lambd*mean|mu|.

    logits: the decoder ends in sigmoid, so bce uses `out.x_logits` with BCE-with-logits; otherwise bce uses
        `out.x_hat`. mse always compares `out.x_hat`, the decoder output after its activation.
    kl_scale: the KL schedule's value at this step.
    data_range: SSIM data range (1.0 for [0, 1] data, 2.0 for [-1, 1]).
    """
    w = weights
    if recon_kind == "bce" and logits:
        rec_b = reconstruction(out.x_logits, x, "bce", logits=True, reduction=reduction)
    else:
        rec_b = reconstruction(out.x_hat, x, recon_kind, logits=False, reduction=reduction)
    kl_b = kl_divergence(out.posterior, reduction, free_bits)
    kl_coef = kl_scale * w.kl_weight

    recon, kl = rec_b.mean(), kl_b.mean()
    total = w.alpha * recon + kl_coef * kl
    per_sample = w.alpha * rec_b + kl_coef * kl_b
    ssim_mean = sparse_mean = None
    if w.ssim:
        ssim_b = ssim(out.x_hat, x, data_range)
        ssim_mean = ssim_b.mean()
        total = total + w.beta * (1.0 - ssim_mean)
        per_sample = per_sample + w.beta * (1.0 - ssim_b)
    if w.sparse:
        sparse_b = sparsity(out.posterior.mean)
        sparse_mean = sparse_b.mean()
        total = total + w.lambd * sparse_mean
        per_sample = per_sample + w.lambd * sparse_b
    return LossTerms(total=total, recon=recon, kl=kl, ssim=ssim_mean, sparse=sparse_mean, per_sample=per_sample)
