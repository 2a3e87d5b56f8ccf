"""vaelab.layers: one contract test over every registry entry, then the layer-specific semantics."""
from __future__ import annotations

import io
import textwrap

import pytest
import torch
from torch import nn

from vaelab.core.dsl import REQUIRED, LayerSpec, Param, SpecError
from vaelab.core.errors import ModelError
from vaelab.layers import LAYERS, build_layer, build_sequential, describe_layers, parse_layers, signature_of
from vaelab.core.registry import UnknownNameError

SAME = "same"
# per-sample output shape of each entry's example (worked out by hand from the layer's semantics)
EXPECTED_OUT = {
    "Linear": (5,), "Flatten": (24,), "Unflatten": (3, 2, 2),
    "C1d": (4, 8), "C2d": (4, 8, 8), "C3d": (4, 4, 4, 4),
    "CT1d": (4, 32), "CT2d": (4, 32, 32), "CT3d": (4, 16, 16, 16),
    "MaxP1d": (3, 8), "MaxP": (3, 8, 8), "MaxP2d": (3, 8, 8), "MaxP3d": (3, 4, 4, 4),
    "AvgP1d": (3, 8), "AvgP2d": (3, 8, 8), "AvgP3d": (3, 4, 4, 4),
    "UpS": (3, 8, 8), "Pad": (3, 5, 5),
    "VAERB1d": (12, 10), "VAERB": (12, 6, 6), "VAERB3d": (12, 4, 4, 4),
    "Tok": (5, 8), "Detok": (5,),
    "Conv1d": (4, 6), "Conv2d": (4, 4, 4), "Conv3d": (4, 3, 3, 3),
    "ConvTranspose1d": (4, 24), "ConvTranspose2d": (4, 16, 16), "ConvTranspose3d": (4, 12, 12, 12),
}
SHAPE_PRESERVING = {"ReLU", "GELU", "Tanh", "Sigmoid", "SiLU", "ELU", "Identity", "LReLU", "Drop", "GN", "BN1d",
                    "BN2d", "BN3d", "LN", "VAEA", "TEL", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LeakyReLU"}


def _x(shape, seed=0):
    return torch.randn(2, *shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("entry", list(LAYERS.entries()), ids=lambda e: e.name)
def test_every_layer_contract(entry):
    meta = entry.meta
    assert isinstance(meta["doc"], str) and meta["doc"] and "\n" not in meta["doc"]
    assert all(isinstance(p, Param) for p in meta["params"]) and meta["dims"] in (None, 1, 2, 3)
    token, shape = meta["example"]

    # string round trip
    spec, = parse_layers([token], "example")
    assert spec.type == entry.name and spec.format() == token
    assert parse_layers([spec.format()], "example") == [spec]

    # build and forward: expected shape, finite, deterministic in eval mode
    torch.manual_seed(0)
    module = build_layer(spec).eval()
    x = _x(shape)
    with torch.no_grad():
        y = module(x)
        assert torch.equal(module(x), y)
    expected = shape if entry.name in SHAPE_PRESERVING else EXPECTED_OUT.get(entry.name)
    assert expected is not None, f"add {entry.name}'s example output shape to EXPECTED_OUT or SHAPE_PRESERVING"
    assert tuple(y.shape) == (2, *expected)
    assert torch.isfinite(y).all()

    # state_dict round trip (through torch.save / weights_only load, like a checkpoint) into a fresh instance
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(1)
    fresh = build_layer(spec).eval()
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    with torch.no_grad():
        assert torch.equal(fresh(x), y)

    # keyword names equal Param names (mapping form passes leftovers as keywords)
    sig = meta["params"]
    if not (sig and sig[-1].variadic):
        required = spec.args[: sum(p.default is REQUIRED for p in sig)]
        optional = {p.name: p.default for p in sig if p.default is not REQUIRED}
        assert isinstance(entry.obj(*required, **optional), nn.Module)


def test_signature_of_and_describe():
    assert [p.name for p in signature_of("C2d")] == ["in", "out", "kernel", "stride", "padding"]
    with pytest.raises(UnknownNameError, match="Did you mean 'C2d'"):
        signature_of("C2D")
    rows = describe_layers()
    assert len(rows) == len(LAYERS)
    assert ("C2d", "(in, out, kernel, stride, padding)") == rows[[r[0] for r in rows].index("C2d")][:2]
    assert dict((r[0], r[1]) for r in rows)["SiLU"] == "()"


def test_parse_error_names_field_and_token():
    with pytest.raises(SpecError) as e:
        parse_layers(["C2d_3_128_3_1_1", "C2d_3_128_3_1"], "model.encoder")
    assert str(e.value) == ("model.encoder[1] 'C2d_3_128_3_1': C2d takes (in, out, kernel, stride, padding), "
                            "got 4 values")


# ---- seed 001 ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("token, cls, attrs", [
    ("C2d_3_128_5_4_1", nn.Conv2d, dict(in_channels=3, out_channels=128, kernel_size=(5, 5), stride=(4, 4),
                                         padding=(1, 1))),
    ("C1d_2_6_3_2_0", nn.Conv1d, dict(in_channels=2, out_channels=6, kernel_size=(3,), stride=(2,), padding=(0,))),
    ("C3d_2_6_3_1_1", nn.Conv3d, dict(in_channels=2, out_channels=6, kernel_size=(3, 3, 3), stride=(1, 1, 1))),
    ("CT2d_8_4_4_2_1_1", nn.ConvTranspose2d, dict(in_channels=8, out_channels=4, kernel_size=(4, 4), stride=(2, 2),
                                                  padding=(1, 1), output_padding=(1, 1))),
    ("CT1d_8_4_4_2_1", nn.ConvTranspose1d, dict(output_padding=(0,))),
    ("GN_32_256", nn.GroupNorm, dict(num_groups=32, num_channels=256)),
    ("MaxP_2_3", nn.MaxPool2d, dict(kernel_size=2, stride=3)),
    ("AvgP1d_4_2", nn.AvgPool1d, dict(kernel_size=(4,), stride=(2,))),
    ("UpS_4", nn.Upsample, dict(scale_factor=4.0, mode="nearest")),
    ("LReLU_0.2", nn.LeakyReLU, dict(negative_slope=0.2)),
    ("LReLU", nn.LeakyReLU, dict(negative_slope=0.01)),
    ("Drop_0.3", nn.Dropout, dict(p=0.3)),
    ("LN_4_6", nn.LayerNorm, dict(normalized_shape=(4, 6))),
    ("Linear_7_3", nn.Linear, dict(in_features=7, out_features=3)),
    ("Unflatten_32_2_2", nn.Unflatten, dict(dim=1, unflattened_size=[32, 2, 2])),
])
def test_argument_order_maps_to_module_attributes(token, cls, attrs):
    module = build_layer(parse_layers([token], "t")[0])
    assert type(module) is cls
    for name, value in attrs.items():
        assert getattr(module, name) == value, name


