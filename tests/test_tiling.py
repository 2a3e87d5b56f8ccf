"""Tiled encode/decode: the grid, whole-image statistics, bad input, sizes that are not multiples, the CLI."""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from vaelab.cli import app
from vaelab.core.config import load_config
from vaelab.core.errors import DataError
from vaelab.data.spec import DataSpec
from vaelab.layers.attention import SpatialSelfAttention
from vaelab.layers.blocks import ResidualBlock
from vaelab.model.build import build_model
from vaelab.use.tile_stats import StatSites
from vaelab.use.tiling import (TilingError, check_tiling, downsampling_factor, ramp, run_tiles, spans, tiled_decode_logits,
                               tiled_posterior, tiled_reconstruct)


@pytest.mark.parametrize("length, tile, overlap, align", [(100, 40, 12, 1), (2048, 256, 64, 8), (264, 64, 16, 8),
                                                          (64, 64, 0, 8), (72, 64, 8, 8), (37, 8, 3, 1)])
def test_spans_cover_cores_partition_and_ramps_sum_to_one(length, tile, overlap, align):
    ss = spans(length, tile, overlap, align)
    assert ss[0].start == 0 and ss[-1].end == length and all(s.end - s.start == min(tile, length) for s in ss)
    assert all(a.end - b.start >= overlap for a, b in zip(ss, ss[1:]))  # every overlap at least the asked one
    assert [s.core_start for s in ss[1:]] == [s.core_end for s in ss[:-1]] and ss[-1].core_end == length
    assert all(s.start % align == 0 and s.core_start % align == 0 for s in ss)
    total = torch.zeros(length, dtype=torch.float64)
    for s in ss:
        total[s.start:s.end] += ramp(s)
    assert torch.allclose(total, torch.ones(length, dtype=torch.float64))


def _net(kind: str) -> nn.Module:
    torch.manual_seed(0)
    return {
        "groupnorms": nn.Sequential(nn.GroupNorm(2, 8), nn.Conv2d(8, 8, 1), nn.GroupNorm(4, 8)),
        "attention": nn.Sequential(SpatialSelfAttention(8, 2), SpatialSelfAttention(8, 2)),
        "blocks": nn.Sequential(ResidualBlock(8, 8, groups=2), SpatialSelfAttention(8, 2), ResidualBlock(8, 8, groups=2)),
    }[kind].eval()


@pytest.mark.parametrize("kind", ["groupnorms", "attention", "blocks"])
def test_exact_statistics_reproduce_the_untiled_network(kind):
    """Per-tile statistics are visibly off; whole-image statistics (exact mode) give the untiled output."""
    net = _net(kind)
    x = torch.randn(2, 8, 40, 48) + torch.linspace(-2, 2, 48)  # a left-to-right trend: tiles differ
    with torch.no_grad():
        ref = net(x)
        errs = {mode: (run_tiles(StatSites(net), (40, 48), 24, 12, 1, mode, lambda r: net(x[..., r.y0:r.y1, r.x0:r.x1]),
                                 Fraction(1), ref.shape[-2:]) - ref).abs().max().item() for mode in ("tile", "estimate", "exact")}
    assert errs["tile"] > 0.05
    assert errs["exact"] < 1e-4 if kind != "blocks" else errs["exact"] < 0.02 * errs["tile"]
    assert errs["estimate"] <= errs["tile"]


def _model(downsample: int = 4, base: int = 8):
    cfg = load_config({"model": {"preset": "seed001-sd", "preset_args": {"base": base, "downsample": downsample},
                                 "input_shape": [3, 32, 32]}})
    torch.manual_seed(0)
    return build_model(cfg.model, DataSpec((3, 32, 32), (-1.0, 1.0))).eval()


def test_one_tile_is_the_untiled_model_and_hooks_are_removed():
    model = _model()
    x = torch.rand(1, 3, 48, 40) * 2 - 1
    with torch.no_grad():
        post = model.encode(x)
        ref = model.likelihood.mean(model.decoder_output(post.mean))
    mean, logvar, size = tiled_posterior(model, x, tile=64)
    assert size == (48, 40) and torch.allclose(mean, post.mean, atol=1e-5) and torch.allclose(logvar, post.logvar, atol=1e-5)
    assert torch.allclose(model.likelihood.mean(tiled_decode_logits(model, post.mean, tile=64)), ref, atol=1e-5)
    assert all(not m._forward_hooks for m in model.modules())


def test_sides_that_are_not_multiples_are_padded_and_cropped_back():
    model = _model()
    x = torch.rand(1, 3, 37, 53) * 2 - 1
    mean, _, size = tiled_posterior(model, x, tile=16, overlap=8)
    assert size == (37, 53) and mean.shape == (1, 4, 10, 14)  # ceil(37/4), ceil(53/4)
    assert tiled_reconstruct(model, x, tile=16, overlap=8).shape == x.shape


