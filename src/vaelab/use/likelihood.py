"""Per-item negative ELBO and importance-weighted NLL (Burda et al. 2016), all K samples of a batch at once.

The decoder likelihood p(x|z) is the model's own (`model.likelihood`, vaelab.model.likelihoods): the one the run
was trained with, so k=1 reproduces the training loss (with `loss.reduction: sum`, alpha=1, kl_weight=1), up to
the constant a `loss.recon: mse` run leaves out of its training loss. Values are true nats: a Bernoulli on grey
values is the cross-entropy (see continuous_bernoulli for a normalised density on [0, 1]).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from vaelab.model.distributions import DiagonalGaussian, standard_normal_log_prob
from vaelab.model.likelihoods import Likelihood
from vaelab.model.vae import VAE
from vaelab.core.errors import ArgumentError
from vaelab.core.progress import advance

GAUSSIAN_SIGMA = math.sqrt(0.5)  # loss.recon mse: the squared error is the Gaussian NLL with sigma^2 = 1/2, less a constant
CHUNK_ELEMENTS = 2**24  # decoder outputs held at once (K_chunk * B * D floats), about 64 MB of float32


def log_likelihood(model: VAE, z: Tensor, x: Tensor, c: Tensor | None, likelihood: Likelihood | None = None) -> Tensor:
    """log p(x|z) per row of z (decoder units) -> (M,); x and c already repeated to M rows. The model's likelihood
    unless another is given."""
    lik = likelihood if likelihood is not None else model.likelihood
    return -lik.nll_per_sample(model.decoder_output(z, c), x)


def iw_nll_from_posterior(
    model: VAE, posterior: DiagonalGaussian, x: Tensor, c: Tensor | None, eps: Tensor, likelihood: Likelihood | None = None
) -> Tensor:
    """-log (1/K) sum_k p(x, z_k) / q(z_k|x) with z_k = mean + std * eps[k] -> (B,).

    eps: (K, B, *latent) standard-normal noise. The K*B decoder passes go through in chunks over K (at most
    CHUNK_ELEMENTS decoder outputs at once: 256 per value for categorical256) and the log-sum-exp is accumulated
    chunk by chunk, so memory does not grow with K. Differentiable (likelihood regret re-fits through it).
    k=1 is the negative ELBO with the KL estimated by one sample; `batch_nll` with k=1 uses the analytic KL.
    """
    k, b = eps.shape[0], eps.shape[1]
    lik = likelihood if likelihood is not None else model.likelihood
    d = max(1, x[0].numel() * lik.params_per_value)  # decoder outputs per item (256 per value for categorical256)
    chunk = max(1, min(k, CHUNK_ELEMENTS // max(1, b * d)))
    mean, std = posterior.mean, posterior.std
    acc = torch.full((b,), -math.inf, dtype=torch.float32, device=mean.device)  # log sum_k w_k so far
    for s in range(0, k, chunk):
        e = eps[s : s + chunk]  # (k', B, *latent)
        kk = e.shape[0]
        z = (mean.unsqueeze(0) + std.unsqueeze(0) * e).reshape(kk * b, *mean.shape[1:])  # (k'B, *latent)
        xr = x.unsqueeze(0).expand(kk, *x.shape).reshape(kk * b, *x.shape[1:])
        cr = None if c is None else c.unsqueeze(0).expand(kk, *c.shape).reshape(kk * b, *c.shape[1:])
        lp_x = log_likelihood(model, z, xr, cr, likelihood)  # (k'B,)
        lp_z = standard_normal_log_prob(z)
        post_rep = DiagonalGaussian(mean.unsqueeze(0).expand(kk, *mean.shape).reshape(z.shape),
                                    posterior.logvar.unsqueeze(0).expand(kk, *mean.shape).reshape(z.shape))
        lq_z = post_rep.log_prob(z)
        part = torch.logsumexp((lp_x + lp_z - lq_z).view(kk, b), dim=0)
        acc = torch.logaddexp(acc, part)
    return -(acc - math.log(k))


@torch.inference_mode()
def batch_nll(
    model: VAE, x: Tensor, c: Tensor | None, *, k: int, likelihood: Likelihood | None, generator: torch.Generator | None
) -> Tensor:
    """Negative ELBO (k=1, one draw, analytic KL) or IW-NLL with k samples for one batch -> (B,)."""
    post = model.encode(x, c)
    eps = torch.randn((k, *post.mean.shape), generator=generator, dtype=post.mean.dtype, device=post.mean.device)
    if k == 1:
        z = post.mean + post.std * eps[0]
        return -log_likelihood(model, z, x, c, likelihood) + post.kl()
    return iw_nll_from_posterior(model, post, x, c, eps, likelihood)


def nll(
    model: VAE,
    x: Tensor,
    y: Tensor | None = None,
    *,
    k: int = 1,
    batch_size: int = 256,
    generator: torch.Generator | None = None,
    likelihood: Likelihood | None = None,
) -> Tensor:
    """Per-item NLL in nats -> (N,): negative ELBO for k=1, importance-weighted NLL with k samples otherwise, under
    the model's likelihood (or `likelihood`)."""
    if k < 1:
        raise ArgumentError(f"--k must be >= 1 importance samples, got {k}")
    if batch_size < 1:
        raise ArgumentError(f"batch_size must be >= 1, got {batch_size}")
    model.eval()
    p = next(model.parameters())
    # keep K*B decoder rows per chunk near the budget: fewer items per batch when K is large
    out = []
    for s in range(0, x.shape[0], batch_size):
        xb = x[s : s + batch_size].to(p.device, p.dtype)
        yb = None if y is None else y[s : s + batch_size].to(p.device)
        c = model.condition_vector(yb)
        out.append(batch_nll(model, xb, c, k=k, likelihood=likelihood, generator=generator).cpu())
        advance(xb.shape[0])  # the open progress stage, if any (vaelab.core.progress)
    return torch.cat(out) if out else torch.zeros(0)


__all__ = ["nll", "batch_nll", "iw_nll_from_posterior", "log_likelihood", "GAUSSIAN_SIGMA"]
