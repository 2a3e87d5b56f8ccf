"""`vaelab evaluate` reports reconstruction error against latent bit widths (issue: hardware, point 3)."""
import subprocess
import sys

import pytest

from conftest import tiny_config
from vaelab.core.config import load_config
from vaelab.training.trainer import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = tiny_config(train={"epochs": 15, "batch_size": 32, "lr": 0.003, "progress": False, "figures": False},
                      loss={"kl_weight": 0.05})  # a weak KL term, so the decoder really uses the latent
    return train(load_config(cfg),
                 tmp_path_factory.mktemp("bits") / "run")


def test_error_grows_as_bits_shrink(run, tmp_path):
    from vaelab.use.evaluate import evaluate
    from vaelab.use.inputs import load_items, open_run

    r = open_run(run)
    items = load_items(r, limit=100)
    m = evaluate(r, items, tmp_path, k=5, bits=(32, 8, 2, 1)).metrics
    errs = [m[f"mse_latent_{b}bit"] for b in (32, 8, 2, 1)]
    assert errs[0] == pytest.approx(m["mse"], rel=1e-5)
    assert errs[1] == pytest.approx(errs[0], rel=0.05)
    assert errs[3] > errs[0]


def test_bad_bits_is_refused(run, tmp_path):
    p = subprocess.run([sys.executable, "-m", "vaelab", "evaluate", str(run), "--bits", "8,20", "--out", str(tmp_path / "e")],
                       capture_output=True, text=True)
    assert p.returncode != 0 and "--bits" in p.stderr and not (tmp_path / "e").exists()