def test_seed_001_default_structures_parse():
    encoder = ["C2d_3_128_3_1_1", "2*VAERB_128_128", "C2d_128_128_3_4_0", "VAERB_128_256", "VAERB_256_256",
               "C2d_256_256_3_4_0", "3*VAERB_256_256", "VAEA_256", "VAERB_256_256", "GN_32_256", "SiLU",
               "C2d_256_8_3_1_1", "C2d_8_8_1_1_0", "MaxP_2_2"]
    decoder = ["UpS_2", "C2d_4_4_1_1_0", "C2d_4_512_3_1_1", "VAERB_512_512", "VAEA_512", "4*VAERB_512_512",
               "UpS_4", "C2d_512_512_3_1_1", "VAERB_512_256", "2*VAERB_256_256", "UpS_4", "C2d_256_256_3_1_1",
               "VAERB_256_128", "2*VAERB_128_128", "GN_32_128", "SiLU", "C2d_128_3_3_1_1"]
    assert [s.format() for s in parse_layers(encoder, "e")] == encoder
    assert sum(s.repeat for s in parse_layers(decoder, "d")) == 22


def test_residual_skip_is_conv1x1_only_when_channels_change():
    same = build_layer(LayerSpec("VAERB", (32, 32)))
    assert isinstance(same.skip, nn.Identity)
    grow = build_layer(LayerSpec("VAERB", (32, 64)))
    assert isinstance(grow.skip, nn.Conv2d) and grow.skip.kernel_size == (1, 1)
    assert (grow.norm1.num_groups, grow.norm2.num_groups) == (32, 32)
    for name, conv in (("VAERB1d", nn.Conv1d), ("VAERB3d", nn.Conv3d)):
        block = build_layer(LayerSpec(name, (4, 8)))
        assert type(block.conv1) is conv and type(block.skip) is conv and block.conv1.padding == (1,) * block.dims


