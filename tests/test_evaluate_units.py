"""evaluate and ood name the likelihood and its units; bits/dim and the complexity score only where the
likelihood is a probability of the 8-bit values (categorical256 here), refused with the fix elsewhere."""
from __future__ import annotations

import json
import math

import pytest

from conftest import SHARED_DATA
from vaelab.core.config import load_config
from vaelab.training.trainer import train

MNIST = SHARED_DATA / "mnist"


def _run(tmp, likelihood: str, out: int):
    if not MNIST.is_dir():
        pytest.skip(f"{MNIST} is not present")
    cfg = {"name": f"units-{likelihood}", "data": {"name": "mnist", "path": str(MNIST), "limit": 64},
           "model": {"encoder": ["Flatten", "Linear_784_32", "ReLU"], "heads": {"mu": ["Linear_32_4"], "logvar": ["Linear_32_4"]},
                     "decoder": ["Linear_4_32", "ReLU", f"Linear_32_{784 * out}", f"Unflatten_{out}_28_28"],
                     "likelihood": likelihood},
           "train": {"epochs": 1, "batch_size": 32, "progress": False, "figures": False}}
    return train(load_config(cfg), tmp / likelihood)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("units")
    return {"categorical256": _run(tmp, "categorical256", 256), "bernoulli": _run(tmp, "bernoulli", 1)}


def test_bits_per_dim_only_for_a_likelihood_over_256_levels(runs, tmp_path):
    from vaelab.use.evaluate import evaluate
    from vaelab.use.inputs import load_items, open_run

    for name, run_dir in runs.items():
        run = open_run(run_dir)
        m = evaluate(run, load_items(run, limit=8), tmp_path / name, k=4, bits=()).metrics
        assert m["likelihood"].startswith(name) and m["nll_units"] == "nats per sample"
        if name == "categorical256":
            assert m["bits_per_dim"] == pytest.approx(m["iw_nll_k4"] / (784 * math.log(2)))
        else:
            assert "bits_per_dim" not in m  # a Bernoulli on grey values is no code length of the 8-bit image
        assert m["training_loss"] > 0 and m["training_loss_terms"] == "recon x 1, kl x 1"


def test_complexity_runs_for_categorical_and_is_refused_for_bernoulli(runs, tmp_path):
    from typer.testing import CliRunner

    from vaelab.cli import app

    runner = CliRunner()
    args = ["--out-data", f"fashion_mnist:{SHARED_DATA / 'fashion_mnist'}", "--limit", "6", "--scores", "nll,complexity"]
    ok = runner.invoke(app, ["ood", str(runs["categorical256"]), *args, "--out-dir", str(tmp_path / "c")])
    assert ok.exit_code == 0, ok.output
    assert set(json.loads((tmp_path / "c" / "ood.json").read_text())["metrics"]) == {"nll", "complexity"}
    bad = runner.invoke(app, ["ood", str(runs["bernoulli"]), *args, "--out-dir", str(tmp_path / "b")])
    assert bad.exit_code != 0 and "model.likelihood: categorical256" in str(bad.exception)
    assert not (tmp_path / "b").exists()  # refused before any work


def test_printed_rows_carry_their_units():
    """What `vaelab evaluate` prints: every number with its unit, the likelihood by name."""
    from vaelab.use.evaluate import table_rows

    rows = dict(table_rows({"items": 8, "likelihood": "categorical256", "iw_nll_k1000": 830.6, "iw_k": 1000,
                            "bits_per_dim": 1.528, "nll_units": "nats per sample", "standardized": True,
                            "figures": ["a.png"]}))
    assert rows["iw_nll_k1000"] == "830.6000 nats/item" and rows["bits_per_dim"] == "1.5280 bits/dim"
    assert rows["iw_k"] == "1000 samples" and rows["likelihood"] == "categorical256"
    assert rows["standardized"] == "True" and "figures" not in rows
