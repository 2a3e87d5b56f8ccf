"""Same seed, same numbers: two runs of every recipe (shortened) write identical metrics.jsonl, every number
compared exactly except the wall-clock fields; the torch thread count is recorded in every row."""
from __future__ import annotations

import json

import pytest
import torch

from test_recipes import RECIPES, recipe_overrides, synthetic  # noqa: F401  (synthetic is a fixture)
from vaelab.core.config import load_config
from vaelab.training.trainer import train

WALL_CLOCK = {"seconds", "samples_per_s", "compile_seconds"}  # the only fields allowed to differ between reruns


def rows(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_same_seed_same_metrics(path, synthetic, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(path.parents[1])
    # A fixed thread count, as the README says for bit-identical reruns: `threads: auto` follows the machine's load
    # and sums split across another number of threads round differently.
    overrides = [*recipe_overrides(path, synthetic), "train.threads=1"]
    caller = torch.get_num_threads()
    runs = [rows(train(load_config(path, overrides), tmp_path / name)) for name in ("a", "b")]
    a, b = ([{k: v for k, v in r.items() if k not in WALL_CLOCK} for r in rs] for rs in runs)
    assert a == b  # exact equality of every number, not a tolerance
    assert all(r["threads"] == 1 for r in runs[0]) and torch.get_num_threads() == caller  # recorded, then restored
    assert {k for r in runs[0] for k in r} - WALL_CLOCK >= {"train_loss", "val_loss", "train_kl", "lr", "epoch"}
