"""Property-based fuzz of layer strings, configs and overrides (issue 13, point 6).

Every input either works or fails with one of vaelab's own errors, and `check` stays bounded: sizes and
repeats are capped when the config loads and the model is measured on the meta device, so what a config may
ask of `train` is capped by the memory limit. Bounded by example counts (derandomized, so CI is stable),
never by timing.
"""
from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaelab.api import check_config
from vaelab.core.config import Config, apply_override, load_config
from vaelab.core.dsl import MAX_LAYERS, MAX_REPEAT, SpecError
from vaelab.core.errors import VaelabError
from vaelab.core.layer_specs import parse_layers
from vaelab.core.registry import UnknownNameError
from vaelab.core.vocab import LAYERS
from vaelab.model.footprint import ResourceLimitError

def fuzz(examples: int = 100) -> settings:
    return settings(max_examples=examples, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

sizes = st.one_of(st.integers(-3, 40), st.sampled_from([0, 64, 2**31 - 1, 2**31, 10**10, 10**40, -(10**12)]))
numbers = st.one_of(sizes, st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["0.1", "1e-3", "nan"]))
words = st.text(alphabet="abcXYZ_*-.019 \u00b2\u0663", max_size=8)
type_names = st.one_of(st.sampled_from(sorted(LAYERS.names())), words)
repeat = st.one_of(st.just(""), st.builds(lambda n: f"{n}*", st.one_of(sizes, words)))


@st.composite
def layer_tokens(draw) -> str:
    args = draw(st.lists(st.one_of(numbers, words), max_size=6))
    return draw(repeat) + "_".join([draw(type_names), *map(str, args)])


mappings = st.builds(lambda t, args, extra: {t: {"args": args, **extra}}, type_names,
                     st.lists(numbers, max_size=5), st.dictionaries(st.sampled_from(["stride", "repeat", "bias", "x"]),
                                                                    numbers, max_size=2))


@fuzz(200)
@given(st.lists(st.one_of(layer_tokens(), mappings, st.none(), st.integers()), max_size=4))
def test_layer_lists_parse_or_fail_with_a_spec_error(items):
    try:
        specs = parse_layers(items, "model.encoder")
    except SpecError as e:
        assert str(e).startswith("model.encoder") and "\n" not in str(e)
        return
    for spec in specs:
        assert 1 <= spec.repeat <= MAX_REPEAT
        assert all(abs(a) <= 2**31 - 1 for a in spec.args if isinstance(a, int) and not isinstance(a, bool))
        assert all(math.isfinite(a) for a in spec.args if isinstance(a, float))


# Realistic layer strings with hostile sizes: most reach the meta-device build and the memory check.
def _token(kind: str, a: int, b: int, c: int) -> str:
    return {
        "lin": f"Linear_{a}_{b}", "conv": f"C2d_{a}_{b}_3_1_1", "convt": f"CT2d_{a}_{b}_4_2_1", "gn": f"GN_{a}_{b}",
        "tel": f"TEL_{a}_{b}", "attn": f"VAEA_{a}", "res": f"VAERB_{a}_{b}", "up": f"UpS_{a}", "pool": f"MaxP_{a}_{b}",
        "flat": "Flatten", "unflat": f"Unflatten_{a}_{b}_{c}", "relu": f"{c}*ReLU", "bn": f"BN2d_{a}", "ln": f"LN_{a}",
        "tok": f"Tok_{a}_{b}", "detok": f"Detok_{a}_{b}", "drop": "Drop_0.1",
    }[kind]


dims = st.one_of(st.integers(1, 12), st.sampled_from([0, 16, 64, 4096, 2**20, 2**31 - 1, 2**31]))
tokens = st.builds(_token, st.sampled_from(["lin", "conv", "convt", "gn", "tel", "attn", "res", "up", "pool", "flat",
                                            "unflat", "relu", "bn", "ln", "tok", "detok", "drop"]), dims, dims,
                   st.integers(1, 3))


@fuzz(60)
@given(encoder=st.lists(tokens, min_size=0, max_size=5), decoder=st.lists(tokens, min_size=0, max_size=5),
       shape=st.lists(st.sampled_from([1, 2, 3, 4, 8, 16, 2**16]), min_size=1, max_size=4))
