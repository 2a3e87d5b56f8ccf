"""CLI conventions Python users expect: --version, shell completion, py.typed in the wheel."""
from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vaelab.cli import app

REPO = Path(__file__).resolve().parents[1]


def test_version_matches_the_package_metadata():
    res = CliRunner().invoke(app, ["--version"])
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert res.exit_code == 0 and res.output.strip() == f"vaelab {version}"


def test_shell_completion_is_offered_and_completes_commands():
    res = CliRunner().invoke(app, ["--help"])
    assert "--install-completion" in res.output and "--show-completion" in res.output
    env = {"_VAELAB_COMPLETE": "complete_bash", "COMP_WORDS": "vaelab imp", "COMP_CWORD": "1",
           "PYTHONPATH": str(REPO / "src"), "PATH": ""}
    out = subprocess.run([sys.executable, "-c", "from vaelab.cli import main; main()"], capture_output=True,
                         text=True, env=env).stdout
    assert "import-diffusers" in out


@pytest.mark.slow
def test_wheel_ships_py_typed(tmp_path):
    pytest.importorskip("setuptools")
    import shutil

    src = tmp_path / "src-copy"  # build from a copy: an in-tree build would leave build/ and egg-info behind
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
                    str(src)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("vaelab-*.whl"))
    assert "vaelab/py.typed" in zipfile.ZipFile(wheel).namelist()


def test_a_vaelab_error_inside_a_pydantic_validator_is_its_one_line_message():
    """pydantic wraps a ConfigError raised by a validator in a multi-line ValidationError; the CLI prints the
    vaelab message alone (the boundary's safety net for models validated outside load_config)."""
    from pydantic import ValidationError

    from vaelab.cli.app import validation_line
    from vaelab.core.data_config import DataConfig

    with pytest.raises(ValidationError) as info:
        DataConfig.model_validate({"name": "fashion"})
    line = validation_line(info.value)
    assert "\n" not in line and "validation error" not in line and "Value error" not in line
    assert line.startswith("data.name: unknown dataset 'fashion'") and "fashion_mnist" in line
    with pytest.raises(ValidationError) as info:
        DataConfig.model_validate({"name": "digits", "val_fraction": "lots"})
    assert validation_line(info.value).startswith("val_fraction: ")
