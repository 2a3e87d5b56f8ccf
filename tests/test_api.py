"""vaelab.api for notebooks: light import, complete dir(), tensor helpers on every model family, runs that
find their data from any working directory."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import vaelab.api as api
from vaelab.core.config import load_config
from vaelab.core.errors import DataError
from vaelab.training.trainer import train

from use_runs import make_shapes_folder, train_family

REPO = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


@pytest.mark.parametrize("module", ["vaelab", "vaelab.api"])
def test_import_does_not_load_torch(module):
    code = f"import sys, {module}; print(sorted(m for m in ('torch', 'numpy', 'pydantic') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO / "src"), "PATH": ""}).stdout
    assert out.strip() == "[]"


def test_dir_lists_every_public_name():
    names = dir(api)
    for name in ("encode", "decode", "sample", "reconstruct", "write_samples", "write_encodings", "evaluate",
                 "load_run", "train", "load_config", "check_config", "export_run", "import_diffusers"):
        assert name in names and name in api.__all__
    assert not [n for n in names if n.startswith("_") and n in api.__all__]
    for name in api.__all__:
        assert getattr(api, name) is not None


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api")
    return {f: train_family(f, tmp) for f in ("mlp", "conditional", "spatial")}


def test_tensor_helpers_unconditional(runs):
    run = api.load_run(runs["mlp"])
    x = torch.rand(5, 1, 8, 8)
    z = api.encode(run, x)
    assert z.shape == (5, 4)
    assert torch.allclose(api.decode(run, z), api.reconstruct(run, x))
    assert torch.equal(api.encode(runs["mlp"], x.numpy()), z)  # a path and a numpy array work too
    drawn = api.encode(run, x, sample=True, seed=1)
    assert not torch.equal(drawn, z) and torch.equal(drawn, api.encode(run, x, sample=True, seed=1))
    assert api.sample(run, 7).shape == (7, 1, 8, 8)
    with pytest.raises(DataError, match="unconditional"):
        api.encode(run, x, labels=[1] * 5)


def test_tensor_helpers_conditional(runs):
    run = api.load_run(runs["conditional"])
    x, y = torch.rand(6, 1, 8, 8), torch.tensor([0, 1, 2, 3, 4, 5])
    z = api.encode(run, x, y)
    assert z.shape == (6, 4)
    assert torch.allclose(api.decode(run, z, y), api.reconstruct(run, x, y))
    assert api.sample(run, 3).shape == (30, 1, 8, 8)  # three of each of the ten labels
    assert api.sample(run, 4, labels=7).shape == (4, 1, 8, 8)
    assert api.sample(run, 2, labels=[1, 2]).shape == (4, 1, 8, 8)
    with pytest.raises(DataError, match="conditional: give labels"):
        api.encode(run, x)
    with pytest.raises(DataError, match="3 labels for 6 items"):
        api.reconstruct(run, x, [1, 2, 3])


def test_tensor_helpers_spatial_latent(runs):
    run = api.load_run(runs["spatial"])
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    z = api.encode(run, x)
    assert z.dim() == 4 and z.shape[1:] == tuple(run.model.latent_shape)
    out = api.decode(run, z)
    assert out.shape == (2, 3, 32, 32) and torch.allclose(out, api.reconstruct(run, x), atol=1e-5)  # z * scale / scale rounds
    assert api.sample(run, 3).shape == (3, 3, 32, 32)


def test_run_finds_its_data_from_another_directory(tmp_path, monkeypatch):
    work, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    elsewhere.mkdir()
    make_shapes_folder(work / "data" / "shapes", n=12, size=16)
    monkeypatch.chdir(work)
    cfg = load_config({"name": "rel", "data": {"name": "image_folder", "path": "data/shapes",
                                               "options": {"size": 8, "channels": 1, "scale": "01"}},
                       "model": {"preset": "mlp", "preset_args": {"hidden": [16], "latent": 2}},
                       "train": {"epochs": 1, "batch_size": 4, "progress": False, "figures": False}})
    run_dir = Path(train(cfg, "runs/rel")).resolve()
    monkeypatch.chdir(elsewhere)
    run = api.load_run(run_dir)
    assert str(run.config.data.path).endswith("data/shapes") and Path(run.config.data.path).is_dir()
    assert len(api.load_items(run)) > 0
    from vaelab.cli import app

    res = CliRunner().invoke(app, ["evaluate", str(run_dir), "--k", "2", "--bits", "", "--out", str(elsewhere / "ev")])
    assert res.exit_code == 0, res.output
    assert (run_dir / "config.yaml").read_text().count("path: data/shapes") == 1  # the config stays as written
