"""`vaelab convert`: the seeds' own config files, in their formats (../shared/SEED_NOTES.md), become vaelab
configs that name each original key, list what has no equivalent, and train."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from vaelab.cli import app
from vaelab.core.config import load_config
from vaelab.core.errors import ConfigError
from vaelab.training.runs import read_metrics
from vaelab.use.convert import convert

from use_runs import SHARED, make_shapes_folder

torch.set_num_threads(1)

# FlexVAE, seed era: configs/config.cfg (JSON) with every key SEED_NOTES lists, and its structure files
FLEX_SEED_ERA = {
    "base_path": "/home/user/FlexVAE/models/", "run_name": "VAE_shapes", "load_backup": False, "backup_name": "VAE_old",
    "backup_every_n_iter": 50, "sample_every_n_iter": 10, "lat_size": 16, "epochs": 1000, "batch_size": 100,
    "batch_accum": 3, "image_size": 64, "dataset_path": "/home/user/Train_set", "device": "cuda", "lr": 0.0004,
    "resume": False, "reinit_optim": False, "use_scheduler": True, "ReduceLROnPlateau": False, "useEMA": False,
    "weight_decay": 0.01, "latent_conversion_disable": True, "multi_GPU": True,
    "decoder_struct": "VAE_decoder", "encoder_struct": "VAE_encoder",
}
SEED_ENCODER = ["C2d_3_128_3_1_1", "2*VAERB_128_128", "C2d_128_128_3_4_0", "VAERB_128_256", "VAERB_256_256",
                "C2d_256_256_3_4_0", "3*VAERB_256_256", "VAEA_256", "VAERB_256_256", "GN_32_256", "SiLU",
                "C2d_256_8_3_1_1", "C2d_8_8_1_1_0", "MaxP_2_2"]
SEED_DECODER = ["UpS_2", "C2d_4_4_1_1_0", "C2d_4_512_3_1_1", "VAERB_512_512", "VAEA_512", "4*VAERB_512_512", "UpS_4",
                "C2d_512_512_3_1_1", "VAERB_512_256", "2*VAERB_256_256", "UpS_4", "C2d_256_256_3_1_1",
                "VAERB_256_128", "2*VAERB_128_128", "GN_32_128", "SiLU", "C2d_128_3_3_1_1"]

# pytorch-VAE-MNIST: config/config.yaml (its layer-dict grammar; MNIST 28 -> 14 -> 7 -> 2, latent 16)
SEED003_YAML = """device: cuda
train:
  batch_size: 128
  train_epochs: 90
  loss:
    - bceloss
    - regularizationloss
  optim:
    name: adam
    learning_rate: 0.001
    others:
  lr_scheduler:
    name: steplr
    others:
      step_size: 30
      gamma: 0.1
  alpha: 0.1
  model_path: ./pretrained
  progress_path: ./train_progress
  plot_epochs: 10
model:
  architecture:
    encoder:
      conv:
        - Conv2d: {args: [1, 16], kernel_size: 4, stride: 2, padding: 1}
        - BatchNorm2d: {args: [16]}
        - ReLU:
        - Conv2d: {args: [16, 32], kernel_size: 4, stride: 2, padding: 1}
        - BatchNorm2d: {args: [32]}
        - ReLU:
        - Conv2d: {args: [32, 32], kernel_size: 5, stride: 2}
        - BatchNorm2d: {args: [32]}
        - Flatten:
      mean:
        - Linear: {args: [128, 64]}
        - ReLU:
        - Linear: {args: [64, 16]}
      log_var:
        - Linear: {args: [128, 64]}
        - ReLU:
        - Linear: {args: [64, 16]}
    decoder:
      - Linear: {args: [16, 64]}
      - ReLU:
      - Linear: {args: [64, 128]}
      - Unflatten: {args: [1, [32, 2, 2]]}
      - ConvTranspose2d: {args: [32, 32], kernel_size: 5, stride: 2}
      - BatchNorm2d: {args: [32]}
      - ReLU:
      - ConvTranspose2d: {args: [32, 16], kernel_size: 4, stride: 2, padding: 1}
      - BatchNorm2d: {args: [16]}
      - ReLU:
      - ConvTranspose2d: {args: [16, 1], kernel_size: 4, stride: 2, padding: 1}
      - Sigmoid:
test:
  batch_size: 256
  n_components: 2
  model_path: ./pretrained/model_90.pt
  results_path: ./results
