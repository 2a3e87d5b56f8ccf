"""`vaelab export` (vaelab's Hugging Face-style folder) and the diffusers AutoencoderKL interop, both ways.

The diffusers models are built from small configs here (nothing downloads) and compared with diffusers' own
forward passes.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from vaelab.cli import app
from vaelab.core.config import load_config
from vaelab.core.errors import CheckpointError, ModelError
from vaelab.training.runs import load_run
from vaelab.training.trainer import train

from use_runs import make_shapes_folder

torch.set_num_threads(1)


def cli(*args) -> str:
    res = CliRunner().invoke(app, [str(a) for a in args])
    if res.exit_code != 0:
        raise AssertionError(f"vaelab {' '.join(map(str, args))} failed ({res.exit_code}): {res.output}\n{res.exception!r}")
    return res.output


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    from conftest import tiny_config

    tmp = tmp_path_factory.mktemp("export")
    cfg = load_config(tiny_config(train={"epochs": 2, "batch_size": 32, "progress": False, "figures": False, "ema": 0.9}))
    return Path(train(cfg, tmp / "run"))


def _outputs(run, x):
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        post = run.model.encode(x)
        return post.mean, post.logvar, run.model.decode(post.mean), run.model.sample(4, generator=g)


def test_export_round_trip_gives_identical_outputs(mlp_run, tmp_path):
    out = tmp_path / "hub" / "tiny-vae"
    assert cli("export", mlp_run, "--to", out).strip().endswith("tiny-vae")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    a, b = load_run(mlp_run), load_run(out)
    x = torch.rand(6, 1, 8, 8)
    for u, v in zip(_outputs(a, x), _outputs(b, x)):
        assert torch.equal(u, v)
    assert b.config == a.config and b.history == a.history
    doc = json.loads((out / "config.json").read_text())
    assert doc["format"] == "vaelab-export" and doc["latent_shape"] == [4]
    card = (out / "README.md").read_text()
    assert "library_name: vaelab" in card and "| input shape | (1, 8, 8) |" in card
    assert "| val_loss |" in card and "nats/item" in card and "| seconds |" in card and " s |" in card
    assert "| train_kl_scale | 1 | KL weight factor (0..1) |" in card
    assert 'load_run("tiny-vae")' in card and "tmp" not in card  # the folder's own name, no local paths
    # every use command takes the exported folder like a run
    assert "samples.npy" in cli("sample", out, "-n", "4", "--out", tmp_path / "s")


def test_export_refuses_a_used_folder_and_leaves_nothing_on_error(mlp_run, tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / "mine.txt").write_text("someone's file")
    with pytest.raises(CheckpointError, match="not an empty folder"):
        from vaelab.use.export import export_run

        export_run(load_run(mlp_run), used)
    assert [p.name for p in used.iterdir()] == ["mine.txt"]
    with pytest.raises(ModelError, match="separate-head model does not map to diffusers. AutoencoderKL"):
        export_run(load_run(mlp_run), tmp_path / "d", format="diffusers")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["used"]  # no half-written or temporary folder
    res = CliRunner().invoke(app, ["export", str(mlp_run), "--to", str(tmp_path / "x"), "--format", "difusers"])
    assert res.exit_code != 0 and "diffusers" in str(res.exception)


def test_exported_files_follow_the_umask(mlp_run, tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "shared"
        from vaelab.use.export import export_run

        export_run(load_run(mlp_run), out)
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    for f in out.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f
    for f in mlp_run.iterdir():  # the run folder itself (atomic writes used mkstemp's 0600 before)
        if f.is_file():
            assert stat.S_IMODE(f.stat().st_mode) & 0o044 == 0o044, f


# ------------------------------------------------------------------------------------------------ diffusers
diffusers = pytest.importorskip("diffusers")

KL_CONFIGS = {
    "two-blocks": dict(block_out_channels=(8, 16), layers_per_block=1, latent_channels=2, norm_num_groups=4, sample_size=16),
    "plain": dict(block_out_channels=(8, 8, 16), layers_per_block=2, latent_channels=4, norm_num_groups=8, sample_size=16,
                  use_quant_conv=False, use_post_quant_conv=False, mid_block_add_attention=False, in_channels=1, out_channels=1),
}


def make_kl(folder: Path, **kw):
    torch.manual_seed(0)
    n = len(kw["block_out_channels"])
    kl = diffusers.AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n, **kw)
    with torch.no_grad():  # diffusers zero-initialises nothing we need, but move every weight off its init
        for p in kl.parameters():
            p.add_(0.05 * torch.randn_like(p))
    kl.save_pretrained(folder)
    return kl.eval()


def _compare(kl, run, channels: int, size: int):
    x = torch.rand(3, channels, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        theirs = kl.encode(x).latent_dist
        ours = run.model.encode(x)
        z = torch.randn(theirs.mean.shape, generator=torch.Generator().manual_seed(2))
        decoded = kl.decode(z).sample
        ours_decoded = run.model.decode(z * run.model.latent_scale)  # vaelab's decode takes scaled latents
    assert (theirs.mean - ours.mean).abs().max() < 1e-5
    assert (theirs.logvar - ours.logvar).abs().max() < 1e-5
    assert (decoded - ours_decoded).abs().max() < 1e-5


@pytest.mark.parametrize("name", list(KL_CONFIGS))
def test_import_then_export_diffusers_matches_to_1e5(name, tmp_path):
    kw = KL_CONFIGS[name]
    kl = make_kl(tmp_path / "kl", **kw)
    out = cli("import-diffusers", tmp_path / "kl", "--out", tmp_path / "run")
    run = load_run(tmp_path / "run")
    assert run.model.latent_shape == (kw["latent_channels"], 16 // 2 ** (len(kw["block_out_channels"]) - 1),) * 1 + run.model.latent_shape[2:]
    assert run.model.latent_scale == pytest.approx(0.18215)
    assert any(t.startswith("VAERB_") for t in run.config.model.encoder), out
    _compare(kl, run, kw.get("in_channels", 3), 16)

    cli("export", tmp_path / "run", "--to", tmp_path / "back", "--format", "diffusers")
    back = diffusers.AutoencoderKL.from_pretrained(tmp_path / "back", low_cpu_mem_usage=False).eval()
    assert json.loads((tmp_path / "back" / "config.json").read_text())["block_out_channels"] == list(kw["block_out_channels"])
    _compare(back, run, kw.get("in_channels", 3), 16)


def test_imported_model_fine_tunes(tmp_path):
    make_kl(tmp_path / "kl", **KL_CONFIGS["two-blocks"])
    images = make_shapes_folder(tmp_path / "img", n=8, size=16)
    cli("import-diffusers", tmp_path / "kl", "--out", tmp_path / "run", "--data", f"image_folder:{images}",
        "--set", "train.batch_size=4")
    assert load_run(tmp_path / "run").config.train.batch_size == 4
    before = load_run(tmp_path / "run").model.state_dict()
    cli("train", "--resume", tmp_path / "run", "--set", "train.epochs=1", "--set", "train.progress=false",
        "--set", "train.figures=false")
    after = load_run(tmp_path / "run")
    assert len(after.history) == 1 and any(not torch.equal(before[k], v) for k, v in after.model.state_dict().items())


def test_import_errors_name_the_problem(tmp_path):
    from vaelab.use.diffusers_interop import import_diffusers

    with pytest.raises(CheckpointError, match="no config.json"):
        import_diffusers(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(CheckpointError, match="only AutoencoderKL"):
        import_diffusers(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL", "act_fn": "relu"}))
    with pytest.raises(ModelError, match="act_fn 'relu'"):
        import_diffusers(tmp_path)


def test_seed001_style_run_with_default_eps_does_not_claim_to_map(tmp_path):
    """A vaelab model that differs from AutoencoderKL only in GroupNorm eps is refused, naming the layer."""
    from vaelab.model.build import build_model
    from vaelab.training.runs import Run
    from vaelab.use.diffusers_interop import diffusers_config_of, diffusers_layers

    enc, dec = diffusers_layers({**KL_CONFIGS["two-blocks"], "down_block_types": ["DownEncoderBlock2D"] * 2,
                                 "up_block_types": ["UpDecoderBlock2D"] * 2})
    model = {"encoder": [t.replace("_1e-06", "") for t, _ in enc], "decoder": [t for t, _ in dec],
             "input_shape": [3, 16, 16], "output_activation": "identity"}
    cfg = load_config({"model": model})
    run = Run(tmp_path, cfg, build_model(cfg.model), {}, {})
    with pytest.raises(ModelError, match=r"model.encoder layer 1 'VAERB_8_8_4' .* 'VAERB_8_8_4_1e-06'"):
        diffusers_config_of(run)
