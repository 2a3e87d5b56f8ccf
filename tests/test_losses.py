import itertools
import math
from types import SimpleNamespace

import pytest
import torch
from pytorch_msssim import ssim as msssim_ref

from vaelab.model.distributions import DiagonalGaussian
from vaelab.core.errors import ConfigError
from vaelab.core.config import LossConfig
from vaelab.training.losses import (
    LossTerms,
    bernoulli_nll,
    gaussian_nll,
    kl_divergence,
    reconstruction,
    sparsity,
    ssim,
    term_weights,
    vae_loss,
)

LN2, LN34 = math.log(2.0), math.log(0.75)


def test_bce_with_logits_hand_computed():
    x = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # sigmoid: 0.5, 0.5, 0.75, 0.5
    expected_sum = torch.tensor([2 * LN2, -LN34 + LN2])
    torch.testing.assert_close(reconstruction(logits, x, "bce"), expected_sum)
    torch.testing.assert_close(reconstruction(logits, x, "bce", reduction="mean"), expected_sum / 2)


def test_bce_on_probabilities_hand_computed():
    p, x = torch.tensor([[0.5, 0.25]]), torch.tensor([[1.0, 0.0]])
    torch.testing.assert_close(reconstruction(p, x, "bce", logits=False), torch.tensor([-math.log(0.5) - LN34]))
    # clamped: a probability of exactly 0 for a target of 1 stays finite
    assert torch.isfinite(reconstruction(torch.zeros(1, 2), torch.ones(1, 2), "bce", logits=False)).all()


def test_mse_hand_computed():
    x_hat = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    x = torch.tensor([[0.0, 0.0], [0.0, 3.0]])
    assert reconstruction(x_hat, x, "mse", logits=False).tolist() == [5.0, 9.0]
    assert reconstruction(x_hat, x, "mse", logits=False, reduction="mean").tolist() == [2.5, 4.5]
    # logits=True compares sigmoid(logits): sigmoid(0) = 0.5
    assert reconstruction(torch.zeros(1, 4), torch.zeros(1, 4), "mse").tolist() == [1.0]


def test_reconstruction_image_shape_and_errors():
    assert reconstruction(torch.zeros(3, 1, 4, 4), torch.zeros(3, 1, 4, 4), "bce").shape == (3,)
    with pytest.raises(ConfigError, match="loss.recon"):
        reconstruction(torch.zeros(1, 2), torch.zeros(1, 2), "l1")
    with pytest.raises(ConfigError, match="loss.reduction"):
        reconstruction(torch.zeros(1, 2), torch.zeros(1, 2), "bce", reduction="none")


def _posterior():
    # logvar 0, so KL per dim = 0.5 * mu^2: [[0, 2], [0.5, 2]]
    return DiagonalGaussian(torch.tensor([[0.0, 2.0], [1.0, -2.0]]), torch.zeros(2, 2))


def test_kl_divergence_hand_computed():
    assert kl_divergence(_posterior()).tolist() == [2.0, 2.5]
    assert kl_divergence(_posterior(), "mean").tolist() == [1.0, 1.25]
    # seed 003: mean over batch and latent dims of 0.5*(mu^2 - logvar + e^logvar - 1)
    assert kl_divergence(_posterior(), "mean").mean().item() == pytest.approx(4.5 / 4)


def test_free_bits():
    # dim 0 batch-mean KL 0.25 < 1 -> held at 1; dim 1 batch-mean 2 > 1 -> kept
    mean = torch.tensor([[0.0, 2.0], [1.0, -2.0]], requires_grad=True)
    kl = kl_divergence(DiagonalGaussian(mean, torch.zeros(2, 2)), free_bits=1.0)
    assert kl.tolist() == [3.0, 3.0]
    assert kl.mean().item() == max(0.25, 1.0) + max(2.0, 1.0)
    kl.sum().backward()
    assert mean.grad[:, 0].tolist() == [0.0, 0.0]  # the held dim gets no gradient
    assert mean.grad[:, 1].tolist() == [2.0, -2.0]
    # above every threshold: unchanged
    torch.testing.assert_close(kl_divergence(_posterior(), free_bits=0.1), kl_divergence(_posterior()))
    with pytest.raises(ConfigError, match="loss.free_bits"):
        kl_divergence(_posterior(), free_bits=-1.0)


def test_sparsity_hand_computed():
    assert sparsity(torch.tensor([[1.0, -3.0], [0.0, 0.5]])).tolist() == [2.0, 0.25]
    assert sparsity(torch.ones(2, 4, 2, 2) * -0.5).tolist() == [0.5, 0.5]


def test_ssim_identical_is_one():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ssim(x, x.clone(), 1.0), torch.ones(2))


def test_ssim_matches_pytorch_msssim():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 1, 28, 28, generator=g)
    y = (x + 0.2 * torch.randn(3, 1, 28, 28, generator=g)).clamp(0, 1)
    ref = msssim_ref(x, y, data_range=1.0, size_average=False, win_size=11, win_sigma=1.5)
    torch.testing.assert_close(ssim(x, y, 1.0), ref)
    assert (ssim(x, y, 1.0) < 0.99).all()
    # data_range scales the constants with the data: 2x vs 2y at range 2 is the same comparison
    torch.testing.assert_close(ssim(2 * x, 2 * y, 2.0), ref, atol=1e-5, rtol=1e-5)
    ref2 = msssim_ref(2 * x - 1, 2 * y - 1, data_range=2.0, size_average=False, win_size=11, win_sigma=1.5)
    torch.testing.assert_close(ssim(2 * x - 1, 2 * y - 1, 2.0), ref2)