"""


def cli(*args) -> str:
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, f"{res.output}\n{res.exception!r}"
    return res.output


def _flexvae_repo(root: Path, cfg: dict, encoder: list[str], decoder: list[str], *, backup: bool = False) -> Path:
    (root / "configs").mkdir(parents=True)
    (root / "model_structures").mkdir()
    (root / "model_structures" / "VAE_encoder.mstruct").write_text(json.dumps(encoder, indent=2))
    (root / "model_structures" / "VAE_decoder.mstruct").write_text(json.dumps(decoder, indent=2))
    path = root / "configs" / "config.cfg"
    path.write_text(json.dumps({"_variables": cfg} if backup else cfg, indent=2))
    return path


def test_flexvae_config_names_every_key(tmp_path):
    path = _flexvae_repo(tmp_path / "FlexVAE", FLEX_SEED_ERA, SEED_ENCODER, SEED_DECODER)
    conv, text = convert(path)
    cfg = load_config(yaml.safe_load(text))
    assert cfg.model.encoder == SEED_ENCODER and cfg.model.decoder == SEED_DECODER  # the .mstruct lists, inlined
    assert cfg.data.options["size"] == 64 and str(cfg.data.path) == "/home/user/Train_set"
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.grad_accum, cfg.train.epochs) == (4e-4, 100, 3, 1000)
    assert cfg.train.optimizer.name == "adamw" and cfg.train.optimizer.weight_decay == 0.01
    assert cfg.train.scheduler.name == "steplr" and cfg.train.scheduler.kwargs == {"step_size": 100, "gamma": 0.5}
    assert cfg.loss.kl_weight == 0.0025 and cfg.model.latent_scale == 0.18215
    assert "lr: 0.0004  # <- lr" in text and "grad_accum: 3  # <- batch_accum" in text
    assert "encoder:  # <- encoder_struct -> model_structures/VAE_encoder.mstruct" in text
    for key in ("base_path", "backup_name", "load_backup", "backup_every_n_iter", "sample_every_n_iter", "resume",
                "reinit_optim", "multi_GPU", "lat_size", "latent_conversion_disable"):
        assert f"#   {key}: " in text, key  # listed, not dropped
    mapped = set(FLEX_SEED_ERA) - set(conv.unmapped)
    named = " ".join(conv.origin.values())
    assert all(k in named for k in mapped), [k for k in mapped if k not in named]


def test_flexvae_backup_format_converts_and_trains(tmp_path):
    """A backup's {"_variables": {...}} JSON, small structures in the seed's grammar, 32 px shapes: it trains."""
    shapes = make_shapes_folder(tmp_path / "shapes", n=16, size=32)
    small_enc = ["C2d_3_32_3_1_1", "VAERB_32_32", "C2d_32_32_3_4_0", "VAERB_32_64", "C2d_64_64_3_4_0", "VAEA_64",
                 "GN_32_64", "SiLU", "C2d_64_8_3_1_1", "C2d_8_8_1_1_0"]
    small_dec = ["C2d_4_4_1_1_0", "C2d_4_64_3_1_1", "VAERB_64_64", "UpS_4", "C2d_64_64_3_1_1", "VAERB_64_32", "UpS_4",
                 "C2d_32_32_3_1_1", "GN_32_32", "SiLU", "C2d_32_3_3_1_1"]
    cfg = {**FLEX_SEED_ERA, "image_size": 32, "dataset_path": str(shapes), "epochs": 1, "batch_size": 8, "batch_accum": 1,
           "device": "cpu"}
    path = _flexvae_repo(tmp_path / "FlexVAE", cfg, small_enc, small_dec, backup=True)
    out = tmp_path / "flex.yaml"
    cli("convert", path, "--out", out, "--set", "train.progress=false", "--set", "train.figures=false")
    run = tmp_path / "run"
    cli("train", out, "--out", run)
    assert len(read_metrics(run)) == 1


def test_pytorch_vae_mnist_config_converts_and_trains(tmp_path):
    path = tmp_path / "pytorch-VAE-MNIST" / "config" / "config.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(SEED003_YAML)
    conv, text = convert(path)
    cfg = load_config(yaml.safe_load(text))
    assert cfg.model.heads is not None and len(cfg.model.encoder) == 9 and cfg.model.decoder[-1] == {"Sigmoid": None}
    assert (cfg.loss.recon, cfg.loss.reduction, cfg.loss.kl_weight) == ("bce", "mean", 0.1)
    assert cfg.train.scheduler.name == "steplr" and cfg.train.scheduler.kwargs == {"step_size": 30, "gamma": 0.1}
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.eval_batch_size) == (90, 128, 256)
    assert "kl_weight: 0.1  # <- train.alpha" in text and "epochs: 90  # <- train.train_epochs" in text
    for key in ("train.model_path", "train.progress_path", "train.plot_epochs", "test.model_path", "test.results_path",
                "test.n_components"):
        assert key in conv.unmapped and f"#   {key}: " in text
    if not (SHARED / "mnist").is_dir():
        pytest.skip(f"{SHARED / 'mnist'} is not present: the training half of this test was skipped")
    out = tmp_path / "seed003.yaml"
    cli("convert", path, "--out", out, "--set", f"data.path={SHARED / 'mnist'}", "--set", "data.limit=200",
        "--set", "train.epochs=1", "--set", "train.progress=false", "--set", "train.figures=false")
    run = tmp_path / "run"
    cli("train", out, "--out", run)
    assert len(read_metrics(run)) == 1


def test_unknown_files_and_existing_outputs_are_refused(tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ConfigError, match="not a config vaelab converts"):
        convert(other)
    path = tmp_path / "config.yaml"
    path.write_text(SEED003_YAML)
    taken = tmp_path / "taken.yaml"
    taken.write_text("mine")
    res = CliRunner().invoke(app, ["convert", str(path), "--out", str(taken)])
    assert res.exit_code != 0 and "exists" in str(res.exception) and taken.read_text() == "mine"
