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


@PRESETS.register("seed001-sd", doc="seed 001 (FlexVAE): Stable-Diffusion-style encoder/decoder, spatial latent (4, S/32, S/32) "
                  "at base 128; downsample: 4, 8 or 16 for a latent that can hold small images")
def seed001(shape, cond: int = 0, out: int = 1, *, base: int = 128, latent_channels: int = 4, downsample: int = 32, blocks: int = 1,
            groups: int | None = None) -> dict:
    """Seed 001's default structures with widths scaled by `base` (128 gives the seed's exact lists).

    downsample 32 is the seed's layout (stride-4 convs and a final max-pool; `blocks` and `groups` unused); 4, 8
    or 16 build the Stable Diffusion autoencoder's layout instead (`sd_levels`)."""
    if downsample != 32:
        return sd_levels(shape, cond, out, base=base, latent_channels=latent_channels, downsample=downsample, blocks=blocks,
                         groups=groups)
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


def sd_levels(shape, cond: int = 0, out: int = 1, *, base: int, latent_channels: int, downsample: int, blocks: int,
              groups: int | None = None) -> dict:
    """The Stable Diffusion autoencoder's layout (Rombach et al. 2022) in seed 001's blocks: one level per halving,
    widths base x (1, 2, 4, 4, ...), `blocks` residual blocks per level (the decoder one more), stride-2 4x4 convs
    down, nearest upsampling + 3x3 conv up, attention only in the middle at the latent resolution.

    GroupNorm `groups` defaults to base / 4 (at most 32), so the first level has 4 channels per group as in
    Stable Diffusion (128 channels, 32 groups); with one channel per group GroupNorm would remove each channel's
    mean and with it the image's colours."""
    if downsample not in (2, 4, 8, 16):
        raise ValueError(f"downsample must be 2, 4, 8, 16 (this layout) or 32 (the seed's), got {downsample}")
    if blocks < 1:
        raise ValueError(f"blocks must be >= 1, got {blocks}")
    c, lc = shape[0], latent_channels
    g = groups if groups is not None else max(1, min(32, base // 4))
    if g < 1:
        raise ValueError(f"groups must be >= 1, got {g}")
    widths = [base * m for m in (1, 2, 4, 4, 4)[: int(math.log2(downsample)) + 1]]  # one per resolution
    enc = [f"C2d_{c + cond}_{widths[0]}_3_1_1"]
    prev = widths[0]
    for i, w in enumerate(widths):
        for _ in range(blocks):
            enc.append(f"VAERB_{prev}_{w}_{g}")
            prev = w
        if i + 1 < len(widths):
            enc.append(f"C2d_{w}_{w}_4_2_1")  # (B, w, H, W) -> (B, w, H/2, W/2)
    top = widths[-1]
    enc += [f"VAERB_{top}_{top}_{g}", f"VAEA_{top}_{g}", f"VAERB_{top}_{top}_{g}", f"GN_{g}_{top}", "SiLU",
            f"C2d_{top}_{2 * lc}_3_1_1", f"C2d_{2 * lc}_{2 * lc}_1_1_0"]
    dec = [f"C2d_{lc + cond}_{lc}_1_1_0", f"C2d_{lc}_{top}_3_1_1", f"VAERB_{top}_{top}_{g}", f"VAEA_{top}_{g}", f"VAERB_{top}_{top}_{g}"]
    prev = top
    for i, w in enumerate(reversed(widths)):
        for _ in range(blocks + 1):
            dec.append(f"VAERB_{prev}_{w}_{g}")
            prev = w
        if i + 1 < len(widths):
            dec += ["UpS_2", f"C2d_{w}_{w}_3_1_1"]
    dec += [f"GN_{g}_{prev}", "SiLU", f"C2d_{prev}_{c * out}_3_1_1"]
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


