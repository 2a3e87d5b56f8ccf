"""DistributedDataParallel on CPU: gloo, 2 processes under torchrun; sharding; bad world sizes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vaelab.data.base import ArrayData
from vaelab.core.errors import ConfigError
from vaelab.training.distributed import ShardedSplit, check_split
from vaelab.training.runs import read_metrics

CONFIG = """name: ddp
seed: 3
model: {preset: mlp, preset_args: {hidden: 32, latent: 4}}
data: {name: digits, limit: 200}
train: {epochs: 2, batch_size: 32, progress: true, figures: false, device: cpu}  # epoch lines on: only rank 0 may print them
"""


def vaelab(*args: str, nproc: int = 1) -> subprocess.CompletedProcess:
    src = str(Path(__file__).resolve().parents[1] / "src")  # this checkout's code, not whatever vaelab pip installed
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    pre = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else [sys.executable]
    proc = subprocess.run([*pre, "-m", "vaelab", *args], capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_two_gloo_processes_train_resume_and_match_one_process(tmp_path):
    (tmp_path / "c.yaml").write_text(CONFIG)
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    first = vaelab("train", str(tmp_path / "c.yaml"), "--out", str(ddp), nproc=2)
    assert first.stderr.count("epoch 1/2") == 1  # only rank 0 logs
    assert first.stdout.strip() == str(ddp)  # only rank 0 prints the run folder
    assert len(read_metrics(ddp)) == 2  # only rank 0 writes (two writers would append 4 lines)
    vaelab("train", "--resume", str(ddp), "--set", "train.epochs=3", nproc=2)
    vaelab("train", str(tmp_path / "c.yaml"), "--out", str(single), "--set", "train.epochs=3")
    d, s = read_metrics(ddp), read_metrics(single)
    assert [r["epoch"] for r in d] == [1, 2, 3] and [r["step"] for r in d] == [r["step"] for r in s]
    # Same global batches and averaged gradients; only the reparameterisation noise differs (each rank draws
    # its own), so the losses agree to within 2% while both fall.
    for a, b in zip(d, s):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=0.02)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=0.02)  # the ranks' validation shards, summed
    assert d[2]["train_loss"] < d[0]["train_loss"]


def test_sharded_split_gives_each_rank_a_disjoint_slice_of_the_same_global_batch():
    data = ArrayData(torch.arange(11, dtype=torch.float32).view(11, 1), torch.arange(11)).to_split()
    seen = []
    for rank in range(2):
        g = torch.Generator().manual_seed(0)
        seen.append([x.view(-1).tolist() for x, _ in ShardedSplit(data, rank, 2).batches(4, shuffle=True, generator=g)])
    g = torch.Generator().manual_seed(0)
    whole = [x.view(-1).tolist() for x, _ in data.batches(4, shuffle=True, generator=g)]
    assert [a + b for a, b in zip(*seen)] == [w[: len(w) - len(w) % 2] for w in whole]  # tail of 3 -> 2 used
    assert len(ShardedSplit(data, 0, 2)) == 10


def test_rank_batches_cover_every_validation_item_once():
    from vaelab.training.distributed import DistContext, rank_batches

    data = ArrayData(torch.arange(23, dtype=torch.float32).view(23, 1)).to_split()
    seen = [torch.cat([x for x, _ in rank_batches(data.batches(4, shuffle=False), DistContext(r, 3, r, "gloo"))])
            for r in range(3)]
    assert sorted(torch.cat(seen).view(-1).tolist()) == list(range(23))
    assert len(list(rank_batches(data.batches(4, shuffle=False), None))) == 6


def test_world_sizes_the_data_cannot_split_are_refused():
    with pytest.raises(ConfigError, match="batch_size 33 .* does not split over 2 processes.*32 or 34"):
        check_split(100, 33, 2)
    with pytest.raises(ConfigError, match="3 samples, fewer than the 4 processes"):
        check_split(3, 8, 4)
    check_split(100, 32, 2)
