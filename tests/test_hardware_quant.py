"""Latent quantization (uniform STE, FSQ, integer export), fake-quantized layers, recon error against bits."""
from __future__ import annotations

import pytest
import torch

from vaelab.model.build import build_model
from vaelab.core.config import load_config
from vaelab.core.errors import ConfigError
from vaelab.model.quantize import FSQ, UniformQuantizer, fake_quantize, recon_error_vs_bits


def model_with(quantize: dict, preset: str = "mlp", shape=(1, 8, 8)):
    cfg = load_config({"model": {"preset": preset, "preset_args": {"hidden": 32, "latent": 4}, "quantize": quantize}})
    return build_model(cfg.model, shape)


@pytest.mark.parametrize("bits", [1, 4, 8, 16])
def test_uniform_levels_and_straight_through_gradient(bits):
    q = UniformQuantizer(bits, range=3.0)
    z = torch.linspace(-5, 5, 1001, requires_grad=True)
    out = q(z)
    assert len(torch.unique(out.detach())) <= 2**bits
    inside = z.detach().abs() <= 3
    assert (out.detach()[inside] - z.detach()[inside]).abs().max() <= q.step / 2 + 1e-5
    out.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))  # straight through
    codes = q.to_integers(z.detach())
    assert codes.codes.dtype == torch.int32 and int(codes.codes.min()) == 0 and int(codes.codes.max()) == 2**bits - 1
    assert torch.allclose(codes.dequantize(), out.detach(), atol=1e-5)


def test_fsq_levels_per_channel_and_export():
    q = FSQ([3, 4, 5])
    z = torch.randn(64, 3, 2, 2) * 3
    out = q(z)
    for i, lv in enumerate([3, 4, 5]):
        assert len(torch.unique(out[:, i])) <= lv
    ints = q.to_integers(z)
    for i, lv in enumerate([3, 4, 5]):
        assert 0 <= int(ints.codes[:, i].min()) and int(ints.codes[:, i].max()) <= lv - 1
    assert torch.allclose(ints.dequantize(), out, atol=1e-6)
    with pytest.raises(ConfigError, match="levels has 3 entries but the latent has 2 channels"):
        q(torch.randn(4, 2))


@pytest.mark.parametrize("q", [{"bits": 0}, {"bits": 17}, {"latent": {"kind": "uniform", "bits": 0}},
                               {"latent": {"kind": "uniform", "bits": 33}}, {"latent": {"kind": "uniform"}},
                               {"latent": {"kind": "fsq", "levels": [1, 5]}}])
def test_bad_quantize_config_is_refused_with_the_field(q):
    with pytest.raises(ConfigError, match="model.quantize"):
        load_config({"model": {"preset": "mlp", "quantize": q}})


def test_quantization_naming_a_missing_layer():
    with pytest.raises(ConfigError, match=r"layers\[0\] 'encoder.9'.*no layer 9"):
        model_with({"layers": ["encoder.9"]})
    with pytest.raises(ConfigError, match=r"'C2d_1_8_3_1_1': no such layer.*Linear_64_32"):
        model_with({"layers": ["C2d_1_8_3_1_1"]})


def test_fake_quantized_layers_change_outputs_and_still_learn():
    torch.manual_seed(0)
    plain = model_with({})
    torch.manual_seed(0)
    quant = model_with({"layers": ["encoder.1", "Linear_32_64"], "bits": 2})
    x = torch.rand(5, 1, 8, 8)
    a = plain(x, sample=False).x_hat
    b = quant(x, sample=False).x_hat
    assert not torch.allclose(a, b)
    b.sum().backward()
    w = quant.encoder[1].parametrizations.weight.original
    assert w.grad is not None and w.grad.abs().sum() > 0
    assert len(torch.unique(quant.encoder[1].weight.detach())) <= 4  # 2-bit weights


def test_fake_quantize_activation_levels():
    t = torch.randn(1000)
    assert len(torch.unique(fake_quantize(t, 3, symmetric=False))) <= 8


def test_latent_quantizer_used_in_forward_decode_and_sample():
    m = model_with({"latent": {"kind": "uniform", "bits": 2, "range": 1.0}})
    x = torch.rand(16, 1, 8, 8)
    out = m(x)
    assert len(torch.unique(out.z.detach())) <= 4
    z = torch.randn(3, 4)
    assert torch.allclose(m.decode(z), m.decode(m.quantize_latent(z)))
    ints = m.encode_integers(x)
    assert ints.codes.shape == (16, 4) and float(ints.scale) == pytest.approx(2 / 3)


def test_recon_error_falls_with_bits_and_training_with_quantized_latent(tmp_path):
    from vaelab.training.trainer import train

    cfg = load_config({"model": {"preset": "mlp", "preset_args": {"hidden": 32, "latent": 4},
                                 "quantize": {"latent": {"kind": "uniform", "bits": 6}}},
                       "data": {"name": "digits", "limit": 600}, "loss": {"kl_weight": 0.01},
                       "train": {"epochs": 8, "lr": 5e-3, "progress": False, "figures": False, "batch_size": 32}})
    run = train(cfg, tmp_path / "run")
    from vaelab.training.runs import load_run

    model = load_run(run).model
    assert model.latent_quantizer is not None
    from vaelab.data import load_data

    x, _ = load_data(cfg.data, 0).test.take(64)
    err = recon_error_vs_bits(model, x, [1, 2, 8, 32])
    assert err[1] > err[8] and err[2] > err[8]
    assert err[32] == pytest.approx(err[8], rel=0.05)
    assert recon_error_vs_bits(model, x, [16], range=50.0)[16] == pytest.approx(err[32], rel=1e-3)
