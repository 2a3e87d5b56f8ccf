"""Encoder layers evaluated with one weight copy per input: the inner loop of batched likelihood regret.

Each input b fine-tunes its own copy of the encoder, so every parametrised layer sees stacked parameters
(B, *param) and a batch whose row b must use copy b. `PER_INPUT_LAYERS` maps a module class name to a kernel
that does this with ordinary batched operations: grouped convolutions (groups = B), batched matmuls, norms with a
per-input affine, a transformer layer written with batched projections. Modules without parameters run as they
are; any other parametrised module falls back to `torch.func.vmap(functional_call)` over the copies, which is
exact but pays vmap's per-op overhead and, for fused kernels without a batching rule, a per-input loop.

Adding a layer: register a kernel `fn(module, params, h) -> h` where params maps the module's own parameter names
(as in `module.named_parameters()`) to (B, *param) tensors; the contract test checks it against the vmap path.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from vaelab.core.registry import Registry
from vaelab.model.vae import VAE, run_layers

Kernel = Callable[[nn.Module, dict[str, Tensor], Tensor], Tensor]
PER_INPUT_LAYERS: Registry = Registry("per-input layer kernel")


class _RowLinear(torch.autograd.Function):
    """y_b = W_b x_b + c_b for one row per input, x (B, in), W (B, out, in): the weight gradient is an outer product,
    written as a broadcast product, where autograd's bmm with an inner dimension of 1 is ~10x slower on CPU."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        y = torch.bmm(x.unsqueeze(1), w.transpose(1, 2)).squeeze(1)  # (B, out): x as the row, ~4x faster on CPU than
        # w @ x as a column (MKL's batched matrix-vector product with a column vector)
        return y + b if b is not None else y

    @staticmethod
    def backward(ctx, g: Tensor):
        x, w = ctx.saved_tensors
        gx = torch.bmm(g.unsqueeze(1), w).squeeze(1) if ctx.needs_input_grad[0] else None  # (B, in)
        gw = g.unsqueeze(-1) * x.unsqueeze(1) if ctx.needs_input_grad[1] else None  # (B, out, in)
        return gx, gw, (g if ctx.has_bias and ctx.needs_input_grad[2] else None)


