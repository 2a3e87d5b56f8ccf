"""Contract over PER_INPUT_LAYERS: every kernel gives what vmap(functional_call) gives, values and gradients."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from vaelab.layers.tokens import FeatureReadout, FeatureTokens
from vaelab.use.regret_layers import PER_INPUT_LAYERS, run_module, vmap_fallback

B = 3


def _bn(cls, c):
    m = cls(c)
    m.running_mean.uniform_(-1, 1)
    m.running_var.uniform_(0.5, 2)
    return m


# name -> list of (module, per-input input shape); several shapes where a kernel has several paths
EXAMPLES = {
    "Linear": [(nn.Linear(5, 4), (5,)), (nn.Linear(6, 2), (3, 6))],
    "Conv1d": [(nn.Conv1d(2, 3, 3, padding=1), (2, 9))],
    "Conv2d": [(nn.Conv2d(2, 4, 3, stride=2, padding=1), (2, 9, 9)),  # grouped convolution
               (nn.Conv2d(4, 3, 5, stride=2), (4, 7, 7)),  # few output positions: patches @ weights
               (nn.Conv2d(8, 5, 4), (8, 4, 4)),  # one output position (a DCGAN conv head): the outer-product gradient
               (nn.Conv2d(4, 4, 3, padding=1, groups=2), (4, 5, 5))],
    "Conv3d": [(nn.Conv3d(1, 2, 3, padding=1), (1, 4, 4, 4))],
    "ConvTranspose1d": [(nn.ConvTranspose1d(2, 3, 4, stride=2, padding=1), (2, 5))],
    "ConvTranspose2d": [(nn.ConvTranspose2d(3, 2, 4, stride=2, padding=1, output_padding=1), (3, 4, 4))],
    "ConvTranspose3d": [(nn.ConvTranspose3d(2, 1, 2, stride=2), (2, 2, 2, 2))],
    "BatchNorm1d": [(_bn(nn.BatchNorm1d, 4), (4,)), (_bn(nn.BatchNorm1d, 3), (3, 5))],
    "BatchNorm2d": [(_bn(nn.BatchNorm2d, 3), (3, 4, 4))],
    "BatchNorm3d": [(_bn(nn.BatchNorm3d, 2), (2, 3, 3, 3))],
    "GroupNorm": [(nn.GroupNorm(2, 4), (4, 3, 3))],
    "LayerNorm": [(nn.LayerNorm(6), (4, 6)), (nn.LayerNorm((2, 3)), (2, 3))],
    "TransformerEncoderLayer": [(nn.TransformerEncoderLayer(8, 2, 16, 0.0, batch_first=True), (5, 8)),
                                (nn.TransformerEncoderLayer(8, 4, 16, 0.0, batch_first=True, norm_first=True,
                                                            activation="gelu"), (3, 8))],
    "FeatureTokens": [(FeatureTokens(5, 4), (5,))],
    "FeatureReadout": [(FeatureReadout(5, 4), (5, 4))],
}


def test_every_kernel_has_an_example():
    assert set(PER_INPUT_LAYERS.names()) == set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_kernel_matches_vmap(name):
    torch.manual_seed(0)
    for module, shape in EXAMPLES[name]:
        module.eval()
        params = {n: (p.detach().unsqueeze(0) + 0.1 * torch.randn(B, *p.shape)).requires_grad_(True)
                  for n, p in module.named_parameters()}
        h = torch.randn(B, *shape, requires_grad=True)
        fast = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)  # eval-mode TEL's fused kernel has no derivative
        try:
            want = vmap_fallback(module, params, h)
            g_want = torch.autograd.grad(want.square().sum(), [h, *params.values()])
        finally:
            torch.backends.mha.set_fastpath_enabled(fast)
        got = run_module(module, params, h)
        assert type(module).__name__ in PER_INPUT_LAYERS and got.shape == want.shape
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
        g_got = torch.autograd.grad(got.square().sum(), [h, *params.values()])
        for a, b in zip(g_got, g_want):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_copies_do_not_mix():
    """Row b of the output depends on copy b only."""
    conv = nn.Conv2d(2, 3, 3, padding=1)
    params = {n: p.detach().unsqueeze(0).repeat(B, *([1] * p.dim())) for n, p in conv.named_parameters()}
    params["weight"][1] += 1.0
    h = torch.randn(1, 2, 5, 5).repeat(B, 1, 1, 1)
    out = run_module(conv, params, h)
    torch.testing.assert_close(out[0], out[2])
    assert (out[0] - out[1]).abs().max() > 0.1


@pytest.mark.parametrize("betas,wd,dtype", [((0.9, 0.999), 0.0, torch.float32),  # the regret's setting
                                             ((0.8, 0.9), 1e-2, torch.float64)])  # fast-forgetting moments, L2 decay
def test_stacked_adam_follows_torch_adam(betas, wd, dtype):
    """The same trajectory as one torch.optim.Adam per copy: to rounding in float32 over the regret's 100 steps,
    to 1e-9 in float64 over 150 (in float32 a fast-forgetting beta2 near the optimum amplifies rounding)."""
    from vaelab.use.regret import _StackedAdam

    g = torch.Generator().manual_seed(0)
    target = torch.randn(3, 4, 5, generator=g, dtype=dtype)
    start = torch.randn(3, 4, 5, generator=g, dtype=dtype)
    ours = start.clone().requires_grad_(True)
    ref = [start[i].clone().requires_grad_(True) for i in range(3)]  # one torch Adam per copy
    adam = _StackedAdam([ours], 0.05, betas=betas, weight_decay=wd)
    opts = [torch.optim.Adam([r], lr=0.05, betas=betas, weight_decay=wd) for r in ref]
    steps = 100 if dtype == torch.float32 else 150
    for step in range(steps):
        scale = torch.linspace(1e-6, 1.0, 5, dtype=dtype) * (1 + step % 3)  # gradients over 6 orders of magnitude
        adam.step(torch.autograd.grad(((ours - target) ** 2 * scale).sum(), [ours]))
        for r, o, t in zip(ref, opts, target):
            o.zero_grad()
            ((r - t) ** 2 * scale).sum().backward()
            o.step()
    tol = 1e-5 if dtype == torch.float32 else 1e-9
    torch.testing.assert_close(ours.detach(), torch.stack([r.detach() for r in ref]), atol=tol, rtol=tol)
