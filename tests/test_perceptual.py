"""loss.perceptual: LPIPS-VGG from local files only, refused with the fix when none are given or they are wrong.

The weights here are random tensors saved under torchvision's and lpips' key names (no real weights may be
downloaded), so these tests check the loading, the layer taps and the term's plumbing, not LPIPS's published
distances."""
from __future__ import annotations

import pytest
import torch

from vaelab.core.config import load_config
from vaelab.core.errors import ConfigError
from vaelab.training.perceptual import LPIPS, load_lpips
from vaelab.training.runs import read_metrics
from vaelab.training.trainer import train


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """(backbone .pth with torchvision's vgg16 keys incl. its classifier, linear .pth with lpips' keys)."""
    from vaelab.training.perceptual import vgg16_features

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("lpips")
    backbone = {f"features.{k}": v for k, v in vgg16_features().state_dict().items()}
    backbone["classifier.0.weight"] = torch.zeros(4, 4)  # torchvision's file also holds the classifier: ignored
    linear = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 128, 256, 512, 512))}
    torch.save(backbone, root / "vgg16.pth")
    torch.save(linear, root / "vgg.pth")
    return root / "vgg16.pth", root / "vgg.pth"


def test_taps_are_vgg16_relus_before_each_pool(weights):
    net = load_lpips(*weights, value_range=(0, 1))
    kinds = [type(m).__name__ for m in net.features]
    assert [kinds[i] for i in (3, 8, 15, 22, 29)] == ["ReLU"] * 5
    assert [i for i, k in enumerate(kinds) if k == "MaxPool2d"] == [4, 9, 16, 23]
    loaded = torch.load(weights[0], weights_only=True)
    assert torch.equal(net.features[28].weight, loaded["features.28.weight"])
    assert torch.equal(net.lins[4].weight, torch.load(weights[1], weights_only=True)["lin4.model.1.weight"])


def test_distance_is_zero_on_equal_images_symmetric_and_differentiable(weights):
    net = load_lpips(*weights, value_range=(-1, 1))
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1, torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    assert torch.allclose(net(a, a), torch.zeros(2))
    d = net(a, b)
    assert d.shape == (2,) and (d > 0).all() and torch.allclose(d, net(b, a))
    x_hat = b.clone().requires_grad_(True)
    net(x_hat, a).sum().backward()
    assert x_hat.grad.abs().sum() > 0 and all(p.grad is None for p in net.parameters())  # frozen
    net.train()
    assert not net.training  # stays in eval mode inside a training model
    grey = net(a[:, :1], b[:, :1])
    assert torch.allclose(grey, net(a[:, :1].expand(-1, 3, -1, -1), b[:, :1].expand(-1, 3, -1, -1)))


def test_value_range_maps_to_lpips_input_range(weights):
    unit, pm1 = load_lpips(*weights, value_range=(0, 1)), load_lpips(*weights, value_range=(-1, 1))
    a, b = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    assert torch.allclose(unit(a, b), pm1(2 * a - 1, 2 * b - 1), atol=1e-6)


def _cfg(shapes, perceptual):
    return {"seed": 0, "data": {"name": "image_folder", "path": str(shapes), "options": {"size": 16, "scale": "pm1"}},
            "model": {"preset": "seed001-sd", "preset_args": {"base": 8, "downsample": 4}},
            "loss": {"recon": "mse", "reduction": "mean", "perceptual": perceptual},
            "train": {"epochs": 1, "batch_size": 4, "progress": False, "figures": False, "threads": 1}}


def test_requested_without_weights_is_refused_with_the_fix(tmp_path):
    with pytest.raises(ConfigError, match=r"downloads none: set loss\.perceptual\.backbone and loss\.perceptual\.linear "):
        load_config(_cfg(tmp_path, {"weight": 0.1}))
    with pytest.raises(ConfigError, match=r"set loss\.perceptual\.linear \("):
        load_config(_cfg(tmp_path, {"backbone": str(tmp_path / "vgg16.pth")}))


def test_training_with_local_weights_logs_the_term_and_bad_files_are_named(weights, tmp_path, tiny):
    from use_runs import make_shapes_folder

    shapes = make_shapes_folder(tmp_path / "shapes", n=8, size=16)
    cfg = load_config(_cfg(shapes, {"weight": 0.1, "backbone": str(weights[0]), "linear": str(weights[1])}))
    row = read_metrics(train(cfg, tmp_path / "r"))[-1]
    assert row["train_perceptual"] > 0
    missing = load_config(_cfg(shapes, {"backbone": str(tmp_path / "nope.pth"), "linear": str(weights[1])}))
    with pytest.raises(ConfigError, match=r"loss\.perceptual\.backbone: no file .*nope\.pth.*downloads nothing"):
        train(missing, tmp_path / "r2")
    swapped = load_config(_cfg(shapes, {"backbone": str(weights[1]), "linear": str(weights[0])}))
    with pytest.raises(ConfigError, match=r"must be torchvision's VGG16 state dict and lpips'"):
        train(swapped, tmp_path / "r3")
    assert not (tmp_path / "r2").exists() and not (tmp_path / "r3").exists()  # refused before writing anything
    with pytest.raises(ConfigError, match="at least 16x16"):  # digits are 8x8
        train(load_config(tiny(loss={"perceptual": {"backbone": str(weights[0]), "linear": str(weights[1])}})))


def test_direct_construction_matches_the_file_loader(weights):
    bb, lin = (torch.load(p, weights_only=True) for p in weights)
    a, b = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    assert torch.equal(LPIPS(bb, lin, (0, 1))(a, b), load_lpips(*weights, value_range=(0, 1))(a, b))
