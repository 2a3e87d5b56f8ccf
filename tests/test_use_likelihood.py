"""Importance-weighted NLL against a linear-Gaussian VAE whose marginal likelihood is known in closed form."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vaelab.model.vae import VAE
from vaelab.use.ood_scores import nll_scores
from vaelab.use.likelihood import GAUSSIAN_SIGMA

D, L = 5, 2


def linear_gaussian_vae(mean_scale: float = 0.8, logvar_shift: float = 0.8) -> tuple[VAE, torch.Tensor, torch.Tensor]:
    """x = W z + b + N(0, sigma^2 I), z ~ N(0, I), W with orthogonal columns so the exact posterior is diagonal.

    The encoder is the exact posterior made deliberately wrong (mean shrunk, variance inflated), so the
    one-sample ELBO is clearly loose and only the importance weighting closes the gap.
    """
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    s = torch.tensor([2.0, 0.7], dtype=torch.float64)
    w = q[:, :L] * s  # (D, L)
    b = torch.randn(D, generator=g, dtype=torch.float64)
    var = GAUSSIAN_SIGMA**2
    post_var = 1.0 / (1.0 + s**2 / var)  # (L,)
    a = (post_var[:, None] * w.T) / var  # posterior mean = a (x - b)
    enc = nn.Linear(D, 2 * L)
    dec = nn.Linear(L, D)
    with torch.no_grad():
        enc.weight.copy_(torch.cat([mean_scale * a, torch.zeros(L, D, dtype=torch.float64)]).float())
        enc.bias.copy_(torch.cat([-mean_scale * a @ b, post_var.log() + logvar_shift]).float())
        dec.weight.copy_(w.float())
        dec.bias.copy_(b.float())
    model = VAE(nn.Sequential(enc), nn.Sequential(dec), latent_shape=(L,), input_shape=(D,), output_activation="identity")
    cov = w @ w.T + var * torch.eye(D, dtype=torch.float64)
    return model.eval(), b, cov


def exact_nll(x: torch.Tensor, b: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    dist = torch.distributions.MultivariateNormal(b, covariance_matrix=cov)
    return -dist.log_prob(x.double())


def sample_x(b, cov, n=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    chol = torch.linalg.cholesky(cov)
    return (b + torch.randn(n, D, generator=g, dtype=torch.float64) @ chol.T).float()


def test_iwae_k5000_within_0_05_nats_of_the_exact_marginal():
    model, b, cov = linear_gaussian_vae()
    x = sample_x(b, cov)
    exact = exact_nll(x, b, cov)
    iw = nll_scores(model, x, k=5000, batch_size=16, generator=torch.Generator().manual_seed(2)).double()
    assert (iw - exact).abs().max() < 0.05, (iw - exact).abs().max()
    # the test can fail: the one-sample bound is far off with this imperfect encoder
    elbo = nll_scores(model, x, k=1, generator=torch.Generator().manual_seed(2)).double()
    assert (elbo - exact).mean() > 0.3  # expected gap: KL(q || p(z|x)) ~ 0.5 nats


def test_exact_posterior_makes_every_estimate_exact():
    model, b, cov = linear_gaussian_vae(mean_scale=1.0, logvar_shift=0.0)
    x = sample_x(b, cov, n=16)
    iw = nll_scores(model, x, k=3, generator=torch.Generator().manual_seed(0)).double()
    torch.testing.assert_close(iw, exact_nll(x, b, cov), atol=1e-3, rtol=0)


def test_chunked_over_k_equals_unchunked(monkeypatch):
    import vaelab.use.likelihood as lik

    model, b, cov = linear_gaussian_vae()
    x = sample_x(b, cov, n=8)
    full = nll_scores(model, x, k=64, generator=torch.Generator().manual_seed(5))
    monkeypatch.setattr(lik, "INFERENCE_CHUNK_ELEMENTS", 3 * 8 * D)  # 3 samples per chunk (no-grad path)
    chunked = nll_scores(model, x, k=64, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(full, chunked, atol=1e-4, rtol=0)


def test_bernoulli_elbo_matches_the_training_loss():
    """k=1 with the same posterior noise is exactly the summed BCE + analytic KL that training minimises."""
    from vaelab.training.losses import vae_loss

    torch.manual_seed(0)
    model = VAE(nn.Sequential(nn.Flatten(), nn.Linear(16, 8)), nn.Sequential(nn.Linear(4, 16), nn.Unflatten(1, (1, 4, 4))),
                latent_shape=(4,), input_shape=(1, 4, 4)).eval()
    x = torch.rand(10, 1, 4, 4).round()
    ours = nll_scores(model, x, k=1, generator=torch.Generator().manual_seed(3))
    eps = torch.randn((1, 10, 4), generator=torch.Generator().manual_seed(3))[0]
    post = model.encode(x)
    logits = model.decoder(post.mean + post.std * eps)
    out = type("O", (), {"x_logits": logits, "x_hat": torch.sigmoid(logits), "posterior": post})
    ref = vae_loss(out, x, recon_kind="bce", logits=True, reduction="sum").per_sample
    torch.testing.assert_close(ours, ref.detach(), atol=1e-4, rtol=0)


def test_bad_k():
    model, b, cov = linear_gaussian_vae()
    with pytest.raises(ValueError, match="k must be"):
        nll_scores(model, sample_x(b, cov, n=2), k=0)


def test_decoder_with_its_own_sigmoid_gets_a_bernoulli_likelihood():
    """Seed 003 ends its decoder in Sigmoid: the NLL must be the Bernoulli one, as its BCE loss is."""
    import torch

    from vaelab.data.spec import DataSpec
    from vaelab.model.build import build_model
    from vaelab.core.config import ModelConfig
    from vaelab.use.likelihood import nll

    torch.manual_seed(0)
    enc = ["Flatten", "Linear_16_8"]
    own2 = build_model(ModelConfig(encoder=enc, decoder=["Linear_4_16", "Unflatten_1_4_4", "Sigmoid"]), (1, 4, 4))
    # the same weights with sigmoid as the output activation instead
    ref = build_model(ModelConfig(encoder=enc, decoder=["Linear_4_16", "Unflatten_1_4_4"]), DataSpec((1, 4, 4), value_range=(0, 1)))
    ref.load_state_dict(own2.state_dict())
    assert own2.output_activation == "identity" and ref.output_activation == "sigmoid"
    x = torch.rand(6, 1, 4, 4).round()
    assert own2.likelihood.name == "bernoulli"
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a = nll(own2.eval(), x, k=1, generator=g1)
    b = nll(ref.eval(), x, k=1, generator=g2)
    assert torch.allclose(a, b, atol=1e-3)
