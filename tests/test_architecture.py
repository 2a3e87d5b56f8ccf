import pytest
import torch

from vaelab.data.spec import DataSpec
from vaelab.model.build import build_model
from vaelab.core.config import ModelConfig
from vaelab.core.errors import ModelError
from vaelab.model.vae import inject_condition
from vaelab.model.presets import PRESETS

PRESET_SHAPES = {
    "examples-mlp": (1, 28, 28), "mlp": (88,), "seed000-mlp": (88,), "seed002-mlp": (1, 28, 28),
    "seed003-conv": (1, 28, 28), "seed001-sd": (3, 64, 64), "seed004-mlp": (5,), "seed004-attention": (5,),
    "conv1d": (2, 32), "conv2d": (1, 28, 28), "conv3d": (1, 8, 8, 8),
}
SMALL_ARGS = {"seed001-sd": {"base": 32}}


@pytest.mark.parametrize("name", PRESETS.names())
def test_every_preset_round_trips_its_shape(name):
    shape = PRESET_SHAPES.get(name)
    assert shape is not None, f"add preset {name!r} to PRESET_SHAPES"
    model = build_model(ModelConfig(preset=name, preset_args=SMALL_ARGS.get(name, {})), shape)
    x = torch.rand(3, *shape)
    out = model(x)
    assert out.x_hat.shape == x.shape
    assert out.posterior.mean.shape == (3, *model.latent_shape)
    assert model.sample(2).shape == (2, *shape)


def test_examples_mlp_matches_pytorch_examples():
    m = build_model(ModelConfig(preset="examples-mlp"), (1, 28, 28))
    sizes = [tuple(p.shape) for p in m.parameters()]
    # fc1 784->400, fc21/fc22 400->20, fc3 20->400, fc4 400->784
    assert sizes == [(400, 784), (400,), (400, 20), (20,), (400, 20), (20,), (20, 400), (20,), (20, 400), (20,), (784, 400), (784,)] or \
        sorted(sizes) == sorted([(400, 784), (400,), (20, 400), (20,), (20, 400), (20,), (400, 20), (400,), (784, 400), (784,)])
    assert m.num_parameters() == 784 * 400 + 400 + 2 * (400 * 20 + 20) + 20 * 400 + 400 + 400 * 784 + 784


def test_seed001_spatial_latent_sizes():
    for s in (64, 128):
        m = build_model(ModelConfig(preset="seed001-sd", preset_args={"base": 32}), (3, s, s))
        assert m.latent_shape == (4, s // 32, s // 32)


def test_seed003_printed_model():
    m = build_model(ModelConfig(preset="seed003-conv"), (1, 28, 28))
    types = [type(l).__name__ for l in m.encoder]
    assert types == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "Flatten"]
    assert [type(l).__name__ for l in m.mu_head] == ["Linear", "ReLU", "Linear"]
    assert m.mu_head[0].in_features == 128 and m.latent_shape == (16,)
    assert [type(l).__name__ for l in m.decoder][-1] == "ConvTranspose2d" and m.output_activation == "sigmoid"


def test_conditional_mlp_concatenates_one_hot_at_both_ends():
    m = build_model(ModelConfig(preset="seed002-mlp", condition={"kind": "label"}), DataSpec((1, 28, 28), num_classes=10))
    assert m.encoder[1].in_features == 794 and m.decoder[0].in_features == 12
    y = torch.tensor([0, 3, 9])
    c = m.condition_vector(y)
    assert c.shape == (3, 10) and torch.equal(c.argmax(1), y)
    out = m(torch.rand(3, 1, 28, 28), c)
    assert out.x_hat.shape == (3, 1, 28, 28)
    # the condition really acts: same z, different labels -> different decodings
    z = torch.zeros(2, 2)
    a = m.decode(z, m.condition_vector(torch.tensor([1, 1])))
    b = m.decode(z, m.condition_vector(torch.tensor([1, 7])))
    assert torch.equal(a[0], b[0]) and not torch.allclose(a[1], b[1])


def test_label_out_of_range():
    m = build_model(ModelConfig(preset="seed002-mlp", condition={"kind": "label"}), DataSpec((1, 28, 28), num_classes=10))
    with pytest.raises(ValueError, match="label out of range"):
        m.condition_vector(torch.tensor([10]))


