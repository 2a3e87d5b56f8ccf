"""data.options.standardize: fitted on train only, stored in the run, undone on outputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vaelab.core.config import load_config
from vaelab.core.errors import ConfigError, DataError
from vaelab.data import DataConfig, load_data
from vaelab.data.normalize import MIN_STD, Standardizer, fit_standardizer
from vaelab.data.synthetic import make_amass, synthetic_poses
from vaelab.training.runs import load_run
from vaelab.training.trainer import train


def test_fit_apply_undo_round_trip_and_constant_features():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 3, 2, generator=g) * torch.tensor([[1e-3, 5.0]]) + 7.0
    x[:, 2, 1] = 0.25  # a constant feature: centred, never divided by ~0
    s = fit_standardizer(x, (-1.0, 1.0))
    z = s.apply(x)
    keep = torch.ones(3, 2, dtype=torch.bool)
    keep[2, 1] = False
    assert torch.allclose(z.mean(0), torch.zeros(3, 2), atol=1e-4)
    assert torch.allclose(z.std(0, unbiased=False)[keep], torch.ones(5), atol=1e-4)
    assert s.std[2, 1] == 1.0 and bool((z[:, 2, 1] == 0).all())
    assert torch.allclose(s.undo(z), x, atol=1e-5)
    back = Standardizer.from_dict(s.to_dict())
    assert torch.equal(back.mean, s.mean) and torch.equal(back.std, s.std) and back.raw_range == (-1.0, 1.0)
    with pytest.raises(DataError, match="shape"):
        s.apply(torch.zeros(2, 6))
    assert MIN_STD > 0


def test_standardize_is_fitted_on_the_training_split_only(tmp_path):
    path = make_amass(tmp_path / "clip.npz", frames=80, seed=1, amplitude=0.03)
    raw = load_data(DataConfig(name="amass", path=path), 0)
    std = load_data(DataConfig(name="amass", path=path, options={"standardize": True}), 0)
    s = std.normalization
    assert s is not None and raw.normalization is None and s.raw_range == (-1.0, 1.0)
    assert torch.allclose(s.mean, raw.train.x.double().mean(0), atol=1e-9)  # train only, not val/test
    assert torch.allclose(s.undo(std.test.x), raw.test.x, atol=1e-5)
    lo, hi = std.value_range
    assert lo == float(std.train.x.min()) and hi == float(std.train.x.max()) and lo < -1 and hi > 1


def test_standardize_refuses_streamed_data(tmp_path):
    from PIL import Image

    (tmp_path / "a").mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / "a" / f"{i}.png")
    cfg = DataConfig(name="image_folder", path=tmp_path, options={"size": 8, "stream": True, "standardize": True},
                     val_fraction=0, test_fraction=0)
    with pytest.raises(DataError, match="standardize.*stream"):
        load_data(cfg, 0)


def test_unknown_option_still_named():
    with pytest.raises(ValueError, match="data.options.standardise.*Did you mean .standardize."):
        DataConfig(name="amass", options={"standardise": True})


def test_amplitude_scales_the_motion_not_the_rest_pose():
    lively, calm, still = (synthetic_poses(100, amplitude=a) for a in (1.0, 0.03, 0.0))
    assert np.allclose(still, still[0])  # amplitude 0: the rest pose in every frame
    assert np.allclose(calm - still, 0.03 * (lively - still), atol=1e-12)
    with pytest.raises(ConfigError, match="amplitude"):
        synthetic_poses(10, amplitude=-1.0)


def test_standardized_run_stores_the_fit_and_gives_outputs_in_data_units(tmp_path):
    from vaelab.use.evaluate import evaluate
    from vaelab.use.inputs import dataset_items
    from vaelab.use.reconstruct import reconstruct
    from vaelab.use.sampling import sample

    clip = make_amass(tmp_path / "clip.npz", frames=120, seed=0, amplitude=0.03)
    cfg = load_config({"name": "amass-std", "data": {"name": "amass", "path": str(clip), "options": {"standardize": True}},
                       "model": {"preset": "seed000-mlp", "preset_args": {"mid_layer": 16, "latent_dim": 2}},
                       "loss": {"recon": "mse", "alpha": 10.0},
                       "train": {"epochs": 2, "batch_size": 32, "progress": False, "figures": False}})
    run = load_run(train(cfg, tmp_path / "run"))
    s = run.data_spec.normalization
    assert s is not None and run.model.output_activation == "identity"
    raw = load_data(DataConfig(name="amass", path=clip), 0).test.x
    items = dataset_items(run)
    assert torch.allclose(s.undo(items.x), raw, atol=1e-5)
    rec = reconstruct(run, items, tmp_path / "rec")
    out = torch.from_numpy(np.load(rec.out_dir / "reconstructions.npy"))
    q = out.reshape(len(out), -1, 4)
    assert (q.norm(dim=-1) - 1).abs().max() < 0.2  # near-unit quaternions, not standardised values
    smp = torch.from_numpy(np.load(sample(run, 8, tmp_path / "smp").array))
    assert (smp.reshape(8, -1, 4).norm(dim=-1) - 1).abs().max() < 0.5
    m = evaluate(run, items, tmp_path / "ev", k=2, bits=()).metrics
    assert m["standardized"] is True and m["rotation_error_deg"] > 0 and m["mean_pose_rotation_error_deg"] > 0
