import json
import math

import pytest
import torch

from vaelab.core.checkpoint import load_checkpoint, save_checkpoint
from vaelab.core.config import load_config
from vaelab.core.errors import CheckpointError, ConfigError, TrainingError
from vaelab.training.runs import load_run, read_metrics
from vaelab.training.trainer import train


def losses(run):
    return [v for r in read_metrics(run) for v in (r["train_loss"], r["val_loss"])]


def test_run_folder_contents_and_metrics(tmp_path, tiny):
    run = train(load_config(tiny(train={"epochs": 2, "batch_size": 32, "progress": False, "figures": True})), tmp_path / "r")
    names = {p.name for p in run.iterdir()}
    assert {"config.yaml", "checkpoint.pt", "metrics.jsonl", "loss_curve.png", "reconstructions.png", "samples.png"} <= names
    rows = read_metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2] and all(math.isfinite(r["val_loss"]) for r in rows)
    assert not any(p.name.endswith(".tmp") for p in run.iterdir())


def test_same_seed_same_losses(tmp_path, tiny):
    a = losses(train(load_config(tiny()), tmp_path / "a"))
    b = losses(train(load_config(tiny()), tmp_path / "b"))
    assert a == pytest.approx(b, abs=1e-6)
    c = losses(train(load_config(tiny(seed=4)), tmp_path / "c"))
    assert c != pytest.approx(a, abs=1e-6)


@pytest.mark.parametrize("extra", [{}, {"ema": 0.9, "grad_accum": 2, "scheduler": {"name": "cyclic"}, "grad_clip": 1.0}])
def test_resume_ends_where_uninterrupted_run_would(tmp_path, tiny, extra):
    cfg = load_config(tiny(train={"epochs": 4, "batch_size": 32, "progress": False, "figures": False, **extra},
                           loss={"kl_schedule": {"kind": "cyclical", "n_cycles": 2}}))
    full = train(cfg, tmp_path / "full")

    def interrupt(row):  # Ctrl-C right after epoch 2's checkpoint
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "part", on_epoch=interrupt)
    assert len(read_metrics(tmp_path / "part")) == 2
    resumed = train(resume=tmp_path / "part")
    assert losses(resumed) == pytest.approx(losses(full), abs=1e-6)
    a, b = load_checkpoint(full)["model"], load_checkpoint(resumed)["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_resume_extends_a_finished_run(tmp_path, tiny):
    run = train(load_config(tiny()), tmp_path / "r")
    first = losses(run)
    train(resume=run, overrides=["train.epochs=4"])
    rows = read_metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4] and losses(run)[:4] == first
    assert load_checkpoint(run)["epoch"] == 4


def test_resume_without_checkpoint_is_an_error(tmp_path, tiny):
    # Issue 13: a missing checkpoint used to restart silently from epoch 1 and rewrite metrics.jsonl.
    cfg = load_config(tiny())
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "config.yaml").write_text(cfg.to_yaml())  # killed before the first epoch ended
    (killed / "metrics.jsonl").write_text("")
    with pytest.raises(CheckpointError, match="no checkpoint.pt, so no epoch finished and there is nothing to resume"):
        train(resume=killed)
    assert sorted(p.name for p in killed.iterdir()) == ["config.yaml", "metrics.jsonl"]


def test_resume_refuses_model_change(tmp_path, tiny):
    run = train(load_config(tiny()), tmp_path / "r")
    with pytest.raises(ConfigError, match="model differs"):
        train(resume=run, overrides=["model.encoder.1=Linear_64_16"])


def test_out_folder_with_a_run_is_not_overwritten(tmp_path, tiny):
    run = train(load_config(tiny()), tmp_path / "r")
    before = (run / "checkpoint.pt").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run"):
        train(load_config(tiny()), run)
    assert (run / "checkpoint.pt").read_bytes() == before


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, tiny):
    cfg = load_config(tiny(train={"epochs": 3, "batch_size": 32, "progress": False, "figures": False}))
    run = tmp_path / "r"
    calls = {"n": 0}

    def poison(row):
        calls["n"] += 1
        if calls["n"] == 1:  # after epoch 1: make the weights produce NaN
            for p in trainer_model["m"].parameters():
                p.data.fill_(float("nan"))

    import vaelab.training.trainer as T
    trainer_model = {}
    orig = T.Trainer.__init__

    def spy(self, *a, **k):
        orig(self, *a, **k)
        trainer_model["m"] = self.model

    T.Trainer.__init__ = spy
    try:
        with pytest.raises(TrainingError, match=r"non-finite loss .* at epoch 2, batch 1 .*last good checkpoint"):
            train(cfg, run, on_epoch=poison)
    finally:
        T.Trainer.__init__ = orig
    ckpt = load_checkpoint(run)
    assert ckpt["epoch"] == 1 and all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert len(read_metrics(run)) == 1


def test_early_stopping(tmp_path, tiny):
    cfg = tiny(train={"epochs": 30, "batch_size": 32, "lr": 1e-9, "progress": False, "figures": False,
                      "early_stopping": {"patience": 2, "min_delta": 1.0}})
    rows = read_metrics(train(load_config(cfg), tmp_path / "r"))
    assert len(rows) == 3 and rows[-1].get("stopped_early") is True


def test_weight_decay_is_applied(tmp_path, tiny):
    def norm(wd):
        cfg = tiny(train={"epochs": 2, "batch_size": 32, "progress": False, "figures": False, "lr": 0.01,
                          "optimizer": {"name": "adamw", "weight_decay": wd}})
        run = train(load_config(cfg), tmp_path / f"wd{wd}")
        return sum(float(v.norm()) for k, v in load_checkpoint(run)["model"].items() if "weight" in k)
    assert norm(5.0) < 0.9 * norm(0.0)


def test_load_run_restores_model(tmp_path, tiny):
    run = train(load_config(tiny()), tmp_path / "r")
    r = load_run(run)
    x = torch.rand(4, 1, 8, 8)
    assert r.model(x, sample=False).x_hat.shape == x.shape
    assert list(r.data_spec.shape) == [1, 8, 8] and r.config.name == "tiny"


def test_checkpoint_never_runs_code(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))

    p = tmp_path / "checkpoint.pt"
    torch.save({"format": "vaelab-checkpoint", "version": 1, "evil": Evil()}, p, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="not a readable vaelab checkpoint"):
        load_checkpoint(p)
    assert not (tmp_path / "PWNED").exists()


def test_corrupt_and_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint.pt"):
        load_checkpoint(tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(tmp_path)


def test_atomic_save_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "checkpoint.pt"
    save_checkpoint(p, {"epoch": 1})
    with pytest.raises(Exception):
        save_checkpoint(p, {"epoch": 2, "bad": lambda: 0})  # lambdas cannot be saved
    assert load_checkpoint(p)["epoch"] == 1
    assert [x.name for x in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_bf16_autocast_trains_close_to_fp32(tmp_path, tiny):
    a = losses(train(load_config(tiny()), tmp_path / "a"))
    b = losses(train(load_config(tiny(train={"epochs": 2, "batch_size": 32, "progress": False, "figures": False,
                                             "precision": "bf16"})), tmp_path / "b"))
    assert b[-1] == pytest.approx(a[-1], rel=0.05)


def test_fp16_on_cpu_is_refused(tmp_path, tiny):
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        train(load_config(tiny(train={"precision": "fp16", "device": "cpu", "progress": False})), tmp_path / "r")
