"""Option names that cannot be mistaken: ood's --in-data/--out-data (old --in/--out deprecated), --out as a folder
refused with the right option named; encode keeps the data's labels for unconditional models."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vaelab.cli import app

from use_runs import SHARED, train_family

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    return train_family("mlp", tmp_path_factory.mktemp("opts"))


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_ood_new_names_and_deprecated_aliases(mlp_run, tmp_path):
    common = ["--limit", "12", "--scores", "nll"]
    res = invoke("ood", mlp_run, "--out-data", "digits", *common, "--out-dir", tmp_path / "new")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "new" / "ood.json").is_file()
    res = invoke("ood", mlp_run, "--in", "digits", "--out", "digits", *common, "--out-dir", tmp_path / "old")
    assert res.exit_code == 0, res.output
    assert "--out is deprecated" in res.output and (tmp_path / "old" / "ood.json").is_file()


def test_ood_out_naming_a_folder_names_out_dir(mlp_run, tmp_path):
    res = invoke("ood", mlp_run, "--out", tmp_path)
    assert res.exit_code == 2 and "--out-dir" in res.output and "--out-data" in res.output
    res = invoke("ood", mlp_run)
    assert res.exit_code == 2 and "--out-data" in res.output


def test_encode_keeps_the_labels_of_an_unconditional_run(mlp_run, tmp_path):
    res = invoke("encode", mlp_run, "--out", tmp_path / "z.npz", "--limit", "20")
    assert res.exit_code == 0, res.output
    data = np.load(tmp_path / "z.npz")
    assert data["labels"].shape == (20,) and data["z"].shape == (20, 4)
