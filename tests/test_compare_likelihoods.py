"""configs/compare_likelihoods.py sizes the recipe's last decoder layer for every likelihood it compares: each
override builds a model whose decoder output is what that likelihood reads (build_model refuses any other width)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from vaelab.core.config import load_config
from vaelab.data.spec import DataSpec
from vaelab.model.build import build_model

SCRIPT = Path(__file__).resolve().parents[1] / "configs" / "compare_likelihoods.py"


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