@pytest.mark.parametrize("channels, groups", [(256, 32), (64, 32), (48, 24), (12, 12), (3, 3), (40, 20)])
def test_block_groupnorm_falls_back_to_largest_divisor(channels, groups):
    assert build_layer(LayerSpec("VAEA", (channels,))).norm.num_groups == groups


def test_residual_block_rejects_wrong_rank():
    with pytest.raises(ModelError, match="use VAERB1d"):
        build_layer(LayerSpec("VAERB", (4, 4)))(torch.randn(2, 4, 10))


def test_attention_is_not_causal():
    torch.manual_seed(0)
    attn = build_layer(LayerSpec("VAEA", (8,))).eval()
    # GroupNorm statistics couple all positions, so take it out to see only what attention passes along
    attn.norm = nn.Identity()
    x = torch.randn(1, 8, 4, 4)
    x2 = x.clone()
    x2[..., -1, -1] += 5.0  # change the LAST spatial position
    with torch.no_grad():
        y, y2 = attn(x), attn(x2)
    assert not torch.allclose(y[..., 0, 0], y2[..., 0, 0])  # ... and the FIRST position's output moves


def test_attention_applies_its_groupnorm():
    torch.manual_seed(0)
    attn = build_layer(LayerSpec("VAEA", (8,))).eval()
    x = torch.randn(2, 8, 3, 3) * 10 + 3
    with torch.no_grad():
        y = attn(x)
        attn.norm.weight.mul_(3.0)
        assert not torch.allclose(attn(x), y)


@pytest.mark.parametrize("shape", [(8, 7), (8, 3, 5), (8, 2, 3, 4)])
def test_attention_any_rank(shape):
    assert build_layer(LayerSpec("VAEA", (8,)))(torch.randn(2, *shape)).shape == (2, *shape)


# ---- seed 004: feature tokens ---------------------------------------------------------------------------------

def test_token_attention_mixes_features():
    torch.manual_seed(0)
    net = build_sequential(parse_layers(["Tok_5_16", "ReLU", "TEL_16_4_32_0.0", "Detok_5_16"], "t")).eval()
    x = torch.randn(3, 5)
    x2 = x.clone()
    x2[:, 4] += 2.0
    with torch.no_grad():
        y, y2 = net(x), net(x2)
    assert y.shape == (3, 5)
    assert not torch.allclose(y[:, 0], y2[:, 0])


def test_transformer_layer_arguments():
    tel = build_layer(parse_layers(["TEL_64_4_128_0.0"], "t")[0])
    assert isinstance(tel, nn.TransformerEncoderLayer) and tel.self_attn.batch_first
    assert (tel.self_attn.embed_dim, tel.self_attn.num_heads, tel.linear1.out_features, tel.dropout.p) == (64, 4, 128, 0.0)
    assert build_layer(parse_layers(["TEL_8_2"], "t")[0]).linear1.out_features == 2048


def test_seed_004_encoder_builds():
    net = build_sequential(parse_layers(["Tok_5_64", "ReLU", "TEL_64_4_128_0.0", "Flatten", "Linear_320_64"], "e"))
    assert net(torch.randn(4, 5)).shape == (4, 64)


