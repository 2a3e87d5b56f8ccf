"""Named architectures that reproduce each seed's model, as ordinary layer-string lists.

A preset is a function (input_shape, cond_width, out, **preset_args) -> dict(encoder, decoder, heads?):
`out` is the number of decoder outputs per data value the likelihood needs (1 for Bernoulli, 256 for the
256-way categorical), so the decoder ends at (out * C, *rest); its keyword arguments are `model.preset_args`.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from vaelab.core.vocab import PRESETS

PresetFn = Callable[..., dict[str, Any]]


def _flat(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def _unflatten(shape: tuple[int, ...], out: int = 1) -> list[str]:
    """Unflatten to (out * C, *rest), the decoder output a likelihood with `out` outputs per value reads."""
    return [] if len(shape) == 1 else ["Unflatten_" + "_".join(map(str, (shape[0] * out, *shape[1:])))]


def mlp(shape, cond: int = 0, out: int = 1, *, hidden: list[int] | int = 400, latent: int = 20,
        activation: str = "ReLU") -> dict:
    """MLP VAE: Flatten, hidden layers, separate linear heads; the decoder mirrors the encoder."""
    widths = [hidden] if isinstance(hidden, int) else list(hidden)
    d = _flat(shape)
    enc = ["Flatten"] if len(shape) > 1 else []
    prev = d + cond
    for w in widths:
        enc += [f"Linear_{prev}_{w}", activation]
        prev = w
    dec, prev = [], latent + cond
    for w in reversed(widths):
        dec += [f"Linear_{prev}_{w}", activation]
        prev = w
    dec += [f"Linear_{prev}_{d * out}", *_unflatten(shape, out)]
    return {"encoder": enc, "heads": {"mu": [f"Linear_{widths[-1]}_{latent}"], "logvar": [f"Linear_{widths[-1]}_{latent}"]}, "decoder": dec}


@PRESETS.register("examples-mlp", doc="pytorch/examples' VAE: 784-400-20-400-784 (input size from the data)")
def examples_mlp(shape, cond: int = 0, out: int = 1, *, hidden: int = 400, latent: int = 20) -> dict:
    return mlp(shape, cond, out, hidden=hidden, latent=latent)


PRESETS.register("mlp", mlp, doc="MLP VAE with any hidden widths: preset_args hidden: [512, 256], latent: 16, activation: ReLU")


@PRESETS.register("seed000-mlp", doc="seed 000 (VAE-NAS): one hidden layer of mid_layer units, latent_dim latent (defaults 40 and 4)")
def seed000(shape, cond: int = 0, out: int = 1, *, mid_layer: int = 40, latent_dim: int = 4) -> dict:
    return mlp(shape, cond, out, hidden=mid_layer, latent=latent_dim)


@PRESETS.register("seed002-mlp", doc="seed 002 (DLA_interview) VAE/CVAE: hidden 500, latent 2; add model.condition for the CVAE")
def seed002(shape, cond: int = 0, out: int = 1, *, hidden: int = 500, latent: int = 2) -> dict:
    return mlp(shape, cond, out, hidden=hidden, latent=latent)


@PRESETS.register("seed003-conv", doc="seed 003 (pytorch-VAE-MNIST): its printed conv model exactly, 28x28 -> 16-d latent")
def seed003(shape, cond: int = 0, out: int = 1, *, latent: int = 16) -> dict:
    c = shape[0]
    enc = [f"C2d_{c + cond}_16_4_2_1", "BN2d_16", "ReLU", "C2d_16_32_4_2_1", "BN2d_32", "ReLU",
           "C2d_32_32_5_2_0", "BN2d_32", "Flatten"]
    head = ["Linear_128_64", "ReLU", f"Linear_64_{latent}"]
    dec = [f"Linear_{latent + cond}_64", "ReLU", "Linear_64_128", "Unflatten_32_2_2", "CT2d_32_32_5_2_0", "BN2d_32", "ReLU",
           "CT2d_32_16_4_2_1", "BN2d_16", "ReLU", f"CT2d_16_{c * out}_4_2_1"]
    return {"encoder": enc, "heads": {"mu": list(head), "logvar": list(head)}, "decoder": dec}


@PRESETS.register("seed001-sd", doc="seed 001 (FlexVAE): Stable-Diffusion-style encoder/decoder, spatial latent (4, S/32, S/32) at base 128")
def seed001(shape, cond: int = 0, out: int = 1, *, base: int = 128, latent_channels: int = 4) -> dict:
    """Seed 001's default structures with widths scaled by `base` (128 gives the seed's exact lists)."""
    c = shape[0]
    b1, b2, b4 = base, 2 * base, 4 * base
    lc = latent_channels
    enc = [f"C2d_{c + cond}_{b1}_3_1_1", f"2*VAERB_{b1}_{b1}", f"C2d_{b1}_{b1}_3_4_0", f"VAERB_{b1}_{b2}", f"VAERB_{b2}_{b2}",
           f"C2d_{b2}_{b2}_3_4_0", f"3*VAERB_{b2}_{b2}", f"VAEA_{b2}", f"VAERB_{b2}_{b2}", f"GN_32_{b2}", "SiLU",
           f"C2d_{b2}_{2 * lc}_3_1_1", f"C2d_{2 * lc}_{2 * lc}_1_1_0", "MaxP_2_2"]
    dec = ["UpS_2", f"C2d_{lc + cond}_{lc}_1_1_0", f"C2d_{lc}_{b4}_3_1_1", f"VAERB_{b4}_{b4}", f"VAEA_{b4}", f"4*VAERB_{b4}_{b4}", "UpS_4",
           f"C2d_{b4}_{b4}_3_1_1", f"VAERB_{b4}_{b2}", f"2*VAERB_{b2}_{b2}", "UpS_4", f"C2d_{b2}_{b2}_3_1_1", f"VAERB_{b2}_{b1}",
           f"2*VAERB_{b1}_{b1}", f"GN_32_{b1}", "SiLU", f"C2d_{b1}_{c * out}_3_1_1"]
    return {"encoder": enc, "decoder": dec}


@PRESETS.register("seed004-mlp", doc="seed 004 vanilla VAE over 5-D colored-pi points (each point one sample)")
def seed004_mlp(shape, cond: int = 0, out: int = 1, *, hidden: int = 128, latent: int = 8) -> dict:
    return mlp(shape, cond, out, hidden=[hidden, hidden], latent=latent)


@PRESETS.register("seed004-attention", doc="seed 004 attention VAE: each of the F features is a token, a transformer layer attends over them")
def seed004_attention(shape, cond: int = 0, out: int = 1, *, dim: int = 32, heads: int = 4, ff: int = 128,
                      latent: int = 8) -> dict:
    if cond:
        raise ValueError("seed004-attention does not take a condition")
    if out != 1:
        raise ValueError(f"seed004-attention reads out one value per feature, but the likelihood needs {out}: use a "
                         "likelihood with one output per value (bernoulli, continuous_bernoulli, gaussian, laplace)")
    f = _flat(shape)
    enc = [f"Tok_{f}_{dim}", "ReLU", f"TEL_{dim}_{heads}_{ff}_0.0", "Flatten"]
    head = [f"Linear_{f * dim}_{latent}"]
    dec = [f"Linear_{latent}_{f * dim}", "ReLU", f"Unflatten_{f}_{dim}", f"TEL_{dim}_{heads}_{ff}_0.0", f"Detok_{f}_{dim}"]
    return {"encoder": enc, "heads": {"mu": list(head), "logvar": list(head)}, "decoder": dec}


def resolve_preset(name: str, shape: tuple[int, ...], cond: int, args: dict[str, Any], out: int = 1) -> dict[str, Any]:
    """Call preset `name` (decoder ending at `out` outputs per data value); unknown arguments raise with the dotted
    field `model.preset_args.X`."""
    import inspect

    from vaelab.core.errors import ConfigError

    fn = PRESETS.get(name)
    params = inspect.signature(fn).parameters
    valid = [p for p, v in params.items() if v.kind == inspect.Parameter.KEYWORD_ONLY]
    for k in args:
        if k not in valid:
            raise ConfigError(f"model.preset_args.{k}: preset {name!r} takes {', '.join(valid) or 'no arguments'}")
    try:
        return fn(tuple(shape), cond, out, **args)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model.preset {name!r}: {e}") from None


