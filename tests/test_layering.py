"""The import-linter contracts in pyproject.toml: imports only point down the layers, no cycles."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe is not None, "import-linter is part of the test extra: bash scripts/install.sh test"
    out = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT / "src"), "PATH": str(Path(sys.executable).parent)})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The contract is live: a copy of the package with core importing the trainer fails it."""
    shutil.copytree(ROOT / "src" / "vaelab", tmp_path / "src" / "vaelab")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    bad = tmp_path / "src" / "vaelab" / "core" / "upward.py"
    bad.write_text("from vaelab.training import trainer  # noqa\n")
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    out = subprocess.run([exe], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(tmp_path / "src"), "PATH": str(Path(sys.executable).parent)})
    assert out.returncode != 0 and "vaelab.core.upward" in out.stdout
