"""configs/compare_likelihoods.py sizes the recipe's last decoder layer for every likelihood it compares: each
override builds a model whose decoder output is what that likelihood reads (build_model refuses any other width)."""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import pytest
import torch

from vaelab.core.config import load_config
from vaelab.data.spec import DataSpec
from vaelab.model.build import build_model

SCRIPT = Path(__file__).resolve().parents[1] / "configs" / "compare_likelihoods.py"


@functools.cache
def _script():
    spec = importlib.util.spec_from_file_location("compare_likelihoods", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", _script().LIKELIHOODS)
def test_each_likelihood_gets_a_decoder_of_its_width(name):
    script = _script()
    cfg = load_config(script.CONFIG, script.overrides(name))
    model = build_model(cfg.model, DataSpec((1, 28, 28), bits=8)).eval()
    assert model.likelihood.name == name
    with torch.no_grad():
        out = model.decoder_output(torch.zeros(2, 16), None)
    assert tuple(out.shape) == (2, model.likelihood.params_per_value, 28, 28)


def test_shards_join_refuse_other_weights_and_say_what_they_cover(tmp_path):
    from vaelab.model.layout import weights_sha256

    script = _script()
    torch.manual_seed(0)
    model = build_model(load_config(script.CONFIG, script.overrides("bernoulli")).model, DataSpec((1, 28, 28), bits=8)).eval()
    x = torch.rand(6, 1, 28, 28)
    digest = weights_sha256(model)
    for a, b in ((0, 2), (2, 6)):
        shard = script.compute_shard(model, x, a, b, 5, 0, digest)
        script.write_json(script.shard_path(tmp_path, "bernoulli", a, b), shard)
    whole = script.compute_shard(model, x, 0, 6, 5, 0, digest)
    shards = script.read_shards(tmp_path, "bernoulli", digest, 5, 0)
    assert [v for s in shards for v in s["iw_nll"]] == pytest.approx(whole["iw_nll"], abs=2e-4)
    info = {"name": "bernoulli", "likelihood": "bernoulli", "kind": "pmf over {0, 1}", "epochs": 5, "train_cpu_s": 8.0,
            "neg_elbo_all": 130.0, "dims": 784, "weights_sha256": digest}
    text = script.table([script.row_of(info, shards)], 5)
    assert "| 6 (0-5) |" in text and "9,994 images to go" in text
    with pytest.raises(script.Refused, match="retrain"):
        script.read_shards(tmp_path, "bernoulli", "0" * 64, 5, 0)
    with pytest.raises(script.Refused, match="K=5"):
        script.read_shards(tmp_path, "bernoulli", digest, 1000, 0)


def test_missing_ranges_fill_around_stored_shards():
    script = _script()
    assert script.missing_ranges([], (0, 1000), 500) == [(0, 500), (500, 1000)]
    assert script.missing_ranges([(0, 100)], (0, 1000), 500) == [(100, 500), (500, 1000)]
    assert script.missing_ranges([(0, 100), (200, 300), (500, 1000)], (0, 1000), 500) == [(100, 200), (300, 500)]
    assert script.missing_ranges([(0, 500)], (0, 500), 500) == []
    assert script.missing_ranges([], (500, 700), 100) == [(500, 600), (600, 700)]
