"""Typed config of `model.quantize` (no torch import, so vaelab.core.config stays light)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_BITS = 16


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LatentQuantConfig(_Strict):
    """Quantize the latent the decoder sees: uniform n-bit (straight-through) or FSQ (Mentzer et al. 2023)."""

    kind: Literal["uniform", "fsq"] = "uniform"
    bits: int | None = Field(None, description="uniform: bits per latent value, 1..16")
    levels: list[int] | None = Field(None, description="fsq: levels per latent channel, e.g. [8, 5, 5, 5]")
    range: float = Field(3.0, gt=0, description="uniform: values are clipped to [-range, range] (decoder units)")

    @model_validator(mode="after")
    def _check(self) -> "LatentQuantConfig":
        if self.kind == "uniform":
            if self.bits is None:
                raise ValueError("model.quantize.latent.bits is required for kind uniform, e.g. bits: 8")
            check_bits(self.bits, "model.quantize.latent.bits")
            if self.levels is not None:
                raise ValueError("model.quantize.latent.levels is for kind fsq; uniform takes bits")
        else:
            if not self.levels:
                raise ValueError("model.quantize.latent.levels is required for kind fsq, e.g. levels: [8, 5, 5, 5]")
            bad = [lv for lv in self.levels if not 2 <= lv <= 2**MAX_BITS]
            if bad:
                raise ValueError(f"model.quantize.latent.levels: each level count must be in 2..{2**MAX_BITS}, got {bad}")
            if self.bits is not None:
                raise ValueError("model.quantize.latent.bits is for kind uniform; fsq takes levels")
        return self


class QuantizeConfig(_Strict):
    """`latent`: latent quantizer; `layers`: fake-quantized layers ("encoder.3" or a layer string); `bits`: their bits."""

    latent: LatentQuantConfig | None = None
    layers: list[str] = Field(default_factory=list)
    bits: int = Field(8, description="bits of the fake-quantized layers' weights and activations, 1..16")

    @model_validator(mode="after")
    def _check(self) -> "QuantizeConfig":
        check_bits(self.bits, "model.quantize.bits")
        return self


def check_bits(bits: int, where: str) -> int:
    if not 1 <= int(bits) <= MAX_BITS:
        raise ValueError(f"{where} must be between 1 and {MAX_BITS}, got {bits}")
    return int(bits)
