"""Use commands read a run folder under its lock in shared mode: refused while a training writes it, and a
training cannot start while they read."""
import subprocess
import sys

import pytest

from conftest import tiny_config
from vaelab.core.config import load_config
from vaelab.core.errors import RunFolderBusyError
from vaelab.training.run_folder import open_run_folder, reading
from vaelab.training.trainer import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("lock") / "run"
    train(load_config(tiny_config(train={"epochs": 1, "batch_size": 32, "progress": False, "figures": False})), out)
    return out


def test_a_use_command_is_refused_while_a_training_holds_the_folder(run_dir, tmp_path):
    with open_run_folder(None, resume=run_dir, overrides=["train.epochs=2"]):  # what `train --resume` holds
        p = subprocess.run([sys.executable, "-m", "vaelab", "sample", str(run_dir), "--out", str(tmp_path / "s")],
                           capture_output=True, text=True, timeout=300)
    assert p.returncode == 1
    assert "is being written by a training" in p.stderr and p.stderr.count("\n") == 1
    assert not (tmp_path / "s").exists()  # refused before writing anything


def test_readers_share_the_folder_and_keep_a_training_out(run_dir):
    with reading(run_dir), reading(run_dir):  # two readers at once
        with pytest.raises(RunFolderBusyError):
            open_run_folder(None, resume=run_dir)
    with open_run_folder(None, resume=run_dir) as folder:  # free again once they are done
        assert folder.lock_fd is not None
