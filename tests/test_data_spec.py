"""DataSpec: built once from the data, the only data input of build_model, stored in and read back from checkpoints."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from vaelab.core.checkpoint import load_checkpoint, save_checkpoint
from vaelab.core.config import ModelConfig, load_config
from vaelab.core.errors import CheckpointError, ConfigError
from vaelab.data import load_data
from vaelab.data.normalize import fit_standardizer
from vaelab.data.spec import DataSpec, on_8bit_grid
from vaelab.model.build import build_model
from vaelab.training.runs import load_run
from vaelab.training.trainer import train


def table(tmp_path, x: np.ndarray, y: np.ndarray | None = None):
    if y is None:
        np.save(tmp_path / "x.npy", x.astype(np.float32))
        return load_config({"data": {"name": "table", "path": str(tmp_path / "x.npy")}}).data
    np.savez(tmp_path / "xy.npz", x=x.astype(np.float32), y=y)
    return load_config({"data": {"name": "table", "path": str(tmp_path / "xy.npz")}}).data


def test_spec_of_a_bundle_is_computed_once_and_describes_the_data():
    bundle = load_data(load_config({"data": {"name": "digits", "limit": 200}}).data, 0)
    spec = bundle.spec
    assert spec is bundle.spec  # cached: one computation per bundle
    assert spec.shape == (1, 8, 8) and spec.value_range == (0.0, 1.0) and spec.num_classes == 10
    assert spec.name == "digits" and spec.condition_dim is None and spec.normalization is None
    assert spec.bits is None  # sklearn digits are sixteenths, not on the 8-bit grid


def test_8bit_grid_detection(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (30, 6)) / 255.0
    assert load_data(table(tmp_path, grey), 0).spec.bits == 8
    assert load_data(table(tmp_path, rng.random((30, 6))), 0).spec.bits is None
    assert on_8bit_grid(torch.tensor([-1.0, 1.0, -1 + 2 * 17 / 255]), (-1.0, 1.0))
    assert not on_8bit_grid(torch.tensor([0.5]), (0.0, 1.0))  # 127.5 steps


def test_roundtrip_is_plain_data_and_frozen():
    norm = fit_standardizer(torch.randn(10, 3, 4, dtype=torch.float64) * 3 + 1, (0.0, 1.0))
    spec = DataSpec((3, 4), (-1.0, 1.0), num_classes=2, class_names=("a", "b"), name="t", bits=8, normalization=norm)
    d = spec.to_dict()
    assert all(isinstance(v, (list, int, float, str, dict, type(None))) for v in d.values())
    back = DataSpec.from_dict(d)
    assert back == spec and back.to_dict() == d
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.shape = (1,)  # type: ignore[misc]


def test_the_spec_converts_between_model_and_data_units():
    raw = torch.randn(20, 2, 2) * 5 + 3
    norm = fit_standardizer(raw, (-2.0, 9.0))
    spec = DataSpec((2, 2), (-1.5, 1.5), normalization=norm)
    torch.testing.assert_close(spec.to_data_units(spec.to_model_units(raw)), raw)
    assert spec.raw_range == (-2.0, 9.0) and DataSpec((2, 2), (-1.5, 1.5)).raw_range == (-1.5, 1.5)
    plain = DataSpec((2, 2))
    assert plain.to_data_units(raw) is raw and plain.to_model_units(raw) is raw
    with pytest.raises(ValueError, match="fitted on samples of shape"):
        DataSpec((4,), normalization=norm)


def test_build_model_takes_the_spec_only():
    cfg = ModelConfig(preset="seed002-mlp", condition={"kind": "label"})
    m = build_model(cfg, DataSpec((1, 8, 8), num_classes=3))
    assert m.condition_width == 3
    with pytest.raises(ConfigError, match="num_classes"):
        build_model(cfg, DataSpec((1, 8, 8)))
    vec = ModelConfig(preset="seed002-mlp", condition={"kind": "vector"})
    assert build_model(vec, DataSpec((1, 8, 8), condition_dim=5)).condition_width == 5
    assert build_model(ModelConfig(preset="mlp"), (4,)).input_shape == (4,)  # a bare shape is a spec of [0, 1] data
    with pytest.raises(ConfigError, match="does not match"):
        build_model(ModelConfig(preset="mlp", input_shape=[5]), DataSpec((4,)))


def test_vector_conditions_get_their_width_from_the_data(tmp_path):
    x = np.random.default_rng(0).random((40, 6))
    y = np.random.default_rng(1).random((40, 3)).astype(np.float32)
    spec = load_data(table(tmp_path, x, y), 0).spec
    assert spec.condition_dim == 3


def test_old_checkpoints_with_a_data_meta_dict_still_load(tmp_path, tiny):
    """A run folder written before the spec existed: checkpoint key `data_meta`, no `data_spec`."""
    run = train(load_config(tiny(train={"epochs": 1, "batch_size": 32, "progress": False, "figures": False})), tmp_path / "r")
    new = load_run(run)
    ckpt = load_checkpoint(run)
    old = {k: v for k, v in ckpt.items() if k not in ("data_spec", "path")}
    old["data_meta"] = {"shape": [1, 8, 8], "value_range": [0.0, 1.0], "num_classes": 10, "cond_dim": None, "name": "digits"}
    save_checkpoint(run / "checkpoint.pt", old)
    assert "data_spec" not in load_checkpoint(run)
    legacy = load_run(run)
    assert legacy.data_spec == DataSpec((1, 8, 8), (0.0, 1.0), num_classes=10, name="digits")
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(legacy.model(x, sample=False).x_hat, new.model(x, sample=False).x_hat)


def test_checkpoint_without_any_data_description(tmp_path, tiny):
    run = train(load_config(tiny(train={"epochs": 1, "batch_size": 32, "progress": False, "figures": False})), tmp_path / "r")
    ckpt = load_checkpoint(run)
    bare = {k: v for k, v in ckpt.items() if k not in ("data_spec", "path")}
    save_checkpoint(run / "checkpoint.pt", bare)
    with pytest.raises(ConfigError, match="model.input_shape is needed"):
        load_run(run)
    bare["config"]["model"]["input_shape"] = [1, 8, 8]
    save_checkpoint(run / "checkpoint.pt", bare)
    assert load_run(run).data_spec.shape == (1, 8, 8)
    with pytest.raises(CheckpointError, match="no shape"):
        DataSpec.from_dict({"value_range": [0, 1]})
