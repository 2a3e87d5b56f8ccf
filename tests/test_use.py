"""The use commands on a tiny trained run of every model family, through the real CLI, plus bad input."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from use_runs import train_family
from vaelab.cli import app
from vaelab.core.errors import CheckpointError, DataError
from vaelab.use.codec import decode_tensor, encode_tensor
from vaelab.use.inputs import dataset_items, folder_items, open_run
from vaelab.use.reconstruct import reconstruct_tensor

FAMILIES = ["mlp", "conditional", "conv", "spatial", "attention"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("use")
    return _Runs(tmp)


class _Runs(dict):
    """Family -> run folder, trained on first use; a family whose data is absent skips the test that asks."""

    def __init__(self, tmp: Path):
        super().__init__()
        self.tmp = tmp

    def __missing__(self, family: str) -> Path:
        self[family] = train_family(family, self.tmp)
        return self[family]


def cli(*args: str) -> str:
    res = CliRunner().invoke(app, [str(a) for a in args])
    if res.exit_code != 0:
        raise AssertionError(f"vaelab {' '.join(map(str, args))} failed ({res.exit_code}): {res.output}\n{res.exception!r}")
    return res.output


def cli_error(*args: str) -> BaseException:
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code != 0, res.output
    return res.exception


@pytest.mark.parametrize("family", FAMILIES)
def test_every_command_on_every_family(family, runs, tmp_path):
    run = runs[family]
    n = min(6, len(dataset_items(open_run(run))))
    cli("reconstruct", run, "--limit", n, "--out", tmp_path / "rec")
    rec = np.load(tmp_path / "rec" / "reconstructions.npy")
    assert rec.shape[0] == n and np.isfinite(rec).all()
    cli("encode", run, "--limit", n, "--out", tmp_path / "lat.npz")
    d = np.load(tmp_path / "lat.npz")
    assert d["mu"].shape == d["z"].shape == d["logvar"].shape and d["mu"].shape[0] == n
    assert float(d["latent_scale"]) == open_run(run).model.latent_scale
    cli("decode", run, tmp_path / "lat.npz", "--out", tmp_path / "dec")
    np.testing.assert_allclose(np.load(tmp_path / "dec" / "outputs.npy"), rec, rtol=1e-5, atol=1e-5)
    cli("sample", run, "-n", 4, "--seed", 3, "--out", tmp_path / "smp")
    s1 = np.load(tmp_path / "smp" / "samples.npy")
    cli("sample", run, "-n", 4, "--seed", 3, "--out", tmp_path / "smp2")
    np.testing.assert_array_equal(s1, np.load(tmp_path / "smp2" / "samples.npy"))  # seeded
    cli("interpolate", run, 0, 1, "--steps", 5, "--out", tmp_path / "interp")
    inter = np.load(tmp_path / "interp" / "interpolation.npy")
    assert inter.shape[0] == 5
    cli("evaluate", run, "--limit", 24, "--k", 8, "--out", tmp_path / "ev")
    m = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert m["iw_nll_k8"] <= m["negative_elbo"] + 5.0 and m["latent_dims"] >= 1
    for f in m["figures"]:
        assert (tmp_path / "ev" / f).is_file()


def test_conditional_sample_has_one_row_per_label(runs, tmp_path):
    cli("sample", runs["conditional"], "-n", 8, "--all-labels", "--out", tmp_path)
    assert np.load(tmp_path / "samples.npy").shape == (80, 1, 8, 8)
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), np.repeat(np.arange(10), 8))
    cli("sample", runs["conditional"], "-n", 3, "--label", 7, "--out", tmp_path / "one")
    np.testing.assert_array_equal(np.load(tmp_path / "one" / "labels.npy"), [7, 7, 7])


def test_point_samples_are_rendered_on_a_black_canvas(runs, tmp_path):
    from PIL import Image

    cli("sample", runs["attention"], "-n", 500, "--out", tmp_path)
    img = np.asarray(Image.open(tmp_path / "samples.png"))
    assert img.shape == (300, 300, 3)
    assert (img.sum(axis=2) == 0).mean() > 0.5  # mostly black background
    assert (img.sum(axis=2) > 0).sum() > 10  # some points drawn


@pytest.mark.parametrize("family", ["mlp", "conditional", "spatial"])
def test_encode_mean_then_decode_equals_reconstruct(family, runs):
    run = open_run(runs[family])
    items = dataset_items(run, limit=16)
    y = items.y if run.model.conditional else None
    _, mu, _ = encode_tensor(run, items.x, y)
    torch.testing.assert_close(decode_tensor(run, mu, y), reconstruct_tensor(run, items.x, y), rtol=1e-5, atol=1e-5)


def test_compare_puts_each_model_in_its_own_row(runs, tmp_path):
    out = tmp_path / "cmp.png"
    cli("compare", runs["mlp"], runs["conditional"], "--out", out, "-n", 6)
    assert out.is_file() and out.stat().st_size > 1000


def test_folder_input_mirrors_layout_and_skips_unreadable_files(runs, tmp_path):
    src = tmp_path / "in"
    shutil.copytree(Path(runs["spatial"]).parent / "shapes", src)
    (src / "class0" / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    text = cli("reconstruct", runs["spatial"], "--input", src, "--out", out)
    assert "skipped 1" in text
    written = sorted(str(p.relative_to(out)) for p in out.rglob("img*.png"))
    expected = sorted(str(p.relative_to(src)) for p in src.rglob("img*.png"))
    assert written == expected and len(written) == 24
    cli("encode", runs["spatial"], "--input", src, "--out", tmp_path / "lat")
    assert (tmp_path / "lat" / "class1" / "img01.npy").is_file()


# ------------------------------------------------------------------------------------------------ bad input
def test_run_folder_without_checkpoint(tmp_path):
    (tmp_path / "config.yaml").write_text("name: x\n")
    with pytest.raises(CheckpointError, match="no checkpoint.pt"):
        open_run(tmp_path)


def test_checkpoint_of_another_architecture(runs, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(runs["mlp"], bad)
    ckpt = torch.load(bad / "checkpoint.pt", weights_only=True)
    other = torch.load(Path(runs["conditional"]) / "checkpoint.pt", weights_only=True)
    ckpt["model"] = other["model"]  # the conditional model's weights (first layer 74 inputs, not 64)
    ckpt.pop("ema", None)
    torch.save(ckpt, bad / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        open_run(bad)


def test_shape_mismatch(runs, tmp_path):
    import numpy as np

    images = tmp_path / "images28.npy"
    np.save(images, np.random.default_rng(0).random((12, 1, 28, 28)).astype(np.float32))
    out = tmp_path / "never"
    exc = cli_error("reconstruct", runs["mlp"], "--data", f"table:{images}", "--limit", 5, "--out", out)
    assert isinstance(exc, DataError) and "(1, 28, 28)" in str(exc) and "(1, 8, 8)" in str(exc)
    assert not out.exists()


def test_label_errors(runs, tmp_path):
    exc = cli_error("sample", runs["mlp"], "--label", 1, "--out", tmp_path / "a")
    assert isinstance(exc, DataError) and "unconditional" in str(exc)
    exc = cli_error("sample", runs["conditional"], "--label", 10, "--out", tmp_path / "b")
    assert isinstance(exc, DataError) and "out of range" in str(exc)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_empty_input_folder(runs, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        folder_items(open_run(runs["spatial"]), tmp_path / "empty")