def test_conv_condition_broadcast_as_channels():
    h = torch.zeros(2, 3, 4, 4)
    c = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    out = inject_condition(h, c)
    assert out.shape == (2, 5, 4, 4) and out[1, 4].eq(1).all() and out[1, 3].eq(0).all()
    m = build_model(ModelConfig(preset="seed003-conv", condition={"kind": "label"}), DataSpec((1, 28, 28), num_classes=10))
    assert m.encoder[0].in_channels == 11


def test_continuous_condition_vector():
    cfg = ModelConfig(encoder=["Linear_7_16", "ReLU", "Linear_16_4"], decoder=["Linear_5_16", "ReLU", "Linear_16_4"],
                      condition={"kind": "vector", "dim": 3})
    m = build_model(cfg, (4,))
    out = m(torch.rand(5, 4), torch.rand(5, 3))
    assert out.x_hat.shape == (5, 4) and m.latent_shape == (2,)


def test_shape_mismatch_names_the_layer():
    cfg = ModelConfig(encoder=["Flatten", "Linear_64_32", "ReLU", "Linear_30_8"], decoder=["Linear_4_64", "Unflatten_1_8_8"])
    with pytest.raises(ModelError, match=r"model\.encoder\[3\] 'Linear_30_8': expects 30 input features, but the previous layer gives 32"):
        build_model(cfg, (1, 8, 8))


def test_channel_mismatch_names_the_layer():
    cfg = ModelConfig(encoder=["C2d_1_8_3_1_1", "C2d_16_8_3_1_1"], decoder=["C2d_4_1_3_1_1"])
    with pytest.raises(ModelError, match=r"model\.encoder\[1\] 'C2d_16_8_3_1_1': expects 16 input channels, but the previous layer gives 8"):
        build_model(cfg, (1, 8, 8))


def test_odd_spatial_latent_channels():
    cfg = ModelConfig(encoder=["C2d_1_7_3_1_1"], decoder=["C2d_3_1_3_1_1"])
    with pytest.raises(ModelError, match="gives 7 channels.*must be even"):
        build_model(cfg, (1, 8, 8))


def test_decoder_must_end_at_input_shape():
    cfg = ModelConfig(encoder=["Flatten", "Linear_64_8"], decoder=["Linear_4_60"])
    with pytest.raises(ModelError, match=r"decoder outputs \(60,\) per sample but the data is \(1, 8, 8\)"):
        build_model(cfg, (1, 8, 8))


def test_output_activation_follows_data_range():
    cfg = ModelConfig(encoder=["Linear_4_8"], decoder=["Linear_4_4"])
    assert build_model(cfg, DataSpec((4,), value_range=(0.0, 1.0))).output_activation == "sigmoid"
    assert build_model(cfg, DataSpec((4,), value_range=(-1.0, 1.0))).output_activation == "tanh"
    assert build_model(cfg, DataSpec((4,), value_range=(-3.0, 5.0))).output_activation == "identity"
    double = ModelConfig(encoder=["Linear_4_8"], decoder=["Linear_4_4", "Sigmoid"], output_activation="sigmoid")
    with pytest.raises(Exception, match="ends with Sigmoid"):
        build_model(double, (4,))


def test_latent_scale_is_applied_on_encode_and_undone_on_decode():
    cfg = ModelConfig(encoder=["Linear_4_8"], decoder=["Linear_4_4"], latent_scale=0.18215)
    m = build_model(cfg, (4,)).eval()
    x = torch.rand(3, 4)
    out = m(x, sample=False)
    assert torch.allclose(out.z, out.posterior.mean * 0.18215)
    assert torch.allclose(m.decode(out.z), out.x_hat, atol=1e-6)
    # sampling feeds N(0, I) to the decoder, not N(0, 1/scale^2) (seed 001's bug)
    torch.manual_seed(0)
    s = m.sample(4000)
    torch.manual_seed(0)
    ref = m.likelihood.mean(m.decoder(torch.randn(4000, *m.latent_shape)))
    assert torch.allclose(s, ref)
