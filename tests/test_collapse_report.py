"""`vaelab report` shows the training log's active units and KL per latent dimension and flags a collapsed run,
on one run's page and side by side, without `vaelab evaluate` having run."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from vaelab.cli import app
from vaelab.core.config import load_config
from vaelab.training.runs import read_metrics
from vaelab.training.trainer import train
from vaelab.use.report import kl_per_dim_text, logged_units

torch.set_num_threads(1)
QUIET = {"epochs": 3, "batch_size": 32, "progress": False, "figures": False}


def cli(*args) -> str:
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, f"{res.output}\n{res.exception!r}"
    return res.output


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from conftest import tiny_config

    tmp = tmp_path_factory.mktemp("collapse-report")
    # a KL weight of 50 pushes every unit to the prior; without a KL term the means follow the inputs
    collapsed = train(load_config(tiny_config(name="collapsed", train=QUIET, loss={"kl_weight": 50.0})),
                      tmp / "collapsed")
    alive = train(load_config(tiny_config(name="alive", train={**QUIET, "lr": 0.01}, loss={"kl_weight": 0.0})),
                  tmp / "alive")
    return Path(collapsed), Path(alive)


def _cells(page: str, metric: str) -> list[str]:
    row = re.search(rf"<tr><td>{re.escape(metric)}</td>(.*?)</tr>", page)
    assert row, f"no row {metric!r}"
    return re.findall(r"<td[^>]*>([^<]*)</td>", row.group(1))


def test_one_run_page_flags_the_collapse_from_the_training_log(runs):
    collapsed, alive = runs
    cli("report", collapsed)
    page = (collapsed / "report.html").read_text()
    assert '<td class="bad">COLLAPSED: 0 of 4 latent dims active</td>' in page  # not evaluated, still flagged
    last = logged_units(read_metrics(collapsed))
    assert last == {"active_units": 0, "latent_dims": 4}
    value, unit = _cells(page, "kl_per_dim")
    assert len(value.split(", ")) == 4 and unit == "nats/item per latent dim"
    cli("report", alive)
    page = (alive / "report.html").read_text()
    assert re.search(r"<td>posterior collapse</td><td>no: [1-4] of 4 latent dims active</td>", page)
    assert "COLLAPSED" not in page


def test_comparison_flags_the_collapsed_run_only(runs, tmp_path):
    out = tmp_path / "cmp.html"
    cli("report", *runs, "--out", out)
    page = out.read_text()
    collapsed, alive = _cells(page, "posterior collapse (training log, last epoch)")
    assert collapsed == "COLLAPSED: 0 of 4 latent dims active" and re.fullmatch(r"no: [1-4] of 4 latent dims active", alive)
    assert _cells(page, "posterior collapse") == ["not evaluated (run vaelab evaluate)"] * 2


def test_kl_per_dim_text_summarises_large_latents():
    assert kl_per_dim_text([0.5, 0.001]) == "0.5, 0.001"
    assert kl_per_dim_text([float(i) for i in range(100)]) == "100 dims: max 99, median 50, min 0"
    assert logged_units([{"epoch": 1}]) == {} and logged_units([]) == {}
