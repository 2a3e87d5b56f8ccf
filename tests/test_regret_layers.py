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