def test_check_never_raises_a_foreign_error_and_accepts_only_what_fits(encoder, decoder, shape):
    raw = {"model": {"encoder": encoder, "decoder": decoder, "input_shape": shape},
           "train": {"max_memory_gb": 1.0, "device": "cpu", "batch_size": 8}}
    try:
        report = check_config(raw, load_data=False)
    except (VaelabError, UnknownNameError) as e:
        assert "\n" not in str(e).strip()
        return
    assert report.parameters * 16 <= 1024**3  # weights, gradients and two moments fit the 1 GB limit


@fuzz(40)
@given(hidden=dims, latent=dims, repeats=st.sampled_from([1, 3, MAX_LAYERS - 3, MAX_REPEAT + 1]),
       batch=st.sampled_from([1, 64, 10**6]))
def test_models_that_chain_are_accepted_exactly_when_they_fit(hidden, latent, repeats, batch):
    enc = ["Flatten", f"Linear_64_{hidden}", f"{repeats}*ReLU", f"Linear_{hidden}_{2 * latent}"]
    dec = [f"Linear_{latent}_{hidden}", "ReLU", f"Linear_{hidden}_64", "Unflatten_1_8_8"]
    raw = {"model": {"encoder": enc, "decoder": dec, "input_shape": [1, 8, 8]},
           "train": {"max_memory_gb": 0.5, "device": "cpu", "batch_size": batch}}
    params = 64 * hidden + hidden + hidden * 2 * latent + 2 * latent + latent * hidden + hidden + hidden * 64 + 64
    try:
        report = check_config(raw, load_data=False)
    except ResourceLimitError as e:
        assert f"{params:,} parameters" in str(e) and "but only 512 MB (train.max_memory_gb)" in str(e)
        return
    except (VaelabError, UnknownNameError) as e:  # a size outside the ranges: refused when the config loads
        assert min(hidden, latent) < 1 or max(hidden, 2 * latent) > 2**31 - 1 or repeats + 3 > MAX_LAYERS, e
        return
    assert report.parameters == params and params * 16 <= 0.5 * 1024**3


config_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, words, st.sampled_from(["auto", "cpu", "adam", "cosine", "mnist"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(words, inner, max_size=3)), max_leaves=6)
keys = st.sampled_from(["train.lr", "train.epochs", "train.batch_size", "train.device", "train.scheduler",
                        "train.scheduler.kwargs", "train.scheduler.kwargs.milestones", "train.optimizer.kwargs",
                        "train.ema", "train.grad_clip", "loss.kl_schedule", "loss.kl_weight", "loss.recon", "data",
                        "data.name", "data.path", "data.options", "data.limit", "model", "model.encoder",
                        "model.encoder.1", "model.encoder.1.x", "model.heads.mu.0.y", "model.preset",
                        "model.preset_args", "model.input_shape", "model.condition", "seed", "name", "x.y.z"])


@fuzz(150)
@given(st.lists(st.tuples(keys, config_values), max_size=3))
def test_overrides_load_or_fail_with_a_config_error(pairs):
    raw = {"model": {"encoder": ["Flatten", "Linear_64_8"], "decoder": ["Linear_4_64", "Unflatten_1_8_8"]}}
    try:
        for key, value in pairs:
            apply_override(raw, f"{key}={value!r}" if isinstance(value, str) else f"{key}={_yaml(value)}")
        cfg = load_config(raw)
    except (VaelabError, UnknownNameError) as e:
        assert "Traceback" not in str(e)
        return
    assert isinstance(cfg, Config)
    assert math.isfinite(cfg.train.lr) and cfg.train.lr > 0


def _yaml(value) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


@fuzz(100)
@given(st.text(max_size=40))
def test_any_override_text_is_applied_or_refused(text):
    raw: dict = {}
    try:
        apply_override(raw, text)
        load_config(raw)
    except (VaelabError, UnknownNameError):
        pass


@pytest.mark.parametrize("token", ["999999*ReLU", "GN_3_10000000000", "VAERB_2147483648_8", "1" * 5000 + "*ReLU",
                                   "Linear_" + "9" * 5000 + "_1", "Drop_" + "9" * 400])
def test_pathological_tokens_are_refused_quickly(token):
    with pytest.raises(SpecError):
        parse_layers([token], "model.encoder")
