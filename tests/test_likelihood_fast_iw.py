"""The fast no-grad IW-NLL path (channels-last conv weights, cache-sized chunks, a log-softmax over the contiguous
last dim for categorical256) gives the values of the plain path (NCHW, one large chunk, cross-entropy over dim 1)
to float rounding; per-item noise streams make an item's value independent of how the items are sliced."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vaelab.core.config import load_config
from vaelab.core.errors import ArgumentError
from vaelab.data.spec import DataSpec
from vaelab.model.build import build_model
from vaelab.model.layout import channels_last_weights, weights_sha256
from vaelab.use.likelihood import item_noise, item_seed, iw_nll_from_posterior, nll

# the recipe of configs/likelihoods-mnist.yaml, narrower (same layer kinds, last layer sized per likelihood)
TOKENS = ["Unflatten_4_1_1", "CT2d_4_8_4_1_0", "BN2d_8", "ReLU", "CT2d_8_8_3_2_1", "BN2d_8", "ReLU",
          "CT2d_8_4_4_2_1", "BN2d_4", "ReLU"]


def conv_model(likelihood: str, per_value: int):
    cfg = load_config({"data": {"name": "mnist"}}, [
        "model.input_shape=[1,28,28]", f"model.likelihood={likelihood}",
        "model.encoder=[C2d_1_8_4_2_1,ReLU,C2d_8_8_4_2_1,ReLU,C2d_8_8_3_2_1,ReLU]",
        "model.heads.mu=[C2d_8_4_4_1_0,Flatten]", "model.heads.logvar=[C2d_8_4_4_1_0,Flatten]",
        f"model.decoder=[{','.join(TOKENS + [f'CT2d_4_{per_value}_4_2_1'])}]"])
    torch.manual_seed(0)
    model = build_model(cfg.model, DataSpec((1, 28, 28), bits=8))
    for m in model.modules():  # BatchNorm with non-trivial running statistics, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def images(n: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (n, 1, 28, 28), generator=g).float() / 255.0


@pytest.mark.parametrize("name,per_value", [("categorical256", 256), ("logistic_mixture", 30), ("bernoulli", 1),
                                            ("gaussian_per_dim", 2)])
def test_fast_path_equals_plain_path(name, per_value):
    model = conv_model(name, per_value)
    x, k, seed = images(), 40, 7
    fast = nll(model, x, k=k, batch_size=2, seed=seed)
    with torch.no_grad():  # the plain path: NCHW weights, every sample in one chunk, the likelihood's own nll
        post = model.encode(x, None)
        eps = item_noise(tuple(post.mean.shape[1:]), seed, 0, len(x), k, post.mean)
        plain = iw_nll_from_posterior(model, post, x, None, eps, chunk_elements=2**40)
    assert model.decoder[-1].weight.is_contiguous()  # the plain path really ran NCHW
    torch.testing.assert_close(fast, plain, rtol=2e-6, atol=2e-3)
    assert fast.abs().min() > 1.0  # real NLLs of hundreds of nats, not zeros


def test_categorical_last_dim_nll_equals_cross_entropy():
    model = conv_model("categorical256", 256)
    lik = model.likelihood
    z, x = torch.randn(4, 4), images(4)
    with torch.no_grad():
        plain = model.decoder_output(z, None)
        with channels_last_weights(model):
            cl = model.decoder_output(z, None)
    assert cl.is_contiguous(memory_format=torch.channels_last) and plain.is_contiguous()
    ce = F.cross_entropy(plain.unsqueeze(2), (x * 255).round().long(), reduction="none").sum(dim=(1, 2, 3))
    torch.testing.assert_close(lik.nll_per_sample(cl, x), ce, rtol=1e-6, atol=1e-3)
    torch.testing.assert_close(lik.nll_per_sample(plain, x), ce, rtol=1e-6, atol=1e-3)


def test_channels_last_weights_restores_the_model_even_on_error():
    model = conv_model("categorical256", 256)
    before = {n: (p.data_ptr(), p.stride()) for n, p in model.named_parameters()}
    digest = weights_sha256(model)
    with pytest.raises(RuntimeError, match="inside"):
        with channels_last_weights(model) as any_conv:
            assert any_conv and model.decoder[-1].weight.is_contiguous(memory_format=torch.channels_last)
            raise RuntimeError("inside")
    assert {n: (p.data_ptr(), p.stride()) for n, p in model.named_parameters()} == before
    assert weights_sha256(model) == digest
    mlp = torch.nn.Sequential(torch.nn.Linear(3, 3))
    with channels_last_weights(mlp) as any_conv:
        assert not any_conv


def test_per_item_streams_do_not_depend_on_slicing():
    model = conv_model("bernoulli", 1)
    x = images(5)
    whole = nll(model, x, k=30, batch_size=5, seed=3)
    parts = torch.cat([nll(model, x[:2], k=30, batch_size=1, seed=3),
                       nll(model, x[2:], k=30, batch_size=2, seed=3, first_item=2)])
    torch.testing.assert_close(parts, whole, rtol=1e-6, atol=1e-4)
    other = nll(model, x[2:], k=30, batch_size=2, seed=3)  # the same images as items 0..2: other draws
    assert (other - whole[2:]).abs().max() > 1e-3
    assert item_seed(3, 2) != item_seed(2, 3) and item_seed(0, 0) >= 0


def test_negative_seed_refused():
    with pytest.raises(ArgumentError, match="--seed"):
        nll(conv_model("bernoulli", 1), images(1), k=2, seed=-1)


def test_weights_digest_changes_with_the_weights():
    a, b = conv_model("bernoulli", 1), conv_model("bernoulli", 1)
    assert weights_sha256(a) == weights_sha256(b)
    with torch.no_grad():
        b.decoder[-1].bias.add_(1e-6)
    assert weights_sha256(a) != weights_sha256(b)