def _linear(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """x (B, ..., in), w (B, out, in), b (B, out) -> (B, ..., out)."""
    if x.dim() == 2:
        return _RowLinear.apply(x, w, b)
    flat = x.reshape(x.shape[0], -1, x.shape[-1])  # (B, M, in)
    y = torch.bmm(flat, w.transpose(1, 2)) if b is None else torch.baddbmm(b.unsqueeze(1), flat, w.transpose(1, 2))
    return y.reshape(*x.shape[:-1], w.shape[1])


@PER_INPUT_LAYERS.register("Linear")
def linear(m: nn.Linear, p: dict[str, Tensor], h: Tensor) -> Tensor:
    return _linear(h, p["weight"], p.get("bias"))


def _grouped(h: Tensor, p: dict[str, Tensor], groups: int, conv, **kw) -> Tensor:
    """(B, C, *S) with (B, *weight) -> one convolution with B * groups groups over a (1, B*C, *S) batch."""
    b = h.shape[0]
    w = p["weight"]
    bias = p.get("bias")
    y = conv(h.reshape(1, b * h.shape[1], *h.shape[2:]), w.reshape(b * w.shape[1], *w.shape[2:]),
             None if bias is None else bias.reshape(-1), groups=b * groups, **kw)
    return y.reshape(b, -1, *y.shape[2:])


class _PatchMatmul(torch.autograd.Function):
    """y_b = W_b P_b for patches P (B, K, L) and per-input weights W (B, Cout, K) -> (B, Cout, L), with every product
    in the orientation CPU's batched GEMM handles well and the weight gradient produced in W's own layout: autograd
    through bmm(P^T, W^T) returns it transposed, and the copy back into (B, Cout, K) cost more than the products
    (seed003-conv's 32->32 5x5 layer, 128 inputs: 17 -> 7 ms per step; the DCGAN heads, L = 1: 87 -> 30 ms)."""

    @staticmethod
    def forward(ctx, p: Tensor, w: Tensor) -> Tensor:
        ctx.save_for_backward(p, w)
        return torch.bmm(p.transpose(1, 2), w.transpose(1, 2)).transpose(1, 2)

    @staticmethod
    def backward(ctx, g: Tensor):
        p, w = ctx.saved_tensors
        gp = torch.bmm(g.transpose(1, 2), w).transpose(1, 2) if ctx.needs_input_grad[0] else None
        gw = None
        if ctx.needs_input_grad[1]:  # one output position: an outer product (bmm with inner dimension 1 is ~3x slower)
            gw = g * p.transpose(1, 2) if p.shape[2] == 1 else torch.bmm(g, p.transpose(1, 2))
        return gp, gw


def _conv2d_patches(m: nn.Conv2d, p: dict[str, Tensor], h: Tensor) -> Tensor | None:
    """Conv2d as weights @ patches, (B, Cout, K) x (B, K, L), where the output has few positions L for a large
    patch K (a late, small-map layer): there one batched matmul is ~2x faster than CPU grouped convolution's
    backward. None where the grouped convolution is the better choice."""
    if m.groups != 1 or isinstance(m.padding, str):
        return None
    b, _, hh, ww = h.shape
    k = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
    ho, wo = ((size + 2 * pad - dil * (ks - 1) - 1) // st + 1
              for size, pad, dil, ks, st in zip((hh, ww), m.padding, m.dilation, m.kernel_size, m.stride))
    if ho * wo * 8 > k:
        return None
    patches = F.unfold(h, m.kernel_size, m.dilation, m.padding, m.stride)  # (B, K, L)
    y = _PatchMatmul.apply(patches, p["weight"].reshape(b, m.out_channels, k))  # (B, Cout, L)
    bias = p.get("bias")
    y = y.reshape(b, m.out_channels, ho, wo)
    return y if bias is None else y + bias.reshape(b, m.out_channels, 1, 1)


def _conv(fn):
    def kernel(m: nn.Module, p: dict[str, Tensor], h: Tensor) -> Tensor:
        if m.padding_mode != "zeros":
            return vmap_fallback(m, p, h)
        if fn is F.conv2d:
            y = _conv2d_patches(m, p, h)
            if y is not None:
                return y
        return _grouped(h, p, m.groups, fn, stride=m.stride, padding=m.padding, dilation=m.dilation)
    return kernel


def _conv_transpose(fn):
    def kernel(m: nn.Module, p: dict[str, Tensor], h: Tensor) -> Tensor:
        b = h.shape[0]
        w = p["weight"]  # (B, Cin, Cout / g, *k): the grouped layout keeps Cin first, so B * Cin rows
        bias = p.get("bias")
        y = fn(h.reshape(1, b * h.shape[1], *h.shape[2:]), w.reshape(b * w.shape[1], *w.shape[2:]),
               None if bias is None else bias.reshape(-1), stride=m.stride, padding=m.padding,
               output_padding=m.output_padding, groups=b * m.groups, dilation=m.dilation)
        return y.reshape(b, -1, *y.shape[2:])
    return kernel


for _name, _fn in (("Conv1d", F.conv1d), ("Conv2d", F.conv2d), ("Conv3d", F.conv3d)):
    PER_INPUT_LAYERS.register(_name, _conv(_fn))
for _name, _fn in (("ConvTranspose1d", F.conv_transpose1d), ("ConvTranspose2d", F.conv_transpose2d),
                   ("ConvTranspose3d", F.conv_transpose3d)):
    PER_INPUT_LAYERS.register(_name, _conv_transpose(_fn))


def _affine(y: Tensor, p: dict[str, Tensor], channel_dim: int) -> Tensor:
    """Per-input scale/shift (B, C) on the channel dim of y; absent when the norm has no affine."""
    if "weight" not in p:
        return y
    shape = [y.shape[0]] + [1] * (y.dim() - 1)
    shape[channel_dim] = -1
    y = y * p["weight"].reshape(shape)
    return y + p["bias"].reshape(shape) if "bias" in p else y


def batch_norm(m: nn.modules.batchnorm._BatchNorm, p: dict[str, Tensor], h: Tensor) -> Tensor:
    """Eval-mode BatchNorm (running statistics), as the regret's encoder copies run."""
    if m.training or m.running_mean is None:
        return vmap_fallback(m, p, h)  # batch statistics of one input: leave it to vmap's rule
    y = F.batch_norm(h, m.running_mean, m.running_var, None, None, False, 0.0, m.eps)
    return _affine(y, p, 1)


for _name in ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d"):
    PER_INPUT_LAYERS.register(_name, batch_norm)


@PER_INPUT_LAYERS.register("GroupNorm")
def group_norm(m: nn.GroupNorm, p: dict[str, Tensor], h: Tensor) -> Tensor:
    return _affine(F.group_norm(h, m.num_groups, None, None, m.eps), p, 1)


@PER_INPUT_LAYERS.register("LayerNorm")
def layer_norm(m: nn.LayerNorm, p: dict[str, Tensor], h: Tensor) -> Tensor:
    y = F.layer_norm(h, m.normalized_shape, None, None, m.eps)
    if "weight" not in p:
        return y
    lead = [h.shape[0]] + [1] * (h.dim() - 1 - len(m.normalized_shape))
    y = y * p["weight"].reshape(*lead, *m.normalized_shape)
    return y + p["bias"].reshape(*lead, *m.normalized_shape) if "bias" in p else y


def _sub(p: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in p.items() if k.startswith(prefix)}


@PER_INPUT_LAYERS.register("TransformerEncoderLayer")
def transformer_layer(m: nn.TransformerEncoderLayer, p: dict[str, Tensor], h: Tensor) -> Tensor:
    """nn.TransformerEncoderLayer (batch first, eval: no dropout) with per-input projections and norms."""
    attn = m.self_attn
    if not m.self_attn.batch_first or attn.in_proj_weight is None or attn.bias_k is not None:
        return vmap_fallback(m, p, h)
    heads = attn.num_heads

    def block(x: Tensor) -> Tensor:  # (B, T, D) self-attention
        b, t, d = x.shape
        qkv = _linear(x, p["self_attn.in_proj_weight"], p.get("self_attn.in_proj_bias"))  # (B, T, 3D)
        q, k, v = (a.reshape(b, t, heads, d // heads).transpose(1, 2) for a in qkv.chunk(3, dim=-1))
        o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d)  # (B, T, D)
        return _linear(o, p["self_attn.out_proj.weight"], p.get("self_attn.out_proj.bias"))

    def ff(x: Tensor) -> Tensor:
        a = m.activation(_linear(x, p["linear1.weight"], p.get("linear1.bias")))
        return _linear(a, p["linear2.weight"], p.get("linear2.bias"))

    def norm(i: int, x: Tensor) -> Tensor:
        return layer_norm(getattr(m, f"norm{i}"), _sub(p, f"norm{i}."), x)

    if m.norm_first:
        h = h + block(norm(1, h))
        return h + ff(norm(2, h))
    h = norm(1, h + block(h))
    return norm(2, h + ff(h))


@PER_INPUT_LAYERS.register("FeatureTokens")
def feature_tokens(m: nn.Module, p: dict[str, Tensor], h: Tensor) -> Tensor:
    return h.unsqueeze(-1) * p["weight"] + p["bias"]  # (B, F, 1) * (B, F, D) -> (B, F, D)


@PER_INPUT_LAYERS.register("FeatureReadout")
def feature_readout(m: nn.Module, p: dict[str, Tensor], h: Tensor) -> Tensor:
    return torch.einsum("bfd,bfd->bf", h, p["weight"]) + p["bias"]


def vmap_fallback(m: nn.Module, p: dict[str, Tensor], h: Tensor) -> Tensor:
    """Any module: vmap(functional_call) over the copies (one input per copy)."""
    def one(params: dict[str, Tensor], x1: Tensor) -> Tensor:
        return functional_call(m, params, (x1.unsqueeze(0),))[0]

    with sdpa_kernel(SDPBackend.MATH):  # the fused CPU attention kernels have no batching rule (a per-input loop)
        return vmap(one)(p, h)


def run_module(m: nn.Module, p: dict[str, Tensor], h: Tensor) -> Tensor:
    """One module of the encoder with per-input parameters p (its own names -> (B, *param))."""
    if not p:
        return m(h)
    name = type(m).__name__
    if name in PER_INPUT_LAYERS:
        return PER_INPUT_LAYERS.get(name)(m, p, h)
    if isinstance(m, nn.Sequential):
        for i, child in enumerate(m):
            h = run_module(child, _sub(p, f"{i}."), h)
        return h
    return vmap_fallback(m, p, h)


def encode_per_input(model: VAE, params: dict[str, Tensor], x: Tensor, c: Tensor | None, *,
                     start: int = 0) -> tuple[Tensor, Tensor]:
    """model.encode with stacked encoder/head parameters (full names, e.g. "encoder.0.weight") -> (mean, logvar).

    start: the encoder layer `x` enters at (the factored path feeds the first Linear's output to layer idx + 1).
    """
    joined = model.condition_after < start  # the condition is already part of x
    h = run_layers(list(model.encoder)[start:], x, None if joined else c, model.condition_after - start,
                   lambda i, layer, h: run_module(layer, _sub(params, f"encoder.{start + i}."), h))
    if model.mu_head is not None:
        return (run_module(model.mu_head, _sub(params, "mu_head."), h),
                run_module(model.logvar_head, _sub(params, "logvar_head."), h))
    mean, logvar = torch.chunk(h, 2, dim=1)  # (B, 2C, ...) -> 2 x (B, C, ...)
    return mean, logvar


__all__ = ["PER_INPUT_LAYERS", "encode_per_input", "run_module", "vmap_fallback"]
