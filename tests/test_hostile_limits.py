"""Bounded before allocated (issue 13, point 1): sizes and repeats have limits, error paths are O(1) in the
argument values, and the model is measured on the meta device before anything is built."""
from __future__ import annotations

import pytest
import torch

from conftest import tiny_config
from hostile_helpers import assert_one_line_error, vaelab
from vaelab.core.config import load_config
from vaelab.core.dsl import MAX_INT_ARG, MAX_LAYERS, MAX_REPEAT
from vaelab.core.errors import ConfigError, ModelError
from vaelab.layers.checks import divisors
from vaelab.layers.norm import block_group_norm, group_norm
from vaelab.model.build import build_model
from vaelab.model.footprint import ResourceLimitError, estimate
from vaelab.training.trainer import train

# The cases of issue 13 that grew past 5 GB or hung `vaelab check` forever, set into the bundled default.
ISSUE_CASES = [
    ("999999*Linear_128_128", f"repeat count must be <= {MAX_REPEAT}"),
    ("999999*ReLU", f"repeat count must be <= {MAX_REPEAT}"),
    ("Linear_64_10000000", "expects 64 input features, but the previous layer gives 128"),
    ("GN_3_10000000000", f"above the limit of {MAX_INT_ARG:,}"),
    ("TEL_10000000000_3", f"above the limit of {MAX_INT_ARG:,}"),
    ("VAEA_10000000000", f"above the limit of {MAX_INT_ARG:,}"),
    ("VAERB_2147483648_8", f"above the limit of {MAX_INT_ARG:,}"),
    ("GN_3_2147483647", "do not split into 3 groups; use a group count that divides 2147483647 (1)"),
    ("TEL_2147483646_4", "must be divisible by heads 4; use heads in 1, 2, 3, 6, 7"),
    ("9223372036854775808*ReLU", f"repeat count must be <= {MAX_REPEAT}"),
]


@pytest.mark.parametrize("token,message", ISSUE_CASES)
def test_issue_cases_fail_fast_in_check(capsys, token, message):
    o = vaelab(capsys, "check", "--set", f"model.encoder.4={token}")
    assert_one_line_error(o, 2, "model.encoder[4]", token, message)


def test_divisor_suggestions_stay_bounded():
    assert divisors(10**10, 64) == [1, 2, 4, 5, 8, 10, 16, 20, 25, 32, 40, 50, 64]
    assert divisors(7, 64) == [1, 7]
    with torch.device("meta"):  # shapes only: 2**31 - 2 channels allocate nothing here
        assert block_group_norm(2_147_483_646).num_groups == 31  # 2 * 3**2 * 7 * 11 * 31 * 151 * 331
    with pytest.raises(ModelError, match="use a group count that divides 1000000007 \\(1\\)"):
        group_norm(3, 1_000_000_007)


def test_total_layers_per_list_is_bounded():
    with pytest.raises(ConfigError, match=f"more than {MAX_LAYERS} layers after repeats"):
        load_config(tiny_config(model={"encoder": ["Flatten", *["200*ReLU"] * 2], "decoder": ["Linear_4_64"]}))
    with pytest.raises(ConfigError, match="repeat count must be <="):
        load_config(tiny_config(model={"encoder": [{"ReLU": {"repeat": 10**6}}], "decoder": ["Linear_4_64"]}))


@pytest.mark.parametrize("model,shape", [
    (tiny_config()["model"], (1, 8, 8)),
    ({"preset": "seed003-conv"}, (1, 28, 28)),
    ({"preset": "seed001-sd", "preset_args": {"base": 32}}, (3, 32, 32)),
    ({"encoder": ["Tok_5_8", "TEL_8_2_16_0.0", "Detok_5_8", "Linear_5_4"], "decoder": ["Linear_2_5"]}, (5,)),
])
def test_meta_estimate_matches_the_real_model(model, shape):
    cfg = load_config({"model": model})
    fp = estimate(cfg.model, shape)
    real = build_model(cfg.model, shape)
    assert fp.parameters == real.num_parameters()
    assert fp.latent_shape == real.latent_shape
    assert all(p.device.type == "meta" for p in fp.model.parameters())  # nothing was allocated
    # every layer output that is not a view (Flatten, Unflatten) is a new fp32 tensor of the forward pass
    outputs = sum(torch.Size(r.out_shape).numel() for r in fp.rows if "latten" not in r.token)
    assert fp.activation_bytes >= 4 * outputs


def test_a_billion_weights_are_measured_not_allocated():
    cfg = load_config({"model": {"encoder": ["Flatten", "Linear_64_1000000", "Linear_1000000_8"],
                                 "decoder": ["Linear_4_1000000", "Linear_1000000_64", "Unflatten_1_8_8"]}})
    fp = estimate(cfg.model, (1, 8, 8))
    assert fp.parameters == 64 * 10**6 + 10**6 + 8 * 10**6 + 8 + 4 * 10**6 + 10**6 + 64 * 10**6 + 64
    assert fp.training_bytes(10) == fp.parameters * 16 + fp.activation_bytes * 10


def test_check_prints_the_estimate_and_refuses_above_the_limit(capsys):
    o = vaelab(capsys, "check")
    assert o.code == 0 and "memory: 102,224 parameters" in o.out.replace("\n", " ")
    o = vaelab(capsys, "check", "--max-memory-gb", "0.001")
    assert_one_line_error(o, 2, "model too large: 102,224 parameters", "but only 1.02 MB (train.max_memory_gb)",
                          "--max-memory-gb")


def test_train_refuses_before_writing_anything(tmp_path):
    cfg = load_config(tiny_config(train={"max_memory_gb": 1e-5}))
    with pytest.raises(ResourceLimitError, match="model too large"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
