"""Per-item negative ELBO and importance-weighted NLL (Burda et al. 2016), all K samples of a batch at once.

The decoder likelihood p(x|z) is the model's own (`model.likelihood`, vaelab.model.likelihoods): the one the run
was trained with, so k=1 reproduces the training loss (with `loss.reduction: sum`, alpha=1, kl_weight=1), up to
the constant a `loss.recon: mse` run leaves out of its training loss. Values are true nats: a Bernoulli on grey
values is the cross-entropy (see continuous_bernoulli for a normalised density on [0, 1]).
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from torch import Tensor

from vaelab.model.distributions import DiagonalGaussian, standard_normal_log_prob
from vaelab.model.layout import channels_last_weights
from vaelab.model.likelihoods import Likelihood
from vaelab.model.vae import VAE
from vaelab.core.errors import ArgumentError
from vaelab.core.progress import advance

GAUSSIAN_SIGMA = math.sqrt(0.5)  # loss.recon mse: the squared error is the Gaussian NLL with sigma^2 = 1/2, less a constant
CHUNK_ELEMENTS = 2**24  # decoder outputs held at once (K_chunk * B * D floats), about 64 MB of float32
# Without gradients, chunks of 4 MiB: the last layer's output is still in cache when the likelihood reads it
# (categorical256: 5 samples a chunk, ~2x faster per sample than 64 MB chunks on a 32 MiB-L3 CPU; benchmarks/bench_iw_eval.py)
INFERENCE_CHUNK_ELEMENTS = 2**20


def log_likelihood(model: VAE, z: Tensor, x: Tensor, c: Tensor | None, likelihood: Likelihood | None = None) -> Tensor:
    """log p(x|z) per row of z (decoder units) -> (M,); x and c already repeated to M rows. The model's likelihood
    unless another is given."""
    lik = likelihood if likelihood is not None else model.likelihood
    return -lik.nll_per_sample(model.decoder_output(z, c), x)


def iw_nll_from_posterior(
    model: VAE, posterior: DiagonalGaussian, x: Tensor, c: Tensor | None, eps: Tensor, likelihood: Likelihood | None = None,
    *, chunk_elements: int | None = None,
) -> Tensor:
    """-log (1/K) sum_k p(x, z_k) / q(z_k|x) with z_k = mean + std * eps[k] -> (B,).

    eps: (K, B, *latent) standard-normal noise. The K*B decoder passes go through in chunks over K (at most
    `chunk_elements` decoder outputs at once, default CHUNK_ELEMENTS: 256 per value for categorical256) and the
    log-sum-exp is accumulated chunk by chunk, so memory does not grow with K. Differentiable (likelihood regret
    re-fits through it). k=1 is the negative ELBO with the KL estimated by one sample; `batch_nll` with k=1 uses
    the analytic KL.
    """
    k, b = eps.shape[0], eps.shape[1]
    lik = likelihood if likelihood is not None else model.likelihood
    d = max(1, x[0].numel() * lik.params_per_value)  # decoder outputs per item (256 per value for categorical256)
    budget = CHUNK_ELEMENTS if chunk_elements is None else chunk_elements
    chunk = max(1, min(k, budget // max(1, b * d)))
    mean, std = posterior.mean, posterior.std
    z_all = mean.unsqueeze(0) + std.unsqueeze(0) * eps  # (K, B, *latent): small, so the prior and posterior
    flat = z_all.reshape(k * b, *mean.shape[1:])  # terms go in one pass and the loop only decodes
    post_rep = DiagonalGaussian(mean.unsqueeze(0).expand(k, *mean.shape).reshape(flat.shape),
                                posterior.logvar.unsqueeze(0).expand(k, *mean.shape).reshape(flat.shape))
    log_ratio = (standard_normal_log_prob(flat) - post_rep.log_prob(flat)).view(k, b)  # log p(z_k) - log q(z_k|x)
    acc = torch.full((b,), -math.inf, dtype=torch.float32, device=mean.device)  # log sum_k w_k so far
    for s in range(0, k, chunk):
        kk = min(chunk, k - s)
        z = z_all[s : s + kk].reshape(kk * b, *mean.shape[1:])  # (k'B, *latent)
        xr = x.unsqueeze(0).expand(kk, *x.shape).reshape(kk * b, *x.shape[1:])
        cr = None if c is None else c.unsqueeze(0).expand(kk, *c.shape).reshape(kk * b, *c.shape[1:])
        lp_x = log_likelihood(model, z, xr, cr, likelihood)  # (k'B,)
        part = torch.logsumexp(lp_x.view(kk, b) + log_ratio[s : s + kk], dim=0)
        acc = torch.logaddexp(acc, part)
    return -(acc - math.log(k))


def item_seed(seed: int, index: int) -> int:
    """The seed of item `index`'s own noise stream under run seed `seed` (numpy's SeedSequence mixes the pair):
    an item's draws do not depend on which batch or shard it is evaluated in."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def item_noise(shape: tuple[int, ...], seed: int, first_item: int, count: int, k: int, like: Tensor) -> Tensor:
    """(K, count, *shape) standard-normal draws, column i from item (first_item + i)'s own stream."""
    cols = [torch.randn((k, *shape), generator=torch.Generator().manual_seed(item_seed(seed, first_item + i)))
            for i in range(count)]
    return torch.stack(cols, dim=1).to(device=like.device, dtype=like.dtype)


