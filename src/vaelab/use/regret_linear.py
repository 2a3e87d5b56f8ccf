"""Likelihood regret with the encoder's input layer factored out: the batched fast path for encoders whose first
parametrised layer is an nn.Linear fed a fixed function of the input (Flatten, plus the condition).

Why it is exact: for one input, the gradient of that layer's weight is an outer product a_t u^T, with u the layer's
input, fixed across the fine-tuning steps. Adam's moments are then m_t u^T and v_t (u^2)^T, where m_t, v_t are the
moments of the bias gradient a_t, so each step's weight change applied to u is
    dW_t u = -step_t * m_t * sum_k u_k^2 / (r_t |u_k| + eps),  r_t = sqrt(v_t) / sqrt(1 - beta2^t)
per output unit: a (B, H) tensor per step instead of a (B, H, D) weight copy plus two Adam moments. The layers
after it are fine-tuned as stacked copies with per-input kernels, as in `regret.regret_scores`.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from vaelab.model.distributions import DiagonalGaussian
from vaelab.model.vae import VAE, run_layers
from vaelab.use.regret_layers import encode_per_input

F_CHUNK_ELEMENTS = 2**23  # (B', H, D) temporaries in the weight-update sum, about 32 MB


def input_linear_index(model: VAE) -> int | None:
    """Index of the encoder's first parametrised layer if it is an nn.Linear on a fixed function of (x, c)."""
    for i, layer in enumerate(model.encoder):
        if any(True for _ in layer.parameters(recurse=True)):
            return i if isinstance(layer, nn.Linear) and model.condition_after <= i else None
        if not isinstance(layer, (nn.Flatten, nn.Identity)):
            return None
    return None


def _layer_input(model: VAE, idx: int, x: Tensor, c: Tensor | None) -> Tensor:
    """The input of encoder layer `idx` (the condition joined where the model joins it, at or before idx)."""
    return run_layers(list(model.encoder)[:idx], x, c, model.condition_after)


def _distinct_values(u: Tensor) -> tuple[Tensor, Tensor]:
    """(B, D) -> (|u| values, weights) (B, Q): the distinct nonzero |u_k| of each row and count * value^2, padded
    with zero weight, so sum_q w_q / (r v_q + eps) == sum_k u_k^2 / (r |u_k| + eps) (zeros add nothing).
    8-bit images have at most 255 distinct nonzero values, usually far fewer than pixels."""
    absu = u.abs()
    rows = [torch.unique(a[a > 0], return_counts=True) for a in absu]
    q = max(1, max(len(v) for v, _ in rows))
    vals = torch.zeros(u.shape[0], q, dtype=u.dtype)
    weights = torch.zeros(u.shape[0], q, dtype=u.dtype)
    for i, (v, n) in enumerate(rows):
        vals[i, : len(v)] = v
        weights[i, : len(v)] = n.to(u.dtype) * v * v
    return vals, weights


def _weight_step_sum(r: Tensor, absu: Tensor, u2: Tensor, eps: float, buf: Tensor) -> Tensor:
    """sum_k u2_k / (r_j absu_k + eps) -> (B, H), in chunks of buf's first dim: the (B', H, Q) terms are built in
    place in `buf` (reused every step: a fresh tensor of this size per step costs page faults that outweigh the
    arithmetic on CPU) by a broadcast product, an in-place inverse and a product with u2, then summed."""
    b = r.shape[0]
    chunk = buf.shape[0]
    out = []
    for s in range(0, b, chunk):
        n = min(chunk, b - s)
        t = torch.mul(r[s : s + n, :, None], absu[s : s + n, None, :], out=buf[:n])  # (B', H, Q)
        t.add_(eps).reciprocal_().mul_(u2[s : s + n, None, :])
        out.append(t.sum(-1))  # (B', H)
    return torch.cat(out)


def regret_batch_linear(model: VAE, idx: int, xb: Tensor, cb: Tensor | None, eps_train: Tensor, eps_eval: Tensor,
                        lr: float, loss_fn, nll_fn, adam_cls, betas=(0.9, 0.999), eps: float = 1e-8) -> Tensor:
    """Regret for one batch (B,) with the factored input layer; `loss_fn(mean, logvar, eps)` -> (B,) negative ELBO,
    `nll_fn(posterior, eps_eval)` -> (B,) NLL; `adam_cls` the stacked Adam for the other layers."""
    layer: nn.Linear = model.encoder[idx]
    b = xb.shape[0]
    u = _layer_input(model, idx, xb, cb).detach()  # (B, D), fixed
    if u.dim() != 2:
        raise ValueError("factored regret needs a flat input to the first Linear")
    absu, u2 = _distinct_values(u)
    h0 = (u @ layer.weight.detach().T + (0 if layer.bias is None else layer.bias.detach())).detach()  # (B, H)
    prefix = ("encoder.",)
    names = [n for n, _ in model.named_parameters()
             if (n.startswith(prefix) and int(n.split(".")[1]) > idx) or n.startswith(("mu_head.", "logvar_head."))]
    base = dict(model.named_parameters())
    stacked = {n: base[n].detach().unsqueeze(0).repeat(b, *([1] * base[n].dim())).requires_grad_(True) for n in names}

    def run_rest(params: dict[str, Tensor], h: Tensor) -> tuple[Tensor, Tensor]:
        return encode_per_input(model, params, h, None, start=idx + 1)

    adam = adam_cls(list(stacked.values()), lr) if names else None
    chunk = max(1, min(b, F_CHUNK_ELEMENTS // max(1, h0.shape[1] * absu.shape[1])))
    buf = torch.empty(chunk, h0.shape[1], absu.shape[1], dtype=h0.dtype)  # _weight_step_sum's workspace
    m, v = torch.zeros_like(h0), torch.zeros_like(h0)  # Adam moments of the bias gradient (B, H)
    c_w, c_b = torch.zeros_like(h0), torch.zeros_like(h0)  # (W_t - W_0) u and b_t - b_0
    b1, b2 = betas
    for t in range(1, eps_train.shape[0] + 1):
        h = (h0 + c_w + c_b).requires_grad_(True)
        mean, logvar = run_rest(stacked, h)
        loss = loss_fn(mean, logvar, eps_train[t - 1]).sum()
        grads = torch.autograd.grad(loss, [h, *stacked.values()])
        with torch.no_grad():
            a = grads[0]
            m.lerp_(a, 1 - b1)
            v.mul_(b2).addcmul_(a, a, value=1 - b2)
            step_size = lr / (1 - b1**t)
            r = v.sqrt().div_((1 - b2**t) ** 0.5)
            if layer.bias is not None:
                c_b.addcdiv_(m, r + eps, value=-step_size)
            c_w.add_(m * _weight_step_sum(r, absu, u2, eps, buf), alpha=-step_size)
        if adam is not None:
            adam.step(grads[1:])
    with torch.no_grad():
        mean, logvar = run_rest(stacked, h0 + c_w + c_b)
        return nll_fn(DiagonalGaussian(mean, logvar), eps_eval)


__all__ = ["input_linear_index", "regret_batch_linear"]
