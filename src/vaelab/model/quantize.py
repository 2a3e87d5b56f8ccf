"""Latent quantization (uniform n-bit with a straight-through estimator, FSQ) and fake-quantized layers.

Uniform: clip to [-r, r], round to 2^bits levels; the gradient passes straight through (Bengio et al. 2013).
FSQ (Mentzer et al. 2023, "Finite Scalar Quantization"): bound each channel with tanh to L_i levels and round;
channel i of the latent (dim 1) gets levels[i]. Both export integer codes with `scale` and `offset` such that
`z = codes * scale + offset` (per channel for FSQ).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import nn

from vaelab.core.errors import ConfigError
from vaelab.core.quant_config import MAX_BITS, LatentQuantConfig, QuantizeConfig, check_bits
from vaelab.core.registry import Registry


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round(x) in the forward pass, identity gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()


@dataclass
class IntegerLatents:
    """Quantized latents as integers: z = codes * scale + offset (scale/offset broadcast over dim 1)."""

    codes: torch.Tensor  # (B, *latent_shape) int32
    scale: torch.Tensor  # () or (C,)
    offset: torch.Tensor  # () or (C,)

    def dequantize(self) -> torch.Tensor:
        shape = [1, -1] + [1] * (self.codes.dim() - 2) if self.scale.dim() else []
        s, o = (self.scale.view(shape), self.offset.view(shape)) if shape else (self.scale, self.offset)
        return self.codes.float() * s + o


class UniformQuantizer(nn.Module):
    """n-bit uniform quantizer on [-range, range] with a straight-through estimator."""

    def __init__(self, bits: int, range: float = 3.0):
        super().__init__()
        self.bits = check_bits(bits, "bits")
        self.range = float(range)
        self.levels = 2**self.bits
        self.step = 2 * self.range / (self.levels - 1) if self.levels > 1 else 2 * self.range

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        q = torch.round((z.float().clamp(-self.range, self.range) + self.range) / self.step)
        return q.clamp(0, self.levels - 1).to(torch.int32)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        deq = self.codes(z).to(z.dtype) * self.step - self.range
        return z + (deq - z).detach()

    def to_integers(self, z: torch.Tensor) -> IntegerLatents:
        return IntegerLatents(self.codes(z), torch.tensor(self.step), torch.tensor(-self.range))

    def extra_repr(self) -> str:
        return f"bits={self.bits}, range={self.range}"


class FSQ(nn.Module):
    """Finite scalar quantization: channel i of z (dim 1) is bounded to levels[i] values in [-1, 1]."""

    def __init__(self, levels: Sequence[int], eps: float = 1e-3):
        super().__init__()
        self.levels = [int(v) for v in levels]
        lv = torch.tensor(self.levels, dtype=torch.float32)
        self.register_buffer("_levels", lv, persistent=False)
        self.register_buffer("_half_width", torch.floor(lv / 2), persistent=False)
        self.eps = eps

    def _view(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if z.shape[1] != len(self.levels):
            raise ConfigError(f"model.quantize.latent.levels has {len(self.levels)} entries but the latent has "
                              f"{z.shape[1]} channels (latent shape {tuple(z.shape[1:])}); give one level count per channel")
        return t.view(1, -1, *([1] * (z.dim() - 2)))

    def _quantized(self, z: torch.Tensor) -> torch.Tensor:
        """Rounded values in {-floor(L/2), ..., ceil(L/2)-1} (straight-through)."""
        lv = self._view(self._levels, z)
        half_l = (lv - 1) * (1 + self.eps) / 2
        offset = torch.where(lv % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half_l)
        bounded = torch.tanh(z.float() + shift) * half_l - offset
        return round_ste(bounded)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (self._quantized(z) / self._view(self._half_width, z)).to(z.dtype)

    def to_integers(self, z: torch.Tensor) -> IntegerLatents:
        hw = self._view(self._half_width, z)
        codes = (self._quantized(z).detach() + hw).round().to(torch.int32)
        return IntegerLatents(codes, 1.0 / self._half_width.clone(), -torch.ones_like(self._half_width))

    def extra_repr(self) -> str:
        return f"levels={self.levels}"


LATENT_QUANTIZERS: Registry = Registry("latent quantizer")
LATENT_QUANTIZERS.register("uniform", lambda cfg: UniformQuantizer(cfg.bits, cfg.range),
                           doc="n-bit uniform on [-range, range], straight-through gradient")
LATENT_QUANTIZERS.register("fsq", lambda cfg: FSQ(cfg.levels), doc="finite scalar quantization, levels per channel")


def build_latent_quantizer(cfg: LatentQuantConfig | None) -> nn.Module | None:
    """The quantizer `model.quantize.latent` names (by its kind), or None."""
    return None if cfg is None else LATENT_QUANTIZERS.get(cfg.kind)(cfg)


# --------------------------------------------------------------------------- fake-quantized layers


def fake_quantize(t: torch.Tensor, bits: int, symmetric: bool) -> torch.Tensor:
    """Per-tensor min/max fake quantization with a straight-through gradient."""
    levels = 2**bits - 1
    x = t.float()
    if symmetric:
        scale = x.detach().abs().amax().clamp_min(1e-8) / max(levels // 2, 1)
        q = torch.clamp(torch.round(x / scale), -(levels // 2) - 1, levels // 2) * scale
    else:
        lo, hi = x.detach().amin(), x.detach().amax()
        scale = (hi - lo).clamp_min(1e-8) / levels
        q = torch.round((x - lo) / scale).clamp(0, levels) * scale + lo
    return (x + (q - x).detach()).to(t.dtype)


class FakeQuantWeight(nn.Module):
    """A parametrization: the layer uses its weight fake-quantized to `bits` (symmetric, per tensor)."""

    def __init__(self, bits: int):
        super().__init__()
        self.bits = bits

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return fake_quantize(w, self.bits, symmetric=True)


def _quantize_module(module: nn.Module, bits: int) -> None:
    from torch.nn.utils import parametrize

    for sub in module.modules():
        w = getattr(sub, "weight", None)
        if isinstance(w, nn.Parameter) and w.dim() >= 2 and not parametrize.is_parametrized(sub, "weight"):
            parametrize.register_parametrization(sub, "weight", FakeQuantWeight(bits))
    module.register_forward_hook(lambda _m, _inp, out: fake_quantize(out, bits, symmetric=False)
                                 if isinstance(out, torch.Tensor) else out)
    module.fake_quant_bits = bits


def select_layers(names: Iterable[str], origins: dict[str, list[tuple[int, str]]]) -> list[tuple[str, int]]:
    """Resolve "section.index" (index as written, before repeats) or a layer string to (section, expanded index)."""
    chosen: list[tuple[str, int]] = []
    for k, name in enumerate(names):
        where = f"model.quantize.layers[{k}] {name!r}"
        section, dot, idx = name.rpartition(".")
        if dot and section in origins and idx.lstrip("-").isdigit():
            written = sorted({i for i, _ in origins[section]})
            i = int(idx)
            if i not in written:
                raise ConfigError(f"{where}: model.{section} has layers 0..{max(written)}; no layer {i}")
            hits = [(section, j) for j, (w, _) in enumerate(origins[section]) if w == i]
        else:
            hits = [(s, j) for s, orig in origins.items() for j, (_, tok) in enumerate(orig) if tok == name]
            if not hits:
                tokens = sorted({tok for orig in origins.values() for _, tok in orig})
                raise ConfigError(f"{where}: no such layer; name one as section.index (sections: "
                                  f"{', '.join(origins)}) or by its layer string, one of: {', '.join(tokens)}")
        chosen += [h for h in hits if h not in chosen]
    return chosen


def apply_layer_quantization(sections: dict[str, nn.Sequential], origins: dict[str, list[tuple[int, str]]],
                             cfg: QuantizeConfig | None) -> int:
    """Fake-quantize the weights and output activations of the layers cfg.layers names; returns how many."""
    if cfg is None or not cfg.layers:
        return 0
    chosen = select_layers(cfg.layers, origins)
    for section, j in chosen:
        _quantize_module(sections[section][j], cfg.bits)
    return len(chosen)


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def recon_error_vs_bits(model, x: torch.Tensor, bits_list: Sequence[int | None], *, range: float = 3.0,
                        c: torch.Tensor | None = None) -> dict[int | None, float]:
    """Mean squared reconstruction error of the posterior mean quantized to each bit width (None = float32).

    The model's own latent quantizer (if any) is bypassed, so the numbers compare bit widths alone.
    """
    was_training = model.training
    model.eval()
    try:
        mean = model.encode(x, c).mean  # decoder units
        out: dict[int | None, float] = {}
        for bits in bits_list:
            z = mean if bits is None or bits >= 32 else UniformQuantizer(min(int(bits), MAX_BITS), range)(mean)
            x_hat = model.likelihood.mean(model.decoder_output(z, c, quantize=False))
            out[bits] = float(((x_hat.float() - x.float()) ** 2).mean())
        return out
    finally:
        model.train(was_training)
