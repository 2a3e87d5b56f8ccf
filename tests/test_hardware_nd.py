"""1D signals, 2D images and 3D volumes through the same layer strings; precision and torch.compile options."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vaelab.core.config import load_config
from vaelab.core.errors import ConfigError
from vaelab.training.runs import read_metrics
from vaelab.training.trainer import train


def table_config(tmp_path, shape, preset, **train_opts):
    x = np.random.default_rng(0).random((40, *shape), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    return load_config({"model": {"preset": preset, "preset_args": {"width": 4, "latent": 3}},
                        "data": {"name": "table", "path": str(tmp_path / "x.npy")},
                        "train": {"epochs": 1, "batch_size": 8, "progress": False, "figures": False, **train_opts}})


@pytest.mark.parametrize("preset, shape", [("conv1d", (2, 16)), ("conv2d", (1, 8, 12)), ("conv3d", (1, 4, 8, 8))])
def test_preset_trains_one_epoch_on_its_rank(tmp_path, preset, shape):
    run = train(table_config(tmp_path, shape, preset), tmp_path / "run")
    rows = read_metrics(run)
    assert len(rows) == 1 and np.isfinite(rows[0]["train_loss"])
    from vaelab.training.runs import load_run

    model = load_run(run).model
    assert model.input_shape == shape
    assert model(torch.rand(2, *shape)).x_hat.shape == (2, *shape)


def test_preset_on_the_wrong_rank_names_the_right_one(tmp_path):
    with pytest.raises(ConfigError, match="conv3d is for volumes.*use conv1d"):
        train(table_config(tmp_path, (2, 16), "conv3d"), tmp_path / "run")
    with pytest.raises(ConfigError, match="divisible by 4"):
        train(table_config(tmp_path, (2, 18), "conv1d"), tmp_path / "run2")


def test_bf16_on_cpu_trains_with_fp32_loss_terms(tmp_path):
    from vaelab.data.spec import DataSpec
    from vaelab.model.build import build_model
    from vaelab.training.loss_setup import LossSetup

    cfg = table_config(tmp_path, (1, 8, 8), "conv2d", precision="bf16")
    run = train(cfg, tmp_path / "run")
    assert np.isfinite(read_metrics(run)[0]["train_loss"])
    model = build_model(cfg.model, DataSpec((1, 8, 8), value_range=(0.0, 1.0)))
    x = torch.rand(4, 1, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.x_logits.dtype == torch.bfloat16  # the network ran in bf16 ...
    terms = LossSetup.from_config(cfg, model, (0.0, 1.0))(out, x, 1.0)
    assert terms.total.dtype == terms.recon.dtype == terms.kl.dtype == torch.float32  # ... the loss and KL in fp32


def test_fp16_on_cpu_is_refused_with_the_reason(tmp_path):
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device.*bf16"):
        train(table_config(tmp_path, (2, 16), "conv1d", precision="fp16", device="cpu"), tmp_path / "run")


def test_compile_reports_its_time_apart_and_matches_eager(tmp_path, monkeypatch):
    from vaelab.training import compile as hw_compile

    # the eager backend exercises the torch.compile path without a C++ toolchain run
    monkeypatch.setattr(hw_compile, "compile_model", lambda m, backend=None: torch.compile(m, backend="eager"))
    plain = read_metrics(train(table_config(tmp_path, (2, 16), "conv1d"), tmp_path / "plain"))
    comp = read_metrics(train(table_config(tmp_path, (2, 16), "conv1d", compile=True), tmp_path / "comp"))
    assert comp[0]["compile_seconds"] > 0 and "compile_seconds" not in plain[0]
    assert comp[0]["train_loss"] == pytest.approx(plain[0]["train_loss"], rel=1e-4)  # warm-up left no trace