def test_tok_and_detok_equal_per_feature_linears():
    tok = build_layer(LayerSpec("Tok", (3, 4)))
    detok = build_layer(LayerSpec("Detok", (3, 4)))
    x = torch.randn(2, 3)
    t = tok(x)
    for f in range(3):
        lin = nn.Linear(1, 4)
        lin.weight.data = tok.weight[f].view(4, 1)
        lin.bias.data = tok.bias[f]
        assert torch.allclose(t[:, f], lin(x[:, f:f + 1]))
        back = nn.Linear(4, 1)
        back.weight.data = detok.weight[f].view(1, 4)
        back.bias.data = detok.bias[f].view(1)
        assert torch.allclose(detok(t)[:, f], back(t[:, f]).squeeze(-1), atol=1e-6)
    with pytest.raises(ModelError, match=r"Tok expects \(B, 3\)"):
        tok(torch.randn(2, 4))


# ---- seed 003: torch names in the mapping form ----------------------------------------------------------------

SEED_003_PRINTOUT = """\
  (encoder_conv): Sequential(
    (0): Conv2d(1, 16, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1))
    (1): BatchNorm2d(16, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (2): ReLU()
    (3): Conv2d(16, 32, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1))
    (4): BatchNorm2d(32, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (5): ReLU()
    (6): Conv2d(32, 32, kernel_size=(5, 5), stride=(2, 2))
    (7): BatchNorm2d(32, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (8): Flatten(start_dim=1, end_dim=-1)
  )
  (decoder): Sequential(
    (0): Linear(in_features=16, out_features=64, bias=True)
    (1): ReLU()
    (2): Linear(in_features=64, out_features=128, bias=True)
    (3): Unflatten(dim=1, unflattened_size=[32, 2, 2])
    (4): ConvTranspose2d(32, 32, kernel_size=(5, 5), stride=(2, 2))
    (5): BatchNorm2d(32, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (6): ReLU()
    (7): ConvTranspose2d(32, 16, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1))
    (8): BatchNorm2d(16, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (9): ReLU()
    (10): ConvTranspose2d(16, 1, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1))
    (11): Sigmoid()
  )
"""
SEED_003_ENCODER = [
    {"Conv2d": {"args": [1, 16, 4], "stride": 2, "padding": 1}}, {"BatchNorm2d": {"args": [16]}}, {"ReLU": None},
    {"Conv2d": {"args": [16, 32, 4], "stride": 2, "padding": 1}}, {"BatchNorm2d": {"args": [32]}}, {"ReLU": None},
    {"Conv2d": {"args": [32, 32, 5], "stride": 2}}, {"BatchNorm2d": {"args": [32]}}, {"Flatten": None},
]
SEED_003_DECODER = [
    {"Linear": {"args": [16, 64]}}, {"ReLU": None}, {"Linear": {"args": [64, 128]}},
    {"Unflatten": {"args": [1, [32, 2, 2]]}},
    {"ConvTranspose2d": {"args": [32, 32, 5], "stride": 2}}, {"BatchNorm2d": {"args": [32]}}, {"ReLU": None},
    {"ConvTranspose2d": {"args": [32, 16, 4], "stride": 2, "padding": 1}}, {"BatchNorm2d": {"args": [16]}},
    {"ReLU": None},
    {"ConvTranspose2d": {"args": [16, 1, 4], "stride": 2, "padding": 1}}, {"Sigmoid": None},
]


def test_seed_003_mapping_form_reproduces_printed_model():
    encoder = build_sequential(parse_layers(SEED_003_ENCODER, "model.encoder"))
    decoder = build_sequential(parse_layers(SEED_003_DECODER, "model.decoder"))
    printed = (textwrap.indent(f"(encoder_conv): {encoder}", "  ") + "\n"
               + textwrap.indent(f"(decoder): {decoder}", "  ") + "\n")
    printed = printed.replace("affine=True, bias=True,", "affine=True,")  # newer torch also prints BatchNorm's bias
    assert printed == SEED_003_PRINTOUT
    assert encoder(torch.randn(2, 1, 28, 28)).shape == (2, 128)
    assert decoder(torch.randn(2, 16)).shape == (2, 1, 28, 28)


