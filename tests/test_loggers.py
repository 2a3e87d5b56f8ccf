"""train.log: [jsonl, tensorboard], read back with TensorBoard's own reader (EventAccumulator / EventMultiplexer)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vaelab.core.config import load_config
from vaelab.core.errors import ConfigError
from vaelab.training.runs import read_metrics
from vaelab.training.trainer import train

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer  # noqa: E402

torch.set_num_threads(1)


def _cfg(tiny, **train_kw):
    return load_config(tiny(train={"epochs": 2, "batch_size": 64, "progress": False, "figures": False,
                                   "log": ["jsonl", "tensorboard"], **train_kw},
                            loss={"kl_schedule": {"kind": "linear", "start": 0.0, "stop": 1.0}}))


def _events(run: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_scalars_images_and_config_read_back(tiny, tmp_path):
    run = Path(train(_cfg(tiny), tmp_path / "run"))
    acc = _events(run)
    tags = acc.Tags()
    history = read_metrics(run)
    for key, tag in (("train_loss", "train/loss"), ("train_recon", "train/recon"), ("train_kl", "train/kl"),
                     ("val_loss", "val/loss"), ("val_kl", "val/kl"), ("lr", "lr"), ("train_kl_scale", "kl_schedule")):
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [1, 2], tag
        assert [e.value for e in events] == pytest.approx([h[key] for h in history], rel=1e-6), tag
    assert acc.Scalars("kl_schedule")[0].value < acc.Scalars("kl_schedule")[1].value  # the linear warm-up shows
    assert set(tags["images"]) == {"reconstructions", "samples"}
    img = acc.Images("reconstructions")
    assert [e.step for e in img] == [1, 2] and img[0].width > 8 and img[0].height >= 8
    text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "name: tiny" in text and "tensorboard" in text


def test_several_runs_overlay_in_one_logdir(tiny, tmp_path):
    for name, lr in (("a", 1e-3), ("b", 3e-3)):
        train(_cfg(tiny, lr=lr), tmp_path / "runs" / name)
    mux = EventMultiplexer().AddRunsFromDirectory(str(tmp_path / "runs"))
    mux.Reload()
    runs = mux.Runs()
    assert sorted(runs) == ["a/tensorboard", "b/tensorboard"]
    lrs = {r: mux.Scalars(r, "lr")[0].value for r in runs}
    assert lrs == pytest.approx({"a/tensorboard": 1e-3, "b/tensorboard": 3e-3})


def test_resume_keeps_one_point_per_epoch(tiny, tmp_path):
    run = Path(train(_cfg(tiny, epochs=1), tmp_path / "run"))
    train(resume=run, overrides=["train.epochs=3"])
    steps = [e.step for e in _events(run).Scalars("train/loss")]
    assert steps == [1, 2, 3]


def test_jsonl_only_writes_no_event_files(tiny, tmp_path):
    run = Path(train(_cfg(tiny, log=["jsonl"]), tmp_path / "run"))
    assert not (run / "tensorboard").exists() and len(read_metrics(run)) == 2


def test_unknown_logger_is_refused_with_the_close_name(tiny):
    with pytest.raises(ConfigError, match=r"train.log.*'tensorbord'.*Did you mean 'tensorboard'"):
        load_config(tiny(train={"log": ["jsonl", "tensorbord"]}))


def test_conditional_run_logs_one_sample_per_label(tiny, tmp_path):
    model = {"encoder": ["Flatten", "Linear_74_32", "ReLU"], "heads": {"mu": ["Linear_32_4"], "logvar": ["Linear_32_4"]},
             "decoder": ["Linear_14_32", "ReLU", "Linear_32_64", "Unflatten_1_8_8"], "condition": {"kind": "label"}}
    cfg = load_config(tiny(model=model, train={"epochs": 1, "batch_size": 64, "progress": False, "figures": False,
                                               "log": ["tensorboard"]}))
    acc = _events(Path(train(cfg, tmp_path / "run")))
    assert set(acc.Tags()["images"]) == {"reconstructions", "samples (one per label, 0 first)"}
    assert acc.Images("samples (one per label, 0 first)")[0].width >= 10 * 64  # ten labels in one row, enlarged
