import math

import pytest
import torch

from vaelab.model.distributions import DiagonalGaussian, standard_normal_log_prob


def test_kl_hand_computed():
    # KL per dim = 0.5 * (mu^2 + var - 1 - logvar)
    mean = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    logvar = torch.tensor([[0.0, 0.0], [math.log(2.0), 0.0]])
    q = DiagonalGaussian(mean, logvar)
    expected_per_dim = torch.tensor([[0.0, 0.5], [0.5 * (4 + 2 - 1 - math.log(2.0)), 0.5]])
    torch.testing.assert_close(q.kl_per_dim(), expected_per_dim)
    torch.testing.assert_close(q.kl(), expected_per_dim.sum(1))
    assert q.kl().shape == (2,)


def test_kl_matches_torch_distributions_for_image_latent():
    g = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(3, 4, 2, 2, generator=g), torch.randn(3, 4, 2, 2, generator=g)
    q = DiagonalGaussian(mean, logvar)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mean, (0.5 * logvar).exp()), torch.distributions.Normal(0.0, 1.0)
    ).sum((1, 2, 3))
    torch.testing.assert_close(q.kl(), ref)
    assert q.kl_per_dim().shape == mean.shape


def test_log_prob_matches_normal():
    g = torch.Generator().manual_seed(1)
    mean, logvar, z = (torch.randn(5, 3, generator=g) for _ in range(3))
    q = DiagonalGaussian(mean, logvar)
    ref = torch.distributions.Normal(mean, (0.5 * logvar).exp()).log_prob(z).sum(1)
    torch.testing.assert_close(q.log_prob(z), ref)
    ref0 = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    torch.testing.assert_close(standard_normal_log_prob(z), ref0)
    assert standard_normal_log_prob(torch.zeros(2, 3)).tolist() == pytest.approx([-1.5 * math.log(2 * math.pi)] * 2)


def test_logvar_clamped_and_std_var_mode():
    q = DiagonalGaussian(torch.zeros(1, 3), torch.tensor([[-100.0, 0.0, 100.0]]))
    assert q.logvar.tolist() == [[-30.0, 0.0, 20.0]]
    torch.testing.assert_close(q.var, torch.exp(q.logvar))
    torch.testing.assert_close(q.std, torch.exp(0.5 * q.logvar))
    assert q.mode() is q.mean


def test_sample_with_generator_is_reproducible_and_reparameterised():
    mean = torch.tensor([[1.0, -2.0]], requires_grad=True)
    logvar = torch.tensor([[0.0, math.log(4.0)]], requires_grad=True)
    q = DiagonalGaussian(mean, logvar)
    a = q.sample(torch.Generator().manual_seed(3))
    b = q.sample(torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    eps = torch.randn((1, 2), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, mean + torch.tensor([[1.0, 2.0]]) * eps)
    a.sum().backward()
    assert mean.grad is not None and logvar.grad is not None


def test_sample_without_generator_uses_global_rng():
    q = DiagonalGaussian(torch.zeros(4, 2), torch.zeros(4, 2))
    torch.manual_seed(7)
    a = q.sample()
    torch.manual_seed(7)
    torch.testing.assert_close(a, q.sample())


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="same shape"):
        DiagonalGaussian(torch.zeros(2, 3), torch.zeros(2, 4))
