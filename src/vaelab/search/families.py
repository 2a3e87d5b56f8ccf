"""Template families (registry `FAMILIES`): how one gene set becomes encoder, heads and decoder layer strings.

Each family is `fn(pick, shape) -> {"encoder", "heads", "decoder"}` where `pick(key)` returns the template's
value for `key` with genes filled in (lists for `hidden`, `channels`, `kernel` cut to `depth` entries), and
`shape` is the data's per-sample shape. A combination that cannot give a model (too many halvings for the
image) raises ConfigError here, so the search prunes it before any training.
"""
from __future__ import annotations

from typing import Any, Callable

from vaelab.core.errors import ConfigError
from vaelab.core.registry import Registry

Pick = Callable[[str], Any]
FamilyFn = Callable[[Pick, tuple[int, ...]], dict[str, Any]]
FAMILIES: Registry[FamilyFn] = Registry("template family")


@FAMILIES.register("mlp", doc="Flatten, `depth` Linear layers of widths `hidden`, linear heads of size `latent`, mirrored decoder")
def mlp_family(pick: Pick, shape: tuple[int, ...]) -> dict[str, Any]:
    from vaelab.model.presets.seeds import mlp

    return mlp(shape, 0, hidden=pick("hidden"), latent=pick("latent"), activation=str(pick("activation")))


@FAMILIES.register("conv", doc="`depth` stride-2 Conv2d (`channels`, `kernel`), Flatten, linear heads, mirrored ConvTranspose2d")
def conv_family(pick: Pick, shape: tuple[int, ...]) -> dict[str, Any]:
    enc, sizes, chans, act = _down(pick, shape, "conv")
    latent = pick("latent")
    c, (h, w) = chans[-1], sizes[-1]
    flat = c * h * w
    enc.append("Flatten")
    dec = [f"Linear_{latent}_{flat}", act, f"Unflatten_{c}_{h}_{w}", *_up(pick, shape, sizes, chans, act)]
    return {"encoder": enc, "heads": {"mu": [f"Linear_{flat}_{latent}"], "logvar": [f"Linear_{flat}_{latent}"]}, "decoder": dec}


@FAMILIES.register("spatial", doc="`depth` stride-2 Conv2d, a spatial latent of `latent` channels (1x1 conv heads), mirrored decoder")
def spatial_family(pick: Pick, shape: tuple[int, ...]) -> dict[str, Any]:
    enc, sizes, chans, act = _down(pick, shape, "spatial")
    latent, c = pick("latent"), chans[-1]
    head = [f"C2d_{c}_{latent}_1_1_0"]
    dec = [f"C2d_{latent}_{c}_1_1_0", act, *_up(pick, shape, sizes, chans, act)]
    return {"encoder": enc, "heads": {"mu": head, "logvar": list(head)}, "decoder": dec}


def _padding(k: int) -> int:
    """Padding that makes a stride-2 conv of kernel k give ceil(n/2) (odd k) or floor(n/2) (even k)."""
    return (k - 1) // 2 if k % 2 else k // 2 - 1


def _down(pick: Pick, shape: tuple[int, ...], family: str) -> tuple[list[str], list[tuple[int, int]], list[int], str]:
    if len(shape) != 3:
        raise ConfigError(f"template.family {family} needs image data (C, H, W); this data is {shape} per sample: use family mlp")
    chans, kernels, act = pick("channels"), pick("kernel"), str(pick("activation"))
    c, h, w = shape
    enc, sizes, prev = [], [(h, w)], c
    for ch, k in zip(chans, kernels):
        p = _padding(k)
        h, w = (h + 2 * p - k) // 2 + 1, (w + 2 * p - k) // 2 + 1
        if h < 1 or w < 1:
            raise ConfigError(f"template: {len(chans)} stride-2 convolutions with kernels {kernels} shrink {shape[1:]} to "
                              f"nothing; lower the depth or use odd kernels")
        enc += [f"C2d_{prev}_{ch}_{k}_2_{p}", act]
        prev = ch
        sizes.append((h, w))
    return enc, sizes, chans, act


def _up(pick: Pick, shape: tuple[int, ...], sizes: list[tuple[int, int]], chans: list[int], act: str) -> list[str]:
    """Transposed convs back to each encoder size exactly (output_padding 0 or 1), no activation after the last."""
    kernels = pick("kernel")
    outs = [*reversed(chans[:-1]), shape[0]]
    dec, prev = [], chans[-1]
    for i, (ch, k) in enumerate(zip(outs, reversed(kernels))):
        p = _padding(k)
        (hi, wi), (ho, wo) = sizes[len(chans) - i], sizes[len(chans) - i - 1]
        ops = {ho - ((hi - 1) * 2 - 2 * p + k), wo - ((wi - 1) * 2 - 2 * p + k)}
        if len(ops) != 1 or not ops <= {0, 1}:
            raise ConfigError(f"template: kernel {k} cannot map {hi}x{wi} back to {ho}x{wo} exactly; use square images or odd kernels")
        op = ops.pop()
        dec.append(f"CT2d_{prev}_{ch}_{k}_2_{p}" + (f"_{op}" if op else ""))
        if i < len(chans) - 1:
            dec.append(act)
        prev = ch
    return dec
