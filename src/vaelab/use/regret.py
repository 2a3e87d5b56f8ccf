"""Likelihood regret (Xiao et al. 2020): per input, fine-tune a copy of the encoder with the decoder frozen and
measure how much the NLL drops. In-distribution inputs are already well encoded, so their regret is small.

`regret_scores` runs the per-input optimisations together: the encoder parameters are stacked into one copy per
input and evaluated with per-input layer kernels (`regret_layers`: grouped convolutions, batched matmuls; vmap
for any other layer), so one Adam step updates every copy at once (Adam is
elementwise, so Adam on the stacked tensors is exactly one Adam per copy when the objective is the sum of the
per-input losses). `regret_scores_loop` is the reference one-input-at-a-time loop (deepcopy + Adam per input, as in
the paper's code); both draw their noise from the same pre-drawn tensors, so they agree up to float rounding.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor, nn

from vaelab.model.vae import VAE
from vaelab.model.likelihoods import Likelihood
from vaelab.use.likelihood import iw_nll_from_posterior, log_likelihood
from vaelab.model.distributions import DiagonalGaussian
from vaelab.use.regret_layers import encode_per_input
from vaelab.use.regret_linear import input_linear_index, regret_batch_linear
from vaelab.core.errors import ArgumentError
from vaelab.core.progress import advance

ENCODER_PREFIXES = ("encoder.", "mu_head.", "logvar_head.")


@contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    """Decoder (all) parameters frozen, and torch's fused attention fast path off: its kernel
    (_transformer_encoder_layer_fwd) has neither a vmap rule nor a derivative. Both restored on exit."""
    flags = [p.requires_grad for p in model.parameters()]
    fast = torch.backends.mha.get_fastpath_enabled()
    for p in model.parameters():
        p.requires_grad_(False)
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)


def _noise(model: VAE, x: Tensor, c: Tensor | None, steps: int, k: int, generator: torch.Generator | None):
    """(train (S, N, *latent), eval (K, N, *latent)) standard-normal noise, drawn per item from its own seed, so the
    batched path and the loop see the same noise whatever the batch size."""
    with torch.no_grad():
        shape = model.encode(x[:1], None if c is None else c[:1]).mean.shape[1:]
    seeds = torch.randint(0, 2**62, (x.shape[0],), generator=generator).tolist()
    train, evals = [], []
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        train.append(torch.randn((steps, *shape), generator=g))
        evals.append(torch.randn((k, *shape), generator=g))
    return torch.stack(train, dim=1), torch.stack(evals, dim=1)


def _elbo_loss(model: VAE, mean: Tensor, logvar: Tensor, eps: Tensor, x: Tensor, c: Tensor | None,
               lik: Likelihood | None) -> Tensor:
    post = DiagonalGaussian(mean, logvar)
    z = post.mean + post.std * eps
    return -log_likelihood(model, z, x, c, lik) + post.kl()  # (B,)


class _StackedAdam:
    """torch.optim.Adam's update (amsgrad off) on stacked per-input copies (B, *param), with `step(grads)`.

    Adam is elementwise, so one Adam over the stacked tensors is exactly one Adam per copy when the objective is the
    sum of the per-input losses. The batched re-fit's speed on CPU is bound by passes over the (B x params) tensors,
    so this is torch's fused Adam (one pass reading parameter, gradient and both moments, fused=True): measured on
    seed003-conv with 128 copies, 0.04 ms per input and step against 0.13 ms for a hand-written torch._foreach_
    version (five passes) and more for the default foreach Adam.
    weight_decay: added to the gradient (L2, as torch.optim.Adam's weight_decay and the paper's code).
    """

    def __init__(self, params: list[Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        self.params = params
        self.opt = torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, fused=True)

    @torch.no_grad()
    def step(self, grads: tuple[Tensor, ...] | list[Tensor]) -> None:
        for p, g in zip(self.params, grads):
            p.grad = g if g.stride() == p.stride() else g.contiguous()
        self.opt.step()
        for p in self.params:
            p.grad = None


# Xiao, Yan & Amit (2020), compute_LR.py: Adam(lr 2e-4, betas (0.9, 0.999), weight_decay 5e-5) on a copy of the
# whole encoder (eval mode), 100 steps on the one-sample negative ELBO of the single input, NLL before and after
# from 1000 importance samples (200 repeats x 5 batches).
PAPER_STEPS, PAPER_LR, PAPER_WEIGHT_DECAY, PAPER_K = 100, 2e-4, 5e-5, 1000
MEMORY_BUDGET = 2**29  # bytes for the stacked copies (parameters, gradients, 2 Adam moments, one temporary)


def _check(steps: int, lr: float, k: int, weight_decay: float = 0.0) -> None:
    if steps < 1:
        raise ArgumentError(f"--regret-steps must be >= 1 fine-tuning steps, got {steps}")
    if not lr > 0 or lr == float("inf"):  # also NaN
        raise ArgumentError(f"--regret-lr must be a finite number > 0, got {lr}")
    if k < 1:
        raise ArgumentError(f"--k must be >= 1, got {k}")
    if not weight_decay >= 0 or weight_decay == float("inf"):  # also NaN
        raise ArgumentError(f"--regret-weight-decay must be >= 0, got {weight_decay}")


def auto_batch(model: VAE, budget: int = MEMORY_BUDGET, cap: int = 128, skip: int | None = None) -> int:
    """Inputs re-fitted together: as many encoder copies (x5 for gradients, Adam moments, temporaries) as fit in
    `budget` bytes, at most `cap` (beyond ~128 the per-op overhead is already amortised). skip: the index of an
    encoder layer kept in factored form (not copied)."""
    skipped = f"encoder.{skip}." if skip is not None else None
    n = sum(p.numel() * p.element_size() for name, p in model.named_parameters()
            if name.startswith(ENCODER_PREFIXES) and not (skipped and name.startswith(skipped)))
    return max(1, min(cap, budget // max(1, 5 * n)))


def regret_scores(
    model: VAE,
    x: Tensor,
    y: Tensor | None = None,
    *,
    steps: int = PAPER_STEPS,
    lr: float = PAPER_LR,
    weight_decay: float = PAPER_WEIGHT_DECAY,
    k: int = PAPER_K,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    likelihood: Likelihood | None = None,
    factored: bool = True,
) -> Tensor:
    """Likelihood regret per item in nats -> (N,): NLL(x; encoder) - NLL(x; encoder re-fitted to x alone).

    Defaults are the paper's (see PAPER_*). steps, lr, weight_decay: Adam (L2 weight decay, as torch.optim.Adam
    and the paper's code) on the negative ELBO of that one input, one reparameterised draw per step.
    k: importance samples for the NLL before and after (the same noise both times); k=1 is the negative ELBO.
    batch_size: inputs re-fitted together; None picks as many as fit in MEMORY_BUDGET (`auto_batch`).
    factored: when the encoder starts with an nn.Linear on the (flattened) input, keep that layer's per-input
        weights in factored form (`regret_linear`): exact without weight decay; with it, that one layer is re-fitted
        without decay (L2 decay breaks the rank-1 structure that makes the factoring exact). Measured on
        examples-mlp, 64 MNIST vs 64 Fashion-MNIST, 100 steps: AUROC 0.8943 without decay vs 0.8940 with it
        everywhere; single regrets moved by 0.29 nats on average. False: full copies of every layer, exact.
    """
    _check(steps, lr, k, weight_decay)
    model.eval()
    lik = likelihood  # None: the model's own, the one it was trained with
    c_all = model.condition_vector(y)
    eps_train, eps_eval = _noise(model, x, c_all, steps, k, generator)
    names = [n for n, _ in model.named_parameters() if n.startswith(ENCODER_PREFIXES)]
    base = dict(model.named_parameters())
    fast_idx = input_linear_index(model) if factored else None
    batch_size = batch_size or auto_batch(model, skip=fast_idx)
    out = []
    with _frozen(model):
        for s in range(0, x.shape[0], batch_size):
            xb = x[s : s + batch_size]
            cb = None if c_all is None else c_all[s : s + batch_size]
            b = xb.shape[0]
            with torch.no_grad():
                before = iw_nll_from_posterior(model, model.encode(xb, cb), xb, cb, eps_eval[:, s : s + b], lik)
            if fast_idx is not None:
                after = regret_batch_linear(
                    model, fast_idx, xb, cb, eps_train[:, s : s + b], eps_eval[:, s : s + b], lr,
                    loss_fn=lambda mean, logvar, e, xb=xb, cb=cb: _elbo_loss(model, mean, logvar, e, xb, cb, lik),
                    nll_fn=lambda post, e, xb=xb, cb=cb: iw_nll_from_posterior(model, post, xb, cb, e, lik),
                    adam_cls=lambda params, lr_: _StackedAdam(params, lr_, weight_decay=weight_decay))
                out.append((before - after).detach())
                advance(b)  # the open progress stage, if any (vaelab.core.progress)
                continue
            stacked = {n: base[n].detach().unsqueeze(0).repeat(b, *([1] * base[n].dim())).requires_grad_(True) for n in names}
            adam = _StackedAdam(list(stacked.values()), lr, weight_decay=weight_decay)
            for t in range(steps):
                mean, logvar = encode_per_input(model, stacked, xb, cb)
                loss = _elbo_loss(model, mean, logvar, eps_train[t, s : s + b], xb, cb, lik).sum()
                adam.step(torch.autograd.grad(loss, list(stacked.values())))
            with torch.no_grad():
                mean, logvar = encode_per_input(model, stacked, xb, cb)
                after = iw_nll_from_posterior(model, DiagonalGaussian(mean, logvar), xb, cb, eps_eval[:, s : s + b], lik)
            out.append((before - after).detach())
            advance(b)
    return torch.cat(out) if out else torch.zeros(0)


def regret_scores_loop(
    model: VAE,
    x: Tensor,
    y: Tensor | None = None,
    *,
    steps: int = PAPER_STEPS,
    lr: float = PAPER_LR,
    weight_decay: float = PAPER_WEIGHT_DECAY,
    k: int = PAPER_K,
    generator: torch.Generator | None = None,
    likelihood: Likelihood | None = None,
) -> Tensor:
    """Reference: the same regret one input at a time (a deepcopy of the model and a fresh torch.optim.Adam per
    input, as the paper's compute_LR.py)."""
    _check(steps, lr, k, weight_decay)
    model.eval()
    lik = likelihood  # None: the model's own, the one it was trained with
    c_all = model.condition_vector(y)
    eps_train, eps_eval = _noise(model, x, c_all, steps, k, generator)
    with _frozen(model):  # the copies below re-enable their encoder's gradients
        return _loop(model, x, c_all, eps_train, eps_eval, steps, lr, weight_decay, lik)


def _loop(model, x, c_all, eps_train, eps_eval, steps, lr, weight_decay, lik) -> Tensor:
    out = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1]
        ci = None if c_all is None else c_all[i : i + 1]
        copy_ = copy.deepcopy(model)
        params = [p for n, p in copy_.named_parameters() if n.startswith(ENCODER_PREFIXES)]
        for n, p in copy_.named_parameters():
            p.requires_grad_(n.startswith(ENCODER_PREFIXES))
        with torch.no_grad():
            before = iw_nll_from_posterior(copy_, copy_.encode(xi, ci), xi, ci, eps_eval[:, i : i + 1], lik)
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
        for t in range(steps):
            opt.zero_grad(set_to_none=True)
            post = copy_.encode(xi, ci)
            _elbo_loss(copy_, post.mean, post.logvar, eps_train[t, i : i + 1], xi, ci, lik).sum().backward()
            opt.step()
        with torch.no_grad():
            after = iw_nll_from_posterior(copy_, copy_.encode(xi, ci), xi, ci, eps_eval[:, i : i + 1], lik)
        out.append(before - after)
    return torch.cat(out) if out else torch.zeros(0)


__all__ = ["regret_scores", "regret_scores_loop"]
