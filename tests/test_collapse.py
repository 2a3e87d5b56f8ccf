"""The bundled default (`vaelab train` with no config) does not collapse: trained to its end, some latent units
are active (Burda et al. 2016) and carry information, and training prints no collapse warning."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from vaelab.core.config import load_config
from vaelab.training.runs import read_metrics
from vaelab.training.trainer import train

DEFAULT = Path(str(resources.files("vaelab") / "configs" / "default.yaml"))


@pytest.mark.slow  # the whole default run: about 8 CPU-seconds on one thread
def test_the_bundled_default_ends_with_active_units(tmp_path, capsys):
    cfg = load_config(DEFAULT, ["train.progress=false", "train.figures=false"])
    rows = read_metrics(train(cfg, tmp_path / "default"))
    last = rows[-1]
    assert last["epoch"] == cfg.train.epochs and last["train_kl_scale"] == pytest.approx(1.0)
    assert last["active_units"] >= 2, last["kl_per_dim"]
    # a collapsed unit carries ~0.001 nats; the active ones carry the information the decoder uses
    assert sum(kl > 0.1 for kl in last["kl_per_dim"]) >= 2, last["kl_per_dim"]
    assert "posterior collapse" not in capsys.readouterr().err
