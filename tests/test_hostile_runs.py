"""One writer per run folder and a safe resume (issue 13, points 2 and 3), with real processes and files."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from conftest import REPO, tiny_config
from vaelab.core.checkpoint import load_checkpoint
from vaelab.core.config import load_config
from vaelab.core.errors import CheckpointError, ConfigError, RunFolderBusyError, RunFolderError, TrainingError
from vaelab.training.run_folder import LOCK_NAME, open_run_folder
from vaelab.training.runs import read_metrics
from vaelab.training.trainer import train


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-epoch run, copied fresh for each test that changes it."""
    return train(load_config(tiny_config()), tmp_path_factory.mktemp("runs") / "done")


@pytest.fixture
def run(finished, tmp_path):
    import shutil

    return shutil.copytree(finished, tmp_path / "run")


# ---------------------------------------------------------------------------------------- one writer


def test_second_writer_is_refused_naming_the_holder(tmp_path):
    cfg = load_config(tiny_config())
    with open_run_folder(cfg, tmp_path / "r"):
        with pytest.raises(RunFolderBusyError, match=rf"in use by another vaelab process \(pid {os.getpid()}\)"):
            train(cfg, tmp_path / "r")
    assert (tmp_path / "r" / LOCK_NAME).exists() and not (tmp_path / "r" / "config.yaml").exists()
    train(cfg, tmp_path / "r")  # released: the folder is usable again


def test_kill_9_releases_the_lock_and_leftover_temp_files_are_cleaned(tmp_path):
    cfg = tiny_config(data={"name": "digits"}, train={"epochs": 400, "batch_size": 8, "progress": False, "figures": False})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "r"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "vaelab", "train", str(tmp_path / "c.yaml"), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.time() + 120
        while not (out / "checkpoint.pt").exists() and time.time() < deadline:
            time.sleep(0.1)
        assert (out / "checkpoint.pt").exists()
        with pytest.raises(RunFolderBusyError, match=f"pid {proc.pid}"):
            train(resume=out, overrides=["train.epochs=1"])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    (out / ".checkpoint.pt.k1ll3d.tmp").write_bytes(b"")  # what a kill mid-write leaves
    done = load_checkpoint(out)["epoch"]
    train(resume=out, overrides=[f"train.epochs={done + 1}"])
    assert [r["epoch"] for r in read_metrics(out)] == list(range(1, done + 2))
    assert not list(out.glob("*.tmp"))


def test_out_never_overwrites_files_it_did_not_write(tmp_path):
    cfg = load_config(tiny_config())
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("my own notes\n")
    (mine / "metrics.jsonl").write_text('{"mine": 1}\n')
    before = snapshot(mine)
    with pytest.raises(RunFolderError, match="not empty and is not a vaelab run folder .it holds config.yaml, metrics.jsonl"):
        train(cfg, mine)
    assert snapshot(mine) == before
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunFolderError, match="is a file, not a folder"):
        train(cfg, tmp_path / "file")
    (tmp_path / "empty").mkdir()
    train(cfg, tmp_path / "empty")  # an empty folder is fine


def test_a_run_that_died_before_its_first_checkpoint_can_be_started_again(tmp_path):
    cfg = load_config(tiny_config(train={"lr": 1e30, "optimizer": {"name": "sgd"}}))
    with pytest.raises(TrainingError, match="no epoch finished, so there is no checkpoint"):
        train(cfg, tmp_path / "r")
    with pytest.raises(CheckpointError, match="nothing to resume; start it again with `vaelab train .*config.yaml --out"):
        train(resume=tmp_path / "r")
    train(load_config(tiny_config()), tmp_path / "r")  # its own folder (lock mark present): allowed
    assert load_checkpoint(tmp_path / "r")["epoch"] == 2


def test_refused_new_run_leaves_no_folder(tmp_path):
    with pytest.raises(ConfigError, match="model too large"):
        train(load_config(tiny_config(train={"max_memory_gb": 1e-6})), tmp_path / "new")
    assert not (tmp_path / "new").exists()


# -------------------------------------------------------------------------------------------- resume


