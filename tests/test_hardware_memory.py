"""Measured max batch: the fit, the choice, the bad inputs, the CPU accuracy, and train.batch_size: auto."""
from __future__ import annotations

import numpy as np
import pytest

from vaelab.core.config import load_config
from vaelab.core.errors import ConfigError
from vaelab.training import memory
from vaelab.training.memory import GB, MB, choose_batch, max_batch_for


def linear(fixed: float, per: float, calls: list | None = None):
    def measure(b: int) -> int:
        if calls is not None:
            calls.append(b)
        return int(fixed + per * b)
    return measure


def test_choose_batch_inverts_a_linear_cost():
    calls: list[int] = []
    r = choose_batch(linear(300 * MB, 1 * MB, calls), 1 * GB, margin=0.1)
    # (0.9 GB - 300 MB) / 1 MB per sample
    assert r.batch == int((0.9 * GB - 300 * MB) // MB)
    assert r.per_sample_bytes == pytest.approx(MB, rel=1e-6)
    assert r.predicted_bytes <= 0.9 * GB
    assert len(calls) >= 3  # at least a pair and the refinement probes


def test_batch_capped_at_max_batch_when_memory_is_plentiful():
    r = choose_batch(linear(100 * MB, 1024), 64 * GB, max_batch=500)
    assert r.batch == 500 and r.capped_at == 500


def test_batch_that_cannot_fit_even_at_one_names_the_per_sample_cost():
    with pytest.raises(ConfigError, match=r"not even batch 1 fits.*per sample"):
        choose_batch(linear(900 * MB, 200 * MB), 1 * GB, margin=0.1)


def test_confirm_shrinks_when_the_real_peak_overshoots():
    fit = linear(100 * MB, MB)

    def measure(b: int) -> int:  # linear below 600, much worse above: the confirmation must catch it
        return fit(b) if b < 600 else fit(b) * 3

    r = choose_batch(measure, 1 * GB, margin=0.1, max_batch=512 * 16, confirm=True)
    assert r.confirmed_bytes is not None and r.confirmed_bytes <= 1 * GB


def test_cpu_prediction_within_10_percent_of_measured_peak(tmp_path):
    """Real probes (fresh processes, ru_maxrss); the chosen batch is then run and measured on its own."""
    x = np.random.default_rng(0).random((64, 1, 32, 32), dtype=np.float32)
    np.save(tmp_path / "img.npy", x)
    cfg = load_config({"model": {"preset": "conv2d", "preset_args": {"width": 16}},
                       "data": {"name": "table", "path": str(tmp_path / "img.npy")}})
    spec = {"shape": [1, 32, 32], "value_range": [0.0, 1.0], "num_classes": None, "cond_dim": None}
    r = max_batch_for(cfg, spec, device="cpu", limit_gb=0.5, max_batch=1024, start=64, refine=1, confirm=True)
    assert 1 < r.batch < 1024, r.summary()
    assert r.confirmed_bytes is not None
    assert abs(r.predicted_bytes - r.confirmed_bytes) <= 0.10 * r.confirmed_bytes, r.summary()
    assert r.per_sample_bytes > 10 * 1024  # a 32x32 conv step costs tens of KB per sample, so the fit saw it


def test_fp16_on_cpu_refused_by_the_probe():
    cfg = load_config({"train": {"precision": "fp16"}})
    spec = {"shape": [1, 8, 8], "value_range": [0.0, 1.0], "num_classes": 10, "cond_dim": None}
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        memory.build_step(cfg, spec, memory.torch.device("cpu"))


def test_train_batch_size_auto_uses_the_measured_batch(tmp_path, monkeypatch):
    from vaelab.training.trainer import train

    seen = {}

    def fake_cpu_measure(cfg, spec):
        seen["shape"] = spec["shape"]
        return linear(200 * MB, 4 * MB)

    monkeypatch.setattr(memory, "cpu_measure", fake_cpu_measure)
    monkeypatch.setattr(memory, "free_bytes", lambda dev: 1 * GB)
    cfg = load_config({"model": {"preset": "mlp", "preset_args": {"hidden": 16, "latent": 2}},
                       "data": {"name": "digits", "limit": 400},
                       "train": {"batch_size": "auto", "epochs": 1, "progress": False, "figures": False}})
    run = train(cfg, tmp_path / "run")
    saved = load_config(run / "config.yaml")
    assert seen["shape"] == [1, 8, 8]
    assert saved.train.batch_size == int((0.9 * GB - 200 * MB) // (4 * MB))  # 180, below the 320 training samples


def test_memory_cli_prints_the_batch(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from vaelab.cli import app

    monkeypatch.setattr(memory, "cpu_measure", lambda cfg, spec: linear(100 * MB, 2 * MB))
    (tmp_path / "c.yaml").write_text("data: {name: digits}\n")
    res = CliRunner().invoke(app, ["memory", str(tmp_path / "c.yaml"), "--device", "cpu", "--limit-gb", "0.5"])
    assert res.exit_code == 0, res.output
    assert f"batch_size: {int((0.45 * GB - 100 * MB) // (2 * MB))}" in res.output
