"""The layer-string grammar: unit tests on a small signature table, and a round-trip property over LAYERS."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaelab.core.dsl import REQUIRED, LayerSpec, Param, SpecError, expand, parse_list, parse_token
from vaelab.core.registry import Registry

SIGS: Registry = Registry("layer")
SIGS.register("C2d", (Param("in"), Param("out"), Param("kernel"), Param("stride"), Param("padding")))
SIGS.register("Drop", (Param("p", float),))
SIGS.register("LN", (Param("features", variadic=True),))
SIGS.register("SiLU", ())
SIGS.register("Opt", (Param("a"), Param("b", int, 2), Param("flag", bool, False),
                      Param("mode", str, "zeros", choices=("zeros", "reflect"))))


def parse(items, where="model.encoder"):
    return parse_list(items, SIGS.get, where)


def test_plain_token_binds_ints_in_order():
    assert parse_token("C2d_3_16_3_1_1", SIGS.get) == LayerSpec("C2d", (3, 16, 3, 1, 1))


def test_repeat_is_kept_and_expanded():
    spec, = parse(["2*C2d_3_16_3_1_1"])
    assert spec.repeat == 2 and spec.format() == "2*C2d_3_16_3_1_1"
    assert expand([spec, LayerSpec("SiLU")]) == [LayerSpec("C2d", (3, 16, 3, 1, 1))] * 2 + [LayerSpec("SiLU")]


@pytest.mark.parametrize("token, value", [("Drop_0.1", 0.1), ("Drop_1", 1.0), ("Drop_1e-3", 1e-3), ("Drop_-0.5", -0.5)])
def test_floats(token, value):
    spec = parse_token(token, SIGS.get)
    assert spec.args == (value,) and isinstance(spec.args[0], float)


def test_variadic_takes_all_remaining_values():
    assert parse_token("LN_4_8_2", SIGS.get).args == (4, 8, 2)


def test_defaults_bools_and_choices():
    assert parse_token("Opt_1", SIGS.get).args == (1,)
    assert parse_token("Opt_1_3_true_reflect", SIGS.get).args == (1, 3, True, "reflect")
    with pytest.raises(SpecError, match="must be one of zeros, reflect"):
        parse_token("Opt_1_3_true_wrap", SIGS.get)
    with pytest.raises(SpecError, match="must be true or false"):
        parse_token("Opt_1_3_maybe", SIGS.get)


def test_unknown_type_suggests_close_names():
    with pytest.raises(SpecError) as e:
        parse(["SiLU", "C2D_3_16_3_1_1"])
    msg = str(e.value)
    assert msg.startswith("model.encoder[1] 'C2D_3_16_3_1_1'") and "Did you mean 'C2d'" in msg


def test_wrong_arg_count_names_signature():
    with pytest.raises(SpecError) as e:
        parse(["C2d_3_128_3_1"])
    assert str(e.value) == ("model.encoder[0] 'C2d_3_128_3_1': C2d takes (in, out, kernel, stride, padding), "
                            "got 4 values")
    with pytest.raises(SpecError, match=r"SiLU takes \(no arguments\), got 1 value$"):
        parse(["SiLU_2"])
    with pytest.raises(SpecError, match=r"LN takes \(features\.\.\.\), got 0 values"):
        parse(["LN"])


def test_float_where_int_needed():
    with pytest.raises(SpecError, match=r"C2d argument 'kernel' must be an integer, got a float \(3\.5\)"):
        parse(["C2d_3_16_3.5_1_1"])
    with pytest.raises(SpecError, match="must be an integer, got 'x'"):
        parse(["C2d_3_16_x_1_1"])


@pytest.mark.parametrize("token, message", [
    ("0*C2d_3_16_3_1_1", "repeat count must be >= 1, got 0"),
    ("-2*C2d_3_16_3_1_1", "repeat count must be >= 1, got -2"),
    ("x*C2d_3_16_3_1_1", "repeat count 'x' must be a positive integer"),
    ("1.5*C2d_3_16_3_1_1", "repeat count '1.5' must be a positive integer"),
])
def test_bad_repeat(token, message):
    with pytest.raises(SpecError, match=message):
        parse([token])


@pytest.mark.parametrize("token, message", [
    ("C2d_3__3_1_1", "empty argument"),
    ("C2d_3_16_3_1_1_", "empty argument"),
    ("_3", "missing layer type"),
    ("", "must be a non-empty string"),
    ("   ", "must be a non-empty string"),
])
def test_empty_parts(token, message):
    with pytest.raises(SpecError, match=message):
        parse([token])


def test_not_a_list():
    with pytest.raises(SpecError, match="model.encoder: expected a list"):
        parse("C2d_3_16_3_1_1")


def test_mapping_form_moves_keyword_prefix_into_args():
    spec, = parse([{"C2d": {"args": [3, 16, 3], "stride": 2, "padding": 1}}])
    assert spec == LayerSpec("C2d", (3, 16, 3, 2, 1))
    assert parse([{"SiLU": None}]) == [LayerSpec("SiLU")]


def test_mapping_form_keeps_later_keywords_and_repeat():
    spec, = parse([{"Opt": {"args": [1], "mode": "reflect", "repeat": 3}}])
    assert spec == LayerSpec("Opt", (1,), {"mode": "reflect"}, 3)
    assert spec.format() == {"Opt": {"args": [1], "mode": "reflect", "repeat": 3}}
    assert parse([spec.format()]) == [spec]


@pytest.mark.parametrize("item, message", [
    ({"C2d": {"args": [3, 16, 3], "strid": 2}}, "unknown keyword 'strid'"),
    ({"C2d": {"args": [3, 16]}}, "C2d is missing kernel, stride, padding"),
    ({"C2d": {"args": 3}}, "'args' must be a list"),
    ({"Opt": {"args": [1], "repeat": 0}}, "'repeat' must be a positive integer, got 0"),
    ({"Opt": {"args": [1], "repeat": "two"}}, "'repeat' must be a positive integer"),
    ({"C2d": {}, "SiLU": None}, "exactly one key"),
])
def test_mapping_errors_name_the_item(item, message):
    with pytest.raises(SpecError, match=message) as e:
        parse(["SiLU", item])
    assert str(e.value).startswith("model.encoder[1]")


# ---- round trip over every registered layer type -------------------------------------------------------------

from vaelab.layers import LAYERS, parse_layers  # noqa: E402  (torch import only for this part)


def _value(p: Param) -> st.SearchStrategy:
    if p.type is bool:
        return st.booleans()
    if p.type is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    if p.type is int:
        return st.integers(-10**6 if p.low is None else p.low, 10**6)  # within the declared range
    return st.sampled_from(p.choices) if p.choices else st.from_regex(r"[a-z]{1,8}", fullmatch=True)


@st.composite
def layer_specs(draw) -> LayerSpec:
    entry = draw(st.sampled_from(list(LAYERS.entries())))
    sig = entry.meta["params"]
    repeat = draw(st.integers(1, 4))
    if sig and sig[-1].variadic:
        args = [draw(_value(p)) for p in sig[:-1]] + draw(st.lists(_value(sig[-1]), min_size=1, max_size=4))
        return LayerSpec(entry.name, tuple(args), {}, repeat)
    required = sum(p.default is REQUIRED for p in sig)
    n = draw(st.integers(required, len(sig)))
    # keywords come from the params after sig[n]: a keyword for sig[n] itself would be parsed back as positional
    later = list(sig[n + 1:])
    chosen = draw(st.lists(st.sampled_from(later), unique_by=lambda p: p.name)) if later else []
    kwargs = {p.name: draw(_value(p)) for p in chosen}
    return LayerSpec(entry.name, tuple(draw(_value(p)) for p in sig[:n]), kwargs, repeat)


@settings(max_examples=300, deadline=None)
@given(layer_specs())
def test_parse_format_round_trip_over_registry(spec):
    text = spec.format()
    assert parse_layers([text], "p") == [spec]
    if isinstance(text, str):
        assert parse_layers([text], "p")[0].format() == text
