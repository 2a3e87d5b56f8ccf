"""Contracts over the OOD registries (scores, compressors, corruptions, embeddings) and correctness of the
distribution metrics (MMD, per-dimension Wasserstein-1) and the 2D embeddings against known answers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from vaelab.core.errors import ConfigError
from vaelab.model.vae import VAE
from vaelab.use.complexity import COMPRESSORS, complexity_bits, quantize_8bit
from vaelab.use.metrics import EMBEDDINGS, embed_2d, mmd_rbf, wasserstein_per_dim
from vaelab.use.ood_corruptions import CORRUPTIONS, corrupt
from vaelab.use.ood_scores import (OOD_SCORES, ScoreContext, compute_scores, default_scores, not_applicable,
                                   score_options)


def tiny_image_vae(likelihood: str = "bernoulli") -> VAE:
    """An 8x8 VAE with the named likelihood; the decoder gives what it needs per pixel (256 logits for categorical)."""
    from vaelab.model.likelihoods import likelihood_choice

    cls, opts = likelihood_choice(likelihood, None, True)
    lik = cls(opts, value_range=(0.0, 1.0), activation="sigmoid" if likelihood == "bernoulli" else "identity")
    torch.manual_seed(0)
    p = lik.params_per_value
    enc = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh())
    dec = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 64 * p), nn.Unflatten(1, (p, 8, 8)))
    return VAE(enc, dec, heads=(nn.Linear(16, 3), nn.Linear(16, 3)), latent_shape=(3,), input_shape=(1, 8, 8),
               likelihood=lik, output_activation=lik.activation).eval()


# options that keep every score fast in the contract test
FAST = {"regret": {"steps": 2}}


@pytest.mark.parametrize("name", OOD_SCORES.names())
def test_every_ood_score_gives_one_finite_value_per_item(name):
    model = tiny_image_vae()
    if not_applicable(name, model) is not None:  # e.g. complexity needs a likelihood over 256 levels
        model = tiny_image_vae("categorical256")
    assert not_applicable(name, model) is None
    x = (torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 255).round() / 255  # 8-bit values
    ctx = ScoreContext(model, x, None, (0.0, 1.0), k=2, seed=0)
    scores = compute_scores(ctx, [name], FAST)[name]
    assert scores.shape == (6,) and torch.isfinite(scores).all()
    again = compute_scores(ScoreContext(model, x, None, (0.0, 1.0), k=2, seed=0), [name], FAST)[name]
    torch.testing.assert_close(scores, again)  # seeded: the same items get the same scores
    assert OOD_SCORES.entry(name).meta.get("doc")


def test_complexity_is_refused_for_a_likelihood_that_is_not_over_256_levels():
    x = torch.rand(4, 1, 8, 8).round()
    for lik in ("bernoulli", "gaussian", "continuous_bernoulli"):
        model = tiny_image_vae(lik)
        why = not_applicable("complexity", model)
        assert why is not None and "categorical256" in why and lik in why
        with pytest.raises(ConfigError, match="model.likelihood: categorical256"):
            compute_scores(ScoreContext(model, x, None, (0.0, 1.0)), ["complexity"])
        assert "complexity" not in default_scores(model)[0] and "complexity" in default_scores(model)[1]
    assert "complexity" in default_scores(tiny_image_vae("categorical256"))[0]


def test_score_names_and_options_are_checked():
    with pytest.raises(ConfigError, match="Did you mean 'regret'"):
        score_options("regrett", None)
    with pytest.raises(ConfigError, match="regret.stepz"):
        score_options("regret", {"stepz": 3})
    with pytest.raises(ConfigError, match="regret.steps"):
        score_options("regret", {"steps": 0})


def _items(shape):
    g = torch.Generator().manual_seed(1)
    flat = torch.full((2, *shape), 0.5)
    noise = torch.rand((2, *shape), generator=g)
    return torch.cat([flat, noise])


@pytest.mark.parametrize("name", COMPRESSORS.names())
def test_every_compressor_is_lossless_and_ranks_simple_below_noisy(name):
    comp = COMPRESSORS.get(name)
    for shape in ((1, 28, 28), (3, 16, 16), (5,)):
        if not comp.accepts(shape):
            with pytest.raises(ConfigError, match="cannot code"):
                complexity_bits(_items(shape), (0.0, 1.0), name)
            continue
        x = _items(shape)
        for item in quantize_8bit(x, (0.0, 1.0)):
            data = comp.compress(item)
            assert np.array_equal(comp.decompress(data, item.shape), item)  # lossless
        if len(shape) == 3:
            bits = complexity_bits(x, (0.0, 1.0), name)
            assert bits[:2].max() * 3 < bits[2:].min()


def test_auto_compressor_and_unknown_name():
    assert complexity_bits(_items((5,)), (0.0, 1.0), "auto").shape == (4,)  # zlib for non-images
    with pytest.raises(ConfigError, match="unknown compressor"):
        complexity_bits(_items((1, 8, 8)), (0.0, 1.0), "gzipp")


@pytest.mark.parametrize("name", CORRUPTIONS.names())
def test_every_corruption_keeps_shape_and_range_and_changes_data(name):
    x = torch.rand(8, 1, 6, 6, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    out = corrupt(x, (0.0, 1.0), kind=name, amount=0.5, generator=torch.Generator().manual_seed(1))
    assert out.shape == x.shape and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not torch.equal(out, x)
    again = corrupt(x, (0.0, 1.0), kind=name, amount=0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again)


def test_unknown_corruption():
    with pytest.raises(ConfigError, match="unknown corruption"):
        corrupt(torch.zeros(2, 3), (0.0, 1.0), kind="blur", amount=0.1, generator=torch.Generator())


@pytest.mark.parametrize("name", EMBEDDINGS.names())
def test_every_embedding_is_seeded_and_two_dimensional(name):
    g = torch.Generator().manual_seed(0)
    mu = torch.cat([torch.randn(30, 6, generator=g), torch.randn(30, 6, generator=g) + 20.0])
    a, b = embed_2d(mu, name, seed=3), embed_2d(mu, name, seed=3)
    assert a.shape == (60, 2) and np.isfinite(a).all() and np.array_equal(a, b)
    # two clusters 20 sd apart stay apart: each point's nearest neighbour is in its own cluster
    d = ((a[:, None] - a[None]) ** 2).sum(-1) + np.eye(60) * 1e12
    nearest = d.argmin(1)
    assert ((nearest < 30) == (np.arange(60) < 30)).all()


def test_pca_keeps_distances_of_points_on_a_plane():
    g = torch.Generator().manual_seed(0)
    plane = torch.linalg.qr(torch.randn(7, 2, generator=g, dtype=torch.float64))[0]  # 2 orthonormal directions in 7D
    pts = torch.randn(40, 2, generator=g, dtype=torch.float64) @ plane.T + 3.0
    xy = embed_2d(pts, "pca")
    p = pts.numpy()
    d_in = np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1))
    d_out = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))
    assert np.abs(d_in - d_out).max() < 1e-9


def test_unknown_embedding():
    with pytest.raises(ConfigError, match="Did you mean 'tsne'"):
        embed_2d(torch.randn(10, 4), "tsn")


def test_mmd_matches_the_closed_form_for_two_gaussians():
    """1-D N(0,1) vs N(m,1) with kernel exp(-d^2 / (2 h^2)): MMD^2 = 2 sqrt(h^2/(h^2+2)) (1 - exp(-m^2 / (2 (h^2+2))))."""
    g = torch.Generator().manual_seed(0)
    h, m, n = 1.0, 1.5, 1500
    a = torch.randn(n, 1, generator=g, dtype=torch.float64)
    b = torch.randn(n, 1, generator=g, dtype=torch.float64) + m
    want = 2 * math.sqrt(h * h / (h * h + 2)) * (1 - math.exp(-m * m / (2 * (h * h + 2))))
    assert mmd_rbf(a, b, bandwidth=h, max_items=n) == pytest.approx(want, abs=0.03)
    same = mmd_rbf(a, torch.randn(n, 1, generator=g, dtype=torch.float64), bandwidth=h, max_items=n)
    assert abs(same) < 0.01  # unbiased: about 0 for one distribution


def test_wasserstein_per_dim_is_exact_on_small_samples():
    a = torch.tensor([[0.0, 1.0], [1.0, 3.0], [2.0, 5.0]])
    b = torch.tensor([[2.0, 1.0], [3.0, 3.0], [4.0, 5.0]])  # dim 0 shifted by 2, dim 1 equal
    assert wasserstein_per_dim(a, b) == pytest.approx([2.0, 0.0])
    c = torch.tensor([[0.0], [10.0]])
    d = torch.tensor([[1.0], [2.0]])  # sorted pairs (0,1), (10,2): mean |diff| = (1 + 8) / 2
    assert wasserstein_per_dim(c, d) == pytest.approx([4.5])


@pytest.mark.skipif("jpeg2000" not in COMPRESSORS.names(), reason="Pillow without OpenJPEG")
def test_jpeg2000_picks_the_resolution_levels_that_code_a_digit_shortest():
    """On 28x28 digits OpenJPEG's default 6 levels code longer than the raw bytes; the registered compressor
    tries each level count and keeps the shortest, so it is never longer than the default and below raw size."""
    import io

    from PIL import Image

    from conftest import SHARED_DATA
    from vaelab.core.config import DataConfig
    from vaelab.data import load_data

    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip("no MNIST under ../shared/data")
    bundle = load_data(DataConfig(name="mnist", path=SHARED_DATA / "mnist", limit=20), 0)
    x, _ = bundle.train.take(12)
    comp = COMPRESSORS.get("jpeg2000")
    ours, default = [], []
    for item in quantize_8bit(x, bundle.value_range):
        buf = io.BytesIO()
        Image.fromarray(item[0]).save(buf, format="JPEG2000", irreversible=False, no_jp2=True)
        data = comp.compress(item)
        assert len(data) <= len(buf.getvalue()) and np.array_equal(comp.decompress(data, item.shape), item)
        ours.append(len(data))
        default.append(len(buf.getvalue()))
    assert sum(ours) < 0.85 * sum(default)  # measured about 0.71 on MNIST test digits