def test_bad_tiles_are_refused_with_the_fix():
    with pytest.raises(TilingError, match="smaller than the model's downsampling factor 8: give --tile 8 or more"):
        check_tiling(8, 4, 0)
    with pytest.raises(TilingError, match="not a multiple of the model's downsampling factor 8: use 96 or 104"):
        check_tiling(8, 100, 16)
    with pytest.raises(TilingError, match="--overlap 64 must be smaller than --tile 64"):
        check_tiling(8, 64, 64)
    with pytest.raises(TilingError, match="--overlap 12 is not a multiple"):
        check_tiling(8, 64, 12)
    with pytest.raises(TilingError, match=">= 0"):
        check_tiling(8, 64, -8)
    assert downsampling_factor(_model(8)) == 8


def test_vector_latent_is_refused_with_the_reason(tiny):
    cfg = load_config(tiny())
    model = build_model(cfg.model, DataSpec((1, 8, 8)))
    with pytest.raises(TilingError, match="vector latent"):
        tiled_posterior(model, torch.rand(1, 1, 32, 32), tile=16)
    with pytest.raises(DataError):
        tiled_posterior(_model(), torch.rand(1, 1, 32, 32), tile=16)  # wrong channel count


# ------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def sd_run(tmp_path_factory) -> Path:
    from use_runs import make_shapes_folder
    from vaelab.training.trainer import train

    tmp = tmp_path_factory.mktemp("tiling")
    shapes = make_shapes_folder(tmp / "shapes", n=16)
    cfg = load_config({"data": {"name": "image_folder", "path": str(shapes), "options": {"size": 32, "scale": "pm1"}},
                       "model": {"preset": "seed001-sd", "preset_args": {"base": 8, "downsample": 4}},
                       "loss": {"recon": "mse"}, "train": {"epochs": 1, "batch_size": 8, "progress": False, "figures": False,
                                                           "threads": 1}})
    return Path(train(cfg, tmp / "run"))


def _images(folder: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(1)
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 255, (70, 90, 3), dtype=np.uint8)).save(folder / "wide.png")
    Image.fromarray(rng.integers(0, 255, (41, 33, 3), dtype=np.uint8)).save(folder / "sub" / "odd.png")
    return folder


def _cli(*args) -> str:
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, f"{res.output}\n{res.exception!r}"
    return res.output


def test_cli_reconstruct_encode_decode_keep_each_images_size(sd_run, tmp_path):
    from PIL import Image

    images = _images(tmp_path / "in")
    _cli("reconstruct", sd_run, "--input", images, "--tile", 32, "--overlap", 8, "--out", tmp_path / "rec")
    assert Image.open(tmp_path / "rec" / "wide.png").size == (90, 70)
    assert Image.open(tmp_path / "rec" / "sub" / "odd.png").size == (33, 41)
    _cli("encode", sd_run, "--input", images, "--tile", 32, "--out", tmp_path / "lat")
    assert np.load(tmp_path / "lat" / "wide.npy").shape == (4, 18, 23)
    assert json.loads((tmp_path / "lat" / "image_sizes.json").read_text())["sub/odd.npy"] == [41, 33]
    _cli("decode", sd_run, tmp_path / "lat", "--tile", 32, "--out", tmp_path / "dec")
    assert np.load(tmp_path / "dec" / "sub" / "odd.npy").shape == (3, 41, 33)
    a = np.asarray(Image.open(tmp_path / "rec" / "wide.png"), dtype=float)
    b = np.asarray(Image.open(tmp_path / "dec" / "wide.png"), dtype=float)
    assert np.abs(a - b).max() <= 1  # encode then decode = reconstruct (PNG rounding)


@pytest.mark.parametrize("args, message", [
    (["--tile", "2"], "smaller than the model's downsampling factor 4"),
    (["--tile", "32", "--overlap", "32"], "must be smaller than --tile 32"),
    (["--tile", "32", "--tile-stats", "exactly"], "Did you mean 'exact'"),
])
def test_cli_bad_tiles_exit_2_and_write_nothing(sd_run, tmp_path, args, message, capsys):
    from vaelab.cli import main
    import sys

    images = _images(tmp_path / "in")
    argv = sys.argv
    sys.argv = ["vaelab", "reconstruct", str(sd_run), "--input", str(images), "--out", str(tmp_path / "rec"), *args]
    try:
        with pytest.raises(SystemExit) as e:
            main()
    finally:
        sys.argv = argv
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "rec").exists()


def test_cli_tile_on_a_vector_latent_model(tmp_path, tiny):
    from vaelab.training.trainer import train

    run = train(load_config(tiny(train={"epochs": 1, "progress": False, "figures": False, "threads": 1})), tmp_path / "mlp")
    res = CliRunner().invoke(app, ["reconstruct", str(run), "--tile", "16", "--out", str(tmp_path / "rec")])
    assert res.exit_code != 0 and "vector latent" in str(res.exception)