@pytest.mark.parametrize("edit,keys", [
    ({"loss": {"kl_weight": 50.0}}, "loss.kl_weight"),
    ({"data": {"val_fraction": 0.3}}, "data.val_fraction"),
    ({"model": {"encoder": ["Flatten", "Linear_64_16", "ReLU"]}}, "model.encoder"),
    ({"seed": 9, "loss": {"alpha": 2.0}}, "loss.alpha, seed"),
])
def test_edited_config_yaml_is_refused_and_nothing_is_written(run, edit, keys):
    raw = yaml.safe_load((run / "config.yaml").read_text())
    for k, v in edit.items():
        raw[k] = {**raw[k], **v} if isinstance(v, dict) else v
    (run / "config.yaml").write_text(yaml.safe_dump(raw))
    before = snapshot(run)
    with pytest.raises(ConfigError, match=f"config.yaml differs from the checkpoint's config at {keys};"):
        train(resume=run, overrides=["train.epochs=3"])
    assert snapshot(run) == before


@pytest.mark.parametrize("override,refused", [
    ("train.optimizer.name=sgd", "train.optimizer.name differs"),
    ("train.batch_size=7", "train.batch_size differs"),
    ("loss.kl_weight=50", "loss differs (loss.kl_weight)"),
    ("data.limit=100", "data differs (data.limit)"),
])
def test_set_outside_the_resume_list_is_refused_before_writing(run, override, refused):
    before = snapshot(run)
    with pytest.raises(ConfigError, match=rf"{refused.replace('(', '.').replace(')', '.')}.*only train.epochs, train.lr"):
        train(resume=run, overrides=[override, "train.epochs=3"])
    assert snapshot(run) == before
    train(resume=run, overrides=["train.epochs=3"])  # the run still resumes plainly afterwards
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2, 3]


def test_lr_override_sets_the_restored_optimizers_rate(run):
    train(resume=run, overrides=["train.epochs=3", "train.lr=0.01"])
    ckpt = load_checkpoint(run)
    assert [g["lr"] for g in ckpt["optimizer"]["param_groups"]] == [0.01]
    assert [r["lr"] for r in read_metrics(run)] == [0.001, 0.001, 0.01]
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["lr"] == 0.01
    assert ckpt["optimizer"]["state"][0]["step"] == torch.tensor(float(3 * 8))  # moments kept across the resume


@pytest.mark.parametrize("scheduler", ["cosine", "onecycle", "multisteplr"])
def test_extending_follows_the_schedule_of_the_new_length(tmp_path, scheduler):
    cfg = tiny_config(train={"epochs": 3, "progress": False, "figures": False, "scheduler": {"name": scheduler}})
    short = train(load_config(cfg), tmp_path / "short")
    train(resume=short, overrides=["train.epochs=6"])
    cfg["train"]["epochs"] = 6
    straight = train(load_config(cfg), tmp_path / "straight")
    got, want = [r["lr"] for r in read_metrics(short)], [r["lr"] for r in read_metrics(straight)]
    assert got[3:] == pytest.approx(want[3:], rel=1e-9)  # epochs 4..6 on the 6-epoch schedule, ending low
    assert got[-1] < got[3] or scheduler == "multisteplr"


def test_resume_without_changes_restores_the_schedule_exactly(tmp_path):
    cfg = load_config(tiny_config(train={"epochs": 4, "progress": False, "figures": False, "scheduler": {"name": "cosine"}}))
    full = train(cfg, tmp_path / "full")

    def stop(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "part", on_epoch=stop)
    train(resume=tmp_path / "part", overrides=["train.max_memory_gb=64"])  # not a schedule key: still exact
    assert [r["lr"] for r in read_metrics(tmp_path / "part")] == [r["lr"] for r in read_metrics(full)]
    assert [r["train_loss"] for r in read_metrics(tmp_path / "part")] == pytest.approx(
        [r["train_loss"] for r in read_metrics(full)], abs=1e-6)


def test_an_untrained_checkpoint_may_also_change_its_step_settings(run):
    from vaelab.training.run_folder import resume_config

    truth = load_config(tiny_config()).to_dict()
    cfg, changed = resume_config(truth, run, ["train.batch_size=7"], fresh=True)  # epoch 0: nothing trained yet
    assert cfg.train.batch_size == 7 and changed == ["train.batch_size"]
    with pytest.raises(ConfigError, match="train.batch_size differs"):
        resume_config(truth, run, ["train.batch_size=7"])
    for refused in ("train.optimizer.name=sgd", "loss.kl_weight=3"):  # the restored optimizer state, the objective
        with pytest.raises(ConfigError, match="differs"):
            resume_config(truth, run, [refused], fresh=True)
