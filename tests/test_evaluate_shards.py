"""`vaelab evaluate --offset N --limit M`: one slice of a long evaluation. Each item's importance samples come
from its own stream (seed, item index), so a slice's per-item IW-NLL file equals the same items of a whole run;
a bad --offset is one line naming the option and the fix."""
from __future__ import annotations

import json

import pytest

from conftest import tiny_config
from hostile_helpers import assert_one_line_error, vaelab
from vaelab.core.config import load_config
from vaelab.training.trainer import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train(load_config(tiny_config(train={"epochs": 1, "batch_size": 32, "progress": False, "figures": False})),
                 tmp_path_factory.mktemp("shards") / "run")


def per_item(folder, k, first, end):
    return json.loads((folder / f"iw_nll_k{k}_{first}-{end}.json").read_text())


def test_slices_join_to_the_whole(run, tmp_path, capsys):
    common = ["--k", 12, "--bits", "", "--seed", 5]
    assert vaelab(capsys, "evaluate", run, "--limit", 7, *common, "--out", tmp_path / "all").code == 0
    assert vaelab(capsys, "evaluate", run, "--offset", 3, "--limit", 4, *common, "--out", tmp_path / "b").code == 0
    whole, part = per_item(tmp_path / "all", 12, 0, 7), per_item(tmp_path / "b", 12, 3, 7)
    assert part["first_item"] == 3 and part["names"] == whole["names"][3:] == [f"item-{i:06d}" for i in range(3, 7)]
    assert part["iw_nll"] == pytest.approx(whole["iw_nll"][3:], abs=2e-4)
    assert part["weights_sha256"] == whole["weights_sha256"] and part["k"] == 12 and part["seed"] == 5
    m = json.loads((tmp_path / "b" / "evaluation.json").read_text())
    assert m["items"] == 4 and m["first_item"] == 3 and m["iw_nll_per_item"] == "iw_nll_k12_3-7.json"
    assert m["iw_nll_k12"] == pytest.approx(sum(part["iw_nll"]) / 4, abs=1e-3)
    other = vaelab(capsys, "evaluate", run, "--offset", 3, "--limit", 4, "--k", 12, "--bits", "", "--seed", 6,
                   "--out", tmp_path / "c")
    assert other.code == 0 and per_item(tmp_path / "c", 12, 3, 7)["iw_nll"] != part["iw_nll"]  # the seed matters


@pytest.mark.parametrize("args,needles", [
    (["--offset", "-1"], ["--offset", ">= 0"]),
    (["--offset", "100000"], ["--offset 100000", "past the end", "items"]),
    (["--seed", "-2"], ["--seed", ">= 0"]),
])
def test_bad_offset_or_seed_is_one_line(run, tmp_path, capsys, args, needles):
    out = tmp_path / "never"
    o = vaelab(capsys, "evaluate", run, *args, "--k", 2, "--out", out)
    assert_one_line_error(o, 2, *needles)
    assert not out.exists()
