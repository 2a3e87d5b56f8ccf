"""`vaelab check --no-data` builds every shipped recipe and the bundled default: each states its input shape."""
from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from vaelab.cli import app
from vaelab.core.config import default_config_path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = [p for p in sorted((REPO / "configs").glob("*.yaml")) if not p.stem.startswith("search-")]


@pytest.mark.parametrize("path", [*CONFIGS, default_config_path()], ids=lambda p: p.stem)
def test_check_without_data(path):
    res = CliRunner().invoke(app, ["check", str(path), "--no-data"])
    assert res.exit_code == 0, f"{res.output}\n{res.exception!r}"
    assert "total parameters" in res.output


def test_no_data_takes_the_value_range_the_data_options_state():
    """A [-1, 1] recipe (image_folder, scale pm1) gets tanh without data, as `train` gives it, not sigmoid."""
    from vaelab.api import check_config

    assert check_config(REPO / "configs" / "seed001-sd-folder.yaml", load_data=False).output_activation == "tanh"
    assert check_config(default_config_path(), load_data=False).output_activation == "sigmoid"
