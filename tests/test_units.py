"""Active units (Burda et al. 2016) and KL per latent dimension: hand-computed values, the metrics log, and the
one-line collapse warning after the KL warm-up."""
from __future__ import annotations

import pytest
import torch

from vaelab.core.config import load_config
from vaelab.data.base import ArrayData
from vaelab.data.spec import DataSpec
from vaelab.model.build import build_model
from vaelab.training.precision import get_precision
from vaelab.training.runs import read_metrics
from vaelab.training.trainer import train
from vaelab.training.units import unit_stats

CPU = torch.device("cpu")


def _identity_encoder():
    """mu = (x0, 0.05 * x1), logvar = 0: unit 0 follows x0, unit 1 barely moves."""
    cfg = load_config({"model": {"encoder": ["Flatten"], "heads": {"mu": ["Linear_2_2"], "logvar": ["Linear_2_2"]},
                                 "decoder": ["Linear_2_2"]}})
    model = build_model(cfg.model, DataSpec((2,), value_range=(0.0, 1.0)))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.mu_head[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.05]]))
    return model


def test_active_units_and_kl_per_dim_match_hand_computation():
    x = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.5, 1.0], [0.2, 0.3], [9.0, 9.0]])
    split = ArrayData(x).to_split()
    stats = unit_stats(_identity_encoder(), split, CPU, get_precision("fp32"), batch_size=2, max_samples=4)
    first = x[:4]  # max_samples: the fifth sample is not read
    mu = torch.stack([first[:, 0], 0.05 * first[:, 1]], dim=1).double()
    assert mu[:, 0].var() > 0.01 > mu[:, 1].var()
    assert stats.active == 1 and stats.samples == 4 and stats.units == 2
    expected_kl = (0.5 * mu.pow(2)).mean(dim=0).tolist()  # logvar 0: KL per unit = mu^2 / 2
    assert stats.kl_per_dim == pytest.approx(expected_kl, rel=1e-3)


def test_every_epoch_logs_units_and_a_collapse_warns_once_after_the_warm_up(tmp_path, tiny, capsys):
    collapse = {"kl_weight": 50.0, "kl_schedule": {"kind": "linear", "warmup_fraction": 1.0}}
    cfg = load_config(tiny(loss=collapse, train={"epochs": 3, "batch_size": 32, "progress": False, "figures": False}))
    rows = read_metrics(train(cfg, tmp_path / "r"))
    assert all(r["active_units"] == 0 and len(r["kl_per_dim"]) == 4 for r in rows)
    assert sum(rows[-1]["kl_per_dim"]) == pytest.approx(rows[-1]["val_kl"], rel=0.05, abs=1e-3)
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning: posterior collapse")]
    # epochs 1 and 2 are still warming the KL weight up; the warning comes once it is fully on
    assert len(warnings) == 1 and "at epoch 3: 0 of 4 latent units are active" in warnings[0]
    assert all(fix in warnings[0] for fix in ("loss.kl_schedule", "loss.free_bits", "loss.kl_weight"))


def test_no_warning_while_the_kl_term_is_off(tmp_path, tiny, capsys):
    cfg = load_config(tiny(loss={"kl_weight": 0.0}, train={"epochs": 2, "batch_size": 32, "lr": 0.01,
                                                           "progress": False, "figures": False}))
    rows = read_metrics(train(cfg, tmp_path / "r"))
    assert rows[-1]["active_units"] > 0  # an autoencoder: the posterior means follow the inputs
    assert "posterior collapse" not in capsys.readouterr().err