def test_unflatten_accepts_short_and_torch_forms():
    forms = ["Unflatten_32_2_2", {"Unflatten": {"args": [32, 2, 2]}}, {"Unflatten": {"args": [1, [32, 2, 2]]}},
             {"Unflatten": {"dim": 1, "unflattened_size": [32, 2, 2]}}]
    assert parse_layers(forms, "d") == [LayerSpec("Unflatten", (32, 2, 2))] * len(forms)
    with pytest.raises(SpecError, match=r"d\[0\] Unflatten: only dim 1"):
        parse_layers([{"Unflatten": {"args": [2, [4, 4]]}}], "d")
    with pytest.raises(SpecError, match=r"takes \(dim, unflattened_size\).*got dim=\[4, 4\]"):
        parse_layers([{"Unflatten": {"args": [[4, 4]]}}], "d")
    with pytest.raises(SpecError, match="given both"):
        parse_layers([{"Unflatten": {"args": [1, [4, 4]], "dim": 1}}], "d")


def test_torch_keyword_arguments():
    spec, = parse_layers([{"Conv2d": {"in_channels": 1, "out_channels": 4, "kernel_size": 3, "bias": False}}], "e")
    assert spec == LayerSpec("Conv2d", (1, 4, 3), {"bias": False})
    conv = build_layer(spec)
    assert conv.bias is None and conv.stride == (1, 1)
    flat = build_layer(parse_layers([{"Flatten": {"start_dim": 2}}], "e")[0])
    assert flat(torch.randn(2, 3, 4, 5)).shape == (2, 3, 20)
    lin = build_layer(parse_layers([{"Linear": {"args": [4, 2], "bias": False}}], "e")[0])
    assert lin.bias is None


# ---- errors and building -------------------------------------------------------------------------------------

@pytest.mark.parametrize("token, message", [
    ("GN_32_48", r"'?GN_32_48'?: 48 channels do not split into 32 groups; use a group count that divides 48 "
                 r"\(1, 2, 3, 4, 6, 8, 12, 16, 24, 48\)"),
    ("TEL_10_4", r"TEL_10_4: dim 10 must be divisible by heads 4; use heads in 1, 2, 5, 10"),
    ("Drop_1.5", r"Drop_1.5: p must be in \[0, 1\)"),
    ("C2d_3_0_3_1_1", r"C2d_3_0_3_1_1: out must be >= 1, got 0"),
    ("C2d_3_8_3_1_-1", r"padding must be >= 0"),
    ("CT2d_3_8_3_2_1_2", r"output_padding must be < stride \(2\), got 2"),
    ("Unflatten_4_0", r"shape\[1\] must be >= 1"),
    ("VAERB_0_8", r"in must be >= 1"),
    ("Conv2d_1_4_3_1_0_1_3", r"Conv2d_1_4_3_1_0_1_3: .*groups"),
])
def test_bad_arguments_raise_model_error_naming_token(token, message):
    with pytest.raises(ModelError, match=message):
        build_layer(parse_layers([token], "m")[0])


def test_build_sequential_expands_repeats_into_distinct_modules():
    net = build_sequential(parse_layers(["C2d_3_8_3_1_1", "2*VAERB_8_8", "VAEA_8"], "e"))
    assert len(net) == 4 and net[1] is not net[2]
    assert net[1].conv1.weight.data_ptr() != net[2].conv1.weight.data_ptr()
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 8, 8, 8)


def test_build_unknown_type_raises_unknown_name():
    with pytest.raises(UnknownNameError, match="Did you mean 'VAEA'"):
        build_layer(LayerSpec("VAEAA", (8,)))
