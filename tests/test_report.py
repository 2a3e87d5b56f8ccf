"""`vaelab report RUN1 RUN2 ...`: overlaid curves per unit, final metrics side by side with units, collapse
flagged, different data warned about, no absolute paths; and the one-run page's units."""
from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from vaelab.cli import app
from vaelab.core.config import load_config
from vaelab.training.trainer import train
from vaelab.use.report import collapse_note

from use_runs import make_shapes_folder

torch.set_num_threads(1)


def cli(*args) -> str:
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, f"{res.output}\n{res.exception!r}"
    return res.output


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory):
    from conftest import tiny_config

    tmp = tmp_path_factory.mktemp("report")
    a = train(load_config(tiny_config(name="sum")), tmp / "runs" / "sum-run")
    b = train(load_config(tiny_config(name="mean", loss={"reduction": "mean"})), tmp / "runs" / "mean-run")
    shapes = make_shapes_folder(tmp / "shapes", n=12, size=16)
    c = train(load_config(tiny_config(name="shapes", data={"name": "image_folder", "path": str(shapes),
                                                            "options": {"size": 8, "channels": 1, "scale": "01"}})),
              tmp / "runs" / "shapes-run")
    cli("evaluate", a, "--k", "4", "--bits", "", "--limit", "50")
    return [Path(a), Path(b), Path(c)], tmp


def _images(page: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(s))) for s in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_comparison_page(three_runs):
    runs, tmp = three_runs
    out = tmp / "cmp.html"
    assert cli("report", *runs, "--out", out).strip() == str(out)
    page = out.read_text()
    assert "Comparison of 3 runs: sum-run, mean-run, shapes-run" in page
    assert str(tmp) not in page and "/tmp" not in page  # folder names only
    assert "trained on different data" in page  # digits vs image_folder
    # curves in different units never share an axis: val_loss once for nats/item, once for mean per value
    captions = re.findall(r"<figcaption>([^<]+)</figcaption>", page)
    assert "val_loss (nats/item): sum-run, shapes-run" in captions and "val_loss (mean per value): mean-run" in captions
    assert len(_images(page)) == len(captions) == 8
    # final metrics side by side, every number with its unit; the unevaluated runs say so
    row = re.search(r"<tr><td>val_loss</td>(.*?)</tr>", page).group(1)
    cells = re.findall(r"<td>([^<]*)</td>", row)
    assert cells[0].endswith(" nats/item") and cells[1].endswith(" mean per value") and cells[2].endswith(" nats/item")
    assert re.search(r"<td>evaluation: negative_elbo</td><td>[0-9.]+ nats/item</td><td>not evaluated</td>", page)
    assert re.search(r"<td>posterior collapse</td><td( class=\"bad\")?>(COLLAPSED: 0|no: \d+) of 4 latent dims active", page)


def test_collapse_is_flagged():
    assert collapse_note({"active_units": 0, "latent_dims": 16}).startswith("COLLAPSED: 0 of 16")
    assert collapse_note({"active_units": 5, "latent_dims": 16}) == "no: 5 of 16 latent dims active"
    assert collapse_note({}).startswith("not evaluated")


def test_single_run_page_has_units_and_no_absolute_path(three_runs):
    runs, tmp = three_runs
    cli("report", runs[0])
    page = (runs[0] / "report.html").read_text()
    assert "<code>sum-run</code>" in page and str(tmp) not in page
    assert "<td>val_loss</td><td>" in page and "nats/item" in page and "<td>negative_elbo</td>" in page
    assert "posterior collapse" in page
    assert "<figcaption>loss per epoch (train solid, validation dashed)</figcaption>" in page
