"""seed001-sd in the Stable Diffusion layout (downsample 2..16) and train.channels_last."""
import pytest
import torch

from vaelab.core.config import load_config
from vaelab.core.errors import ConfigError
from vaelab.data.spec import DataSpec
from vaelab.model.build import build_model
from vaelab.training.runs import read_metrics
from vaelab.training.trainer import train


def _model(**args):
    cfg = load_config({"model": {"preset": "seed001-sd", "preset_args": args, "input_shape": [3, 32, 32]}})
    return build_model(cfg.model, DataSpec((3, 32, 32), (-1.0, 1.0)))


@pytest.mark.parametrize("f", [2, 4, 8, 16])
def test_downsample_sets_the_latent_and_the_model_round_trips(f):
    m = _model(base=8, downsample=f)
    assert m.latent_shape == (4, 32 // f, 32 // f)
    out = m(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert out.x_hat.shape == (2, 3, 32, 32) and out.posterior.mean.shape == (2, 4, 32 // f, 32 // f)


def test_the_seed_layout_is_unchanged_and_groups_default_to_base_over_4():
    assert _model(base=32).latent_shape == (4, 1, 1)  # the seed's own layout at 32 px
    norms = [m for m in _model(base=16, downsample=4).modules() if isinstance(m, torch.nn.GroupNorm)]
    assert {m.num_groups for m in norms} == {4}  # 4 channels per group at the first level, as Stable Diffusion
    assert {m.num_groups for m in _model(base=16, downsample=4, groups=2).modules() if isinstance(m, torch.nn.GroupNorm)} == {2}


@pytest.mark.parametrize("args, match", [({"downsample": 3}, "downsample must be 2, 4, 8, 16"),
                                         ({"downsample": 4, "blocks": 0}, "blocks must be >= 1")])
def test_bad_preset_args(args, match):
    with pytest.raises(ConfigError, match=match):
        _model(base=8, **args)


def test_channels_last_computes_the_same_and_trains(tmp_path):
    from use_runs import make_shapes_folder

    torch.manual_seed(0)
    m = _model(base=8, downsample=4).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        ref = m(x, sample=False).x_hat
        m.to(memory_format=torch.channels_last)
        got = m(x.contiguous(memory_format=torch.channels_last), sample=False).x_hat
    assert torch.allclose(got, ref, atol=1e-5)

    shapes = make_shapes_folder(tmp_path / "shapes", n=16)
    cfg = load_config({"data": {"name": "image_folder", "path": str(shapes), "options": {"size": 16, "scale": "pm1"}},
                       "model": {"preset": "seed001-sd", "preset_args": {"base": 8, "downsample": 4}},
                       "loss": {"recon": "mse"}, "train": {"epochs": 1, "batch_size": 8, "progress": False,
                                                           "figures": False, "threads": 1, "channels_last": True}})
    rows = read_metrics(train(cfg, tmp_path / "cl"))
    assert len(rows) == 1 and torch.isfinite(torch.tensor(rows[0]["train_loss"]))


def test_channels_last_auto_is_on_for_conv_image_models_only():
    from vaelab.training.loop import uses_channels_last

    conv = _model(base=8, downsample=4)
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
    assert uses_channels_last("auto", conv, (3, 32, 32)) and not uses_channels_last("auto", mlp, (1, 8, 8))
    assert not uses_channels_last("auto", conv, (64,)) and not uses_channels_last(False, conv, (3, 32, 32))
    assert uses_channels_last(True, mlp, (1, 8, 8))
    assert load_config({}).train.channels_last == "auto"
