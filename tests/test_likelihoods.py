"""Decoder likelihoods: a contract every registry entry passes, normalisation (sums / integrals to 1), agreement
with torch.distributions, loss.recon's aliases giving the old numbers exactly, and the data-fit / width checks."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vaelab.core.config import ModelConfig, load_config
from vaelab.core.errors import ConfigError, ModelError
from vaelab.core.vocab import LIKELIHOODS
from vaelab.data.spec import DataSpec
from vaelab.model.build import build_model
from vaelab.model.likelihoods import Likelihood
from vaelab.training.losses import reconstruction, reconstruction_nll

SMALL_OPTIONS = {"logistic_mixture": {"components": 3}}
EIGHT_BIT = DataSpec((1, 8, 8), bits=8)


def make(name: str, value_range=(0.0, 1.0), activation: str | None = None, **opts) -> Likelihood:
    entry = LIKELIHOODS.entry(name)
    options = entry.meta["options"](**{**SMALL_OPTIONS.get(name, {}), **opts})
    act = activation or ("sigmoid" if entry.obj.uses_activation else "identity")
    return entry.obj(options, value_range=value_range, activation=act)


def params_for(lik: Likelihood, b=3, c=2, hw=(3, 3), seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, lik.params_per_value * c, *hw, generator=g)


def on_grid(shape, seed=1) -> torch.Tensor:
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(seed)) / 255.0


# ------------------------------------------------------------------------------- contract over every entry
@pytest.mark.parametrize("name", LIKELIHOODS.names())
def test_every_likelihood_keeps_the_contract(name):
    lik = make(name)
    params = params_for(lik).requires_grad_(True)
    x = on_grid((3, 2, 3, 3))
    if name == "bernoulli":
        x = x.round()
    nll = lik.nll(params, x)
    assert nll.shape == x.shape and torch.isfinite(nll).all()
    assert lik.nll_per_sample(params, x).shape == (3,)
    nll.sum().backward()
    assert torch.isfinite(params.grad).all() and params.grad.abs().sum() > 0
    p = params.detach()
    for out in (lik.mean(p), lik.mode(p), lik.sample(p, torch.Generator().manual_seed(0))):
        assert out.shape == x.shape and torch.isfinite(out).all()
    a, b = (lik.sample(p, torch.Generator().manual_seed(5)) for _ in range(2))
    assert torch.equal(a, b)  # the generator is the only source of randomness
    assert lik.output_shape((2, 3, 3)) == (2 * lik.params_per_value, 3, 3)
    assert lik.describe().startswith(name)
    if lik.discrete:
        support = lik.support()
        assert len(support) == lik.levels
        assert torch.isin(lik.sample(p), support).all() and torch.isin(lik.mode(p), support).all()


@pytest.mark.parametrize("name", [n for n in LIKELIHOODS.names() if LIKELIHOODS.get(n).discrete])
def test_discrete_probabilities_sum_to_one_and_mean_and_mode_follow(name):
    lik = make(name)
    p = params_for(lik) * 2
    shape = (3, 2, 3, 3)
    probs = torch.stack([torch.exp(-lik.nll(p, torch.full(shape, float(v)))) for v in lik.support()])  # (S, ...)
    torch.testing.assert_close(probs.sum(0), torch.ones(shape), atol=1e-5, rtol=0)
    values = lik.support().view(-1, 1, 1, 1, 1)
    half_level = 0.5 / 255 if name == "logistic_mixture" else 1e-5  # the mixture's mean: within half a level
    assert (lik.mean(p) - (probs * values).sum(0)).abs().max() <= half_level
    best = probs.max(dim=0).values
    at_mode = torch.exp(-lik.nll(p, lik.mode(p)))
    torch.testing.assert_close(at_mode, best, atol=1e-6, rtol=1e-5)


def _integrate(lik, p, lo, hi, n=20001):
    xs = torch.linspace(lo, hi, n)
    dens = torch.stack([torch.exp(-lik.nll(p, torch.full(p.shape[:1] + (2, 3, 3), float(v)))) for v in xs])
    w = torch.full((n,), (hi - lo) / (n - 1))
    w[0] = w[-1] = w[0] / 2  # trapezoid
    wv = w.view(-1, 1, 1, 1, 1)
    return (dens * wv).sum(0), (dens * wv * xs.view(-1, 1, 1, 1, 1)).sum(0)


@pytest.mark.parametrize("name, lo, hi", [("continuous_bernoulli", 0.0, 1.0), ("gaussian", -8.0, 9.0),
                                          ("gaussian_learned", -8.0, 9.0), ("gaussian_per_dim", -8.0, 9.0),
                                          ("laplace", -12.0, 13.0)])
def test_densities_integrate_to_one_and_to_their_mean(name, lo, hi):
    lik = make(name)
    p = params_for(lik, b=2).double().float()
    if name == "gaussian_per_dim":
        p[:, 2:] = p[:, 2:].abs() - 1.0  # variances from about 0.3 to 1: the trapezoid grid resolves them
    with torch.no_grad():
        mass, first = _integrate(lik, p, lo, hi)
        torch.testing.assert_close(mass, torch.ones_like(mass), atol=2e-4, rtol=0)
        torch.testing.assert_close(first, lik.mean(p), atol=2e-4, rtol=0)
    assert set(LIKELIHOODS.names()) == {n for n in LIKELIHOODS.names() if LIKELIHOODS.get(n).discrete} | {
        "continuous_bernoulli", "gaussian", "gaussian_learned", "gaussian_per_dim", "laplace"}  # every entry is tested


# --------------------------------------------------------------------------------- against torch.distributions
def test_matches_torch_distributions():
    D = torch.distributions
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, 5, 5, generator=g)
    x01 = torch.rand(4, 3, 5, 5, generator=g)
    xb = x01.round()
    torch.testing.assert_close(make("bernoulli").nll(logits, xb), -D.Bernoulli(logits=logits).log_prob(xb))
    cb = make("continuous_bernoulli")
    ref = D.ContinuousBernoulli(logits=logits.double())  # float64: torch's float32 loses digits near lambda = 1/2
    torch.testing.assert_close(cb.nll(logits, x01), -ref.log_prob(x01.double()).float(), atol=1e-5, rtol=1e-5)
    wide = torch.cat([logits.flatten(), torch.linspace(-0.6, 0.6, 121), torch.tensor([-15.0, 15.0])])
    torch.testing.assert_close(cb.mean(wide), D.ContinuousBernoulli(logits=wide.double()).mean.float(), atol=2e-6, rtol=0)
    # far out torch clamps the probability; the mean is 1/(1 - e^-l) - 1/l -> -1/l
    torch.testing.assert_close(cb.mean(torch.tensor([-40.0, 40.0])), torch.tensor([1 / 40, 1 - 1 / 40]))
    near_half = torch.linspace(-0.02, 0.02, 41)  # the Taylor branch and its neighbours
    torch.testing.assert_close(cb.nll(near_half, torch.full_like(near_half, 0.3)),
                               -D.ContinuousBernoulli(logits=near_half.double()).log_prob(torch.tensor(0.3).double()).float(),
                               atol=1e-6, rtol=0)
    xr = torch.randn(4, 3, 5, 5, generator=g)
    gauss = make("gaussian", activation="identity", variance=0.3)
    torch.testing.assert_close(gauss.nll(logits, xr), -D.Normal(logits, math.sqrt(0.3)).log_prob(xr))
    lap = make("laplace", activation="identity", scale=0.7)
    torch.testing.assert_close(lap.nll(logits, xr), -D.Laplace(logits, 0.7).log_prob(xr))
    pd = make("gaussian_per_dim", activation="identity")
    two = torch.randn(4, 6, 5, 5, generator=g)
    std = (F.softplus(two[:, 3:]) + 1e-4).sqrt()
    torch.testing.assert_close(pd.nll(two, xr), -D.Normal(two[:, :3], std).log_prob(xr))
    cat = make("categorical256", value_range=(-1.0, 1.0))
    p = torch.randn(4, 256 * 3, 5, 5, generator=g)
    k = torch.randint(0, 256, (4, 3, 5, 5), generator=g)
    ref = D.Categorical(logits=p.unflatten(1, (256, 3)).movedim(1, -1)).log_prob(k)
    torch.testing.assert_close(cat.nll(p, -1.0 + 2.0 * k / 255), -ref, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- loss.recon: the old numbers
def test_recon_aliases_give_exactly_the_old_reconstruction_terms():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 1, 4, 4, generator=g)
    x = torch.rand(5, 1, 4, 4, generator=g)
    for red in ("sum", "mean"):
        bern = make("bernoulli")
        assert torch.equal(reconstruction_nll(bern, logits, x, red), reconstruction(logits, x, "bce", logits=True, reduction=red))
        own = make("bernoulli", activation="identity")  # a decoder ending in its own Sigmoid gives probabilities
        probs = torch.sigmoid(logits)
        assert torch.equal(reconstruction_nll(own, probs, x, red), reconstruction(probs, x, "bce", logits=False, reduction=red))
        for act, fn in (("sigmoid", torch.sigmoid), ("tanh", torch.tanh), ("identity", lambda t: t)):
            mse = make("gaussian", activation=act, variance=0.5, normalised=False)
            assert torch.equal(reconstruction_nll(mse, logits, x, red),
                               reconstruction(fn(logits), x, "mse", logits=False, reduction=red))
    # the NLL the mse run is evaluated with adds back the constant 0.5 log(pi) per value
    mse = make("gaussian", variance=0.5, normalised=False)
    torch.testing.assert_close(mse.nll(logits, x) - mse.loss(logits, x), torch.full_like(x, 0.5 * math.log(math.pi)))


def test_config_aliases_and_conflicts():
    assert load_config({"loss": {"recon": "bce"}}).model.likelihood == "bernoulli"
    cfg = load_config({"loss": {"recon": "mse"}})
    assert (cfg.model.likelihood, cfg.model.likelihood_args) == ("gaussian", {"variance": 0.5, "normalised": False})
    assert load_config(cfg.to_dict()) == cfg  # a saved config reads back the same
    assert load_config({}).model.likelihood == "auto"
    with pytest.raises(ConfigError, match="loss.recon: mse means model.likelihood gaussian.*set loss.recon: auto"):
        load_config({"loss": {"recon": "mse"}, "model": {"preset": "mlp", "likelihood": "laplace"}})
    with pytest.raises(ConfigError, match="unknown likelihood 'gausian'.*Did you mean 'gaussian'"):
        load_config({"model": {"preset": "mlp", "likelihood": "gausian"}})
    with pytest.raises(ConfigError, match="model.likelihood_args.varianse: .*Did you mean 'variance'"):
        load_config({"model": {"preset": "mlp", "likelihood": "gaussian", "likelihood_args": {"varianse": 1}}})
    with pytest.raises(ConfigError, match="model.likelihood_args.components"):
        load_config({"model": {"preset": "mlp", "likelihood": "logistic_mixture", "likelihood_args": {"components": 0}}})


# ------------------------------------------------------------------------ the model: widths and data fit
@pytest.mark.parametrize("name", LIKELIHOODS.names())
def test_presets_size_the_decoder_for_each_likelihood(name):
    cfg = ModelConfig(preset="conv2d", preset_args={"width": 4, "latent": 3}, likelihood=name,
                      likelihood_args=SMALL_OPTIONS.get(name, {}))
    m = build_model(cfg, EIGHT_BIT).eval()
    x = on_grid((2, 1, 8, 8))
    out = m(x)
    assert out.x_params.shape == (2, m.likelihood.params_per_value, 8, 8) and out.x_hat.shape == x.shape
    assert m.sample(3).shape == (3, 1, 8, 8) and m.decode(out.z).shape == x.shape
    assert torch.allclose(m.decode(out.z), out.x_hat, atol=1e-5)


def test_flat_data_and_mlp_presets_follow_the_width():
    m = build_model(ModelConfig(preset="mlp", preset_args={"hidden": 8, "latent": 2}, likelihood="gaussian_per_dim"), (5,))
    assert m.decoder[-1].out_features == 10 and m(torch.rand(3, 5)).x_hat.shape == (3, 5)
    with pytest.raises(ConfigError, match="seed004-attention reads out one value per feature"):
        build_model(ModelConfig(preset="seed004-attention", likelihood="gaussian_per_dim"), (5,))


def test_hand_written_decoder_of_the_wrong_width_is_refused_with_the_fix():
    cfg = ModelConfig(encoder=["Flatten", "Linear_64_8"], decoder=["Linear_4_64", "Unflatten_1_8_8"], likelihood="categorical256")
    with pytest.raises(ModelError, match=r"outputs \(1, 8, 8\).*categorical256 needs \(256, 8, 8\).*end the decoder at 256 channels"):
        build_model(cfg, EIGHT_BIT)
    ok = ModelConfig(encoder=["Flatten", "Linear_64_8"], decoder=["Linear_4_16384", "Unflatten_256_8_8"], likelihood="categorical256")
    assert build_model(ok, EIGHT_BIT).likelihood.name == "categorical256"
    with pytest.raises(ConfigError, match="reads the decoder's raw outputs"):
        build_model(ModelConfig(encoder=["Flatten", "Linear_64_8"], decoder=["Linear_4_16384", "Unflatten_256_8_8", "Sigmoid"],
                                likelihood="categorical256"), EIGHT_BIT)


def test_likelihoods_that_do_not_fit_the_data_are_refused_with_the_fix():
    with pytest.raises(ConfigError, match=r"model.likelihood: categorical256 is for 8-bit data.*use model.likelihood: bernoulli"):
        build_model(ModelConfig(preset="mlp", likelihood="categorical256"), DataSpec((4,)))
    with pytest.raises(ConfigError, match=r"bernoulli models values in \[0, 1\] but the data spans \[-1, 1\].*gaussian"):
        build_model(ModelConfig(preset="mlp", likelihood="bernoulli"), DataSpec((4,), (-1.0, 1.0)))
    with pytest.raises(ConfigError, match="continuous_bernoulli models values in"):
        build_model(ModelConfig(preset="mlp", likelihood="continuous_bernoulli"), DataSpec((4,), (0.0, 2.0)))
    assert build_model(ModelConfig(preset="mlp", likelihood="logistic_mixture"), DataSpec((4,), (-1.0, 1.0), bits=8))


def test_check_shows_the_likelihood_and_the_output_it_needs(tmp_path):
    from vaelab.api import check_config

    x = np.random.default_rng(0).integers(0, 256, (40, 1, 8, 8)) / 255.0
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    raw = {"data": {"name": "table", "path": str(tmp_path / "x.npy")},
           "model": {"preset": "conv2d", "preset_args": {"width": 4, "latent": 3}, "likelihood": "categorical256"}}
    report = check_config(raw)
    assert report.likelihood == "categorical256" and report.output_shape == (256, 8, 8)
    assert report.output_activation == "identity"
    np.save(tmp_path / "x.npy", (x + 1e-3 * np.random.default_rng(1).random(x.shape)).astype(np.float32))
    with pytest.raises(ConfigError, match="8-bit"):
        check_config(raw)


# ------------------------------------------------------------------------- training scores the same likelihood
def test_training_and_evaluation_score_the_same_likelihood(tmp_path):
    from vaelab.training.runs import load_run
    from vaelab.training.loss_setup import LossSetup
    from vaelab.training.trainer import train
    from vaelab.use.likelihood import nll

    x = np.random.default_rng(0).integers(0, 256, (48, 1, 8, 8)) / 255.0
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    cfg = load_config({"data": {"name": "table", "path": str(tmp_path / "x.npy")},
                       "model": {"preset": "conv2d", "preset_args": {"width": 4, "latent": 3}, "likelihood": "gaussian_learned"},
                       "train": {"epochs": 2, "batch_size": 16, "progress": False, "figures": False, "lr": 0.01}})
    run = load_run(train(cfg, tmp_path / "run"))
    lik = run.model.likelihood
    assert lik.name == "gaussian_learned" and float(lik.log_variance.detach()) != pytest.approx(math.log(0.5))  # it was learned
    xs = torch.from_numpy(x[:8]).float()
    out = run.model(xs, sample=False)
    terms = LossSetup.from_config(run.config, run.model, (0.0, 1.0))(out, xs, 1.0)
    torch.testing.assert_close(terms.recon, lik.nll_per_sample(out.x_params, xs).mean())
    ours = nll(run.model, xs, k=1, generator=torch.Generator().manual_seed(0))  # one posterior draw + analytic KL
    assert ours.shape == (8,) and torch.isfinite(ours).all()
    assert float(ours.mean()) == pytest.approx(float(terms.total.detach()), rel=0.2)


def test_one_likelihood_for_models_trained_with_different_ones():
    from vaelab.model.likelihoods import likelihood_for
    from vaelab.use.likelihood import nll

    mse = build_model(load_config({"loss": {"recon": "mse"}, "model": {"preset": "mlp", "preset_args": {"hidden": 8, "latent": 2}}}).model, (6,))
    assert mse.likelihood.name == "gaussian"
    bern = likelihood_for(mse, "bernoulli")
    assert bern.activation == mse.output_activation == "sigmoid"
    x = torch.rand(5, 6).round()
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    own, scored = nll(mse, x, k=1, generator=g()), nll(mse, x, k=1, generator=g(), likelihood=bern)
    post = mse.encode(x)
    eps = torch.randn((1, *post.mean.shape), generator=g())[0]
    params = mse.decoder_output(post.mean + post.std * eps)
    torch.testing.assert_close(scored, (bern.nll_per_sample(params, x) + post.kl()).detach())
    assert not torch.allclose(own, scored)
    with pytest.raises(ConfigError, match="reads 256 outputs per value but this model's decoder gives 1"):
        likelihood_for(mse, "categorical256")