def test_ssim_small_images_use_largest_odd_window():
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(2, 1, 8, 8, generator=g), torch.rand(2, 1, 8, 8, generator=g)
    ref = msssim_ref(x, y, data_range=1.0, size_average=False, win_size=7, win_sigma=1.5)
    torch.testing.assert_close(ssim(x, y, 1.0), ref)


def test_ssim_volumes():
    x = torch.rand(2, 1, 12, 12, 12, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(ssim(x, x, 1.0), torch.ones(2))


@pytest.mark.parametrize("shape", [(4, 5), (4, 5, 1), (4, 1, 2, 2)])
def test_ssim_rejects_non_images(shape):
    with pytest.raises(ConfigError, match="loss.ssim: false"):
        ssim(torch.zeros(shape), torch.zeros(shape), 1.0)


def test_gaussian_and_bernoulli_nll():
    g = torch.Generator().manual_seed(4)
    x, x_hat = torch.rand(3, 2, 2, generator=g), torch.rand(3, 2, 2, generator=g)
    ref = -torch.distributions.Normal(x_hat, 0.3).log_prob(x).sum((1, 2))
    torch.testing.assert_close(gaussian_nll(x_hat, x, 0.3), ref)
    # mse (sum of squares) = Gaussian NLL with sigma^2 = 1/2 minus 0.5 * D * log(pi)
    mse = reconstruction(x_hat, x, "mse", logits=False)
    torch.testing.assert_close(gaussian_nll(x_hat, x, math.sqrt(0.5)) - 0.5 * 4 * math.log(math.pi), mse)
    logits, xb = torch.randn(3, 5, generator=g), (torch.rand(3, 5, generator=g) > 0.5).float()
    ref = -torch.distributions.Bernoulli(logits=logits).log_prob(xb).sum(1)
    torch.testing.assert_close(bernoulli_nll(logits, xb), ref)


def test_losses_are_float32_for_low_precision_inputs():
    x = torch.rand(2, 1, 12, 12).bfloat16()
    assert reconstruction(x, x, "bce").dtype == torch.float32
    assert ssim(x, x, 1.0).dtype == torch.float32
    q = DiagonalGaussian(torch.zeros(2, 3).bfloat16(), torch.zeros(2, 3).bfloat16())
    assert kl_divergence(q).dtype == torch.float32


def _output():
    x = torch.tensor([[[[0.0, 1.0, 1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]],
                      [[[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 1.0]]]])  # (2, 1, 3, 3)
    x_logits = torch.linspace(-2, 2, 18).reshape(2, 1, 3, 3)
    out = SimpleNamespace(x_logits=x_logits, x_hat=torch.sigmoid(x_logits), posterior=_posterior())
    return out, x


@pytest.mark.parametrize("use_ssim,use_sparse", list(itertools.product([False, True], repeat=2)))
def test_vae_loss_total_formula(use_ssim, use_sparse):
    out, x = _output()
    w = term_weights(LossConfig(alpha=0.5, kl_weight=0.0025, ssim=use_ssim, ssim_weight=0.7, sparse=use_sparse, lambd=1.5))
    terms = vae_loss(out, x, w, recon_kind="bce", logits=True, kl_scale=0.4)
    rec = reconstruction(out.x_logits, x, "bce").mean()
    kl = torch.tensor(4.5 / 2)  # batch mean of [2, 2.5]
    s = ssim(out.x_hat, x, 1.0).mean()
    sp = torch.tensor((1.0 + 1.5) / 2)  # mean |mu|: [1, 1.5]
    expected = 0.5 * rec + 0.4 * 0.0025 * kl + use_ssim * 0.7 * (1 - s) + use_sparse * 1.5 * sp
    torch.testing.assert_close(terms.total, expected)
    torch.testing.assert_close(terms.per_sample.mean(), terms.total)
    assert terms.per_sample.shape == (2,)
    torch.testing.assert_close(terms.recon, rec)
    torch.testing.assert_close(terms.kl, kl)
    assert (terms.ssim is not None) == use_ssim and (terms.sparse is not None) == use_sparse
    if use_ssim:
        torch.testing.assert_close(terms.ssim, s)
    if use_sparse:
        torch.testing.assert_close(terms.sparse, sp)


def test_vae_loss_both_flags_off_is_exact():
    out, x = _output()
    w = term_weights(LossConfig(alpha=0.5, kl_weight=0.0025, ssim_weight=9.0, lambd=9.0))
    terms = vae_loss(out, x, w)
    assert torch.equal(terms.total, 0.5 * terms.recon + 0.0025 * terms.kl)
    assert terms.ssim is None and terms.sparse is None
    assert set(terms.to_floats()) == {"total", "recon", "kl"}


def test_vae_loss_mse_uses_decoder_output_and_mean_reduction():
    out, x = _output()
    out.x_hat = torch.zeros_like(x)  # e.g. a tanh/identity decoder: mse must read x_hat, not the logits
    terms = vae_loss(out, x, recon_kind="mse", reduction="mean")
    # seed 003's convention: mean recon + mean KL
    assert terms.recon.item() == pytest.approx(x.mean().item())
    assert terms.kl.item() == pytest.approx(4.5 / 4)


def test_vae_loss_backprops():
    out, x = _output()
    out.x_logits.requires_grad_(True)
    terms = vae_loss(out, x, term_weights(LossConfig(ssim=False)))
    assert isinstance(terms, LossTerms)
    terms.total.backward()
    assert out.x_logits.grad is not None
