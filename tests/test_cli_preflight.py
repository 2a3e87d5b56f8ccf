"""`vaelab memory` refuses what `check` and `train` refuse, before measuring anything."""
import yaml
from typer.testing import CliRunner

from conftest import tiny_config
from vaelab.cli import app
from vaelab.core.errors import ConfigError


def test_memory_runs_the_train_preflight(tmp_path):
    cfg = tiny_config(train={"epochs": 1, "batch_size": 32, "progress": False, "figures": False, "precision": "fp16",
                             "device": "cpu"})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    for command in ("check", "memory"):
        res = CliRunner().invoke(app, [command, str(tmp_path / "c.yaml")])
        assert isinstance(res.exception, ConfigError), (command, res.output, res.exception)
        assert "fp16 needs a CUDA device" in str(res.exception)