@torch.inference_mode()
def batch_nll(
    model: VAE, x: Tensor, c: Tensor | None, *, k: int, likelihood: Likelihood | None, generator: torch.Generator | None,
    item_seeds: tuple[int, int] | None = None,
) -> Tensor:
    """Negative ELBO (k=1, one draw, analytic KL) or IW-NLL with k samples for one batch -> (B,).

    item_seeds=(seed, index of the batch's first item): each item's draws from its own stream (`item_seed`)
    instead of `generator`. Decoder outputs go through in chunks of INFERENCE_CHUNK_ELEMENTS."""
    post = model.encode(x, c)
    if item_seeds is not None:
        eps = item_noise(tuple(post.mean.shape[1:]), item_seeds[0], item_seeds[1], x.shape[0], k, post.mean)
    else:
        eps = torch.randn((k, *post.mean.shape), generator=generator, dtype=post.mean.dtype, device=post.mean.device)
    if k == 1:
        z = post.mean + post.std * eps[0]
        return -log_likelihood(model, z, x, c, likelihood) + post.kl()
    return iw_nll_from_posterior(model, post, x, c, eps, likelihood, chunk_elements=INFERENCE_CHUNK_ELEMENTS)


def nll(
    model: VAE,
    x: Tensor,
    y: Tensor | None = None,
    *,
    k: int = 1,
    batch_size: int = 256,
    generator: torch.Generator | None = None,
    likelihood: Likelihood | None = None,
    seed: int | None = None,
    first_item: int = 0,
) -> Tensor:
    """Per-item NLL in nats -> (N,): negative ELBO for k=1, importance-weighted NLL with k samples otherwise, under
    the model's likelihood (or `likelihood`).

    seed: draw item i's samples from its own stream, seeded from (seed, first_item + i), so its value is the same
    whatever the batch size or the slice of the data it is computed in (shards of a long evaluation); otherwise
    from `generator`. On CPU, conv weights run channels-last meanwhile (vaelab.model.layout: the same values to
    float rounding, ~2x faster for wide decoder outputs); the model is left as it was."""
    if k < 1:
        raise ArgumentError(f"--k must be >= 1 importance samples, got {k}")
    if batch_size < 1:
        raise ArgumentError(f"batch_size must be >= 1, got {batch_size}")
    if seed is not None and (seed < 0 or first_item < 0):
        raise ArgumentError(f"--seed must be >= 0 for per-item noise streams, got {seed} (first item {first_item})")
    model.eval()
    p = next(model.parameters())
    out = []
    with channels_last_weights(model) if p.device.type == "cpu" else contextlib.nullcontext():  # measured on CPU
        for s in range(0, x.shape[0], batch_size):
            xb = x[s : s + batch_size].to(p.device, p.dtype)
            yb = None if y is None else y[s : s + batch_size].to(p.device)
            c = model.condition_vector(yb)
            seeds = None if seed is None else (seed, first_item + s)
            out.append(batch_nll(model, xb, c, k=k, likelihood=likelihood, generator=generator, item_seeds=seeds).cpu())
            advance(xb.shape[0])  # the open progress stage, if any (vaelab.core.progress)
    return torch.cat(out) if out else torch.zeros(0)


__all__ = ["nll", "batch_nll", "iw_nll_from_posterior", "log_likelihood", "item_seed", "item_noise", "GAUSSIAN_SIGMA",
           "CHUNK_ELEMENTS", "INFERENCE_CHUNK_ELEMENTS"]
