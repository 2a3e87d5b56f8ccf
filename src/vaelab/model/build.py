"""Turn a ModelConfig into a VAE, checking that every layer's shape chains into the next.

`trace_model` is what `vaelab check` prints: each layer's output shape and parameter count, found by running a
batch of zeros through the layers one at a time, so a mismatch names the layer that breaks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from vaelab.core.config import ModelConfig
from vaelab.core.dsl import LayerSpec, expand
from vaelab.core.errors import ConfigError, ModelError
from vaelab.data.spec import DataSpec, of_shape
from vaelab.layers import build_layer, parse_layers
from vaelab.model.vae import VAE, inject_condition
from vaelab.model.presets import resolve_preset


@dataclass
class LayerRow:
    section: str  # "encoder", "heads.mu", ...
    index: int  # position in the section's list as written (before repeat expansion)
    token: str
    out_shape: tuple[int, ...]  # per sample
    params: int


@dataclass
class Resolved:
    encoder: list[LayerSpec]
    decoder: list[LayerSpec]
    heads: tuple[list[LayerSpec], list[LayerSpec]] | None


def resolve_layers(cfg: ModelConfig, input_shape: Sequence[int], cond_width: int) -> Resolved:
    lists: dict[str, Any]
    if cfg.preset is not None:
        lists = resolve_preset(cfg.preset, tuple(input_shape), cond_width, cfg.preset_args)
    else:
        lists = {"encoder": cfg.encoder, "decoder": cfg.decoder,
                 "heads": cfg.heads.model_dump() if cfg.heads is not None else None}
    heads = lists.get("heads")
    return Resolved(
        parse_layers(lists["encoder"], "model.encoder"),
        parse_layers(lists["decoder"], "model.decoder"),
        (parse_layers(heads["mu"], "model.heads.mu"), parse_layers(heads["logvar"], "model.heads.logvar")) if heads else None,
    )


def pick_output_activation(cfg: ModelConfig, value_range: tuple[float, float] | None, decoder: list[LayerSpec]) -> str:
    """auto: sigmoid for [0,1] data, tanh for [-1,1], identity otherwise or when the decoder already ends in one."""
    ends_in = decoder[-1].type if decoder else None
    if cfg.output_activation != "auto":
        if ends_in in ("Sigmoid", "Tanh") and cfg.output_activation != "identity":
            raise ConfigError(
                f"model.decoder ends with {ends_in} and model.output_activation is {cfg.output_activation!r}: "
                "remove the last layer or set model.output_activation: identity"
            )
        return cfg.output_activation
    if ends_in in ("Sigmoid", "Tanh"):
        return "identity"
    if value_range is None:
        return "sigmoid"
    lo, hi = value_range
    if lo >= 0 and hi <= 1:
        return "sigmoid"
    if lo >= -1 and hi <= 1:
        return "tanh"
    return "identity"


def _build_section(specs: list[LayerSpec], section: str) -> tuple[nn.Sequential, list[tuple[int, str]]]:
    modules, origin = [], []
    for i, spec in enumerate(specs):
        for one in spec.expand():
            try:
                modules.append(build_layer(one))
            except (TypeError, ValueError) as e:
                raise ModelError(f"model.{section}[{i}] {spec}: cannot build: {e}") from None
            origin.append((i, str(spec)))
    return nn.Sequential(*modules), origin


def _expected_in(module: nn.Module) -> tuple[str, int] | None:
    for attr in ("in_features", "in_channels"):
        if hasattr(module, attr):
            return attr.replace("in_", ""), int(getattr(module, attr))
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
        return "channels", module.num_features
    if isinstance(module, nn.GroupNorm):
        return "channels", module.num_channels
    return None


def _run_section(
    seq: nn.Sequential, origin: list[tuple[int, str]], section: str, h: torch.Tensor, rows: list[LayerRow] | None,
    *, cond: torch.Tensor | None = None, cond_at: int | None = None,
) -> torch.Tensor:
    for j, module in enumerate(seq):
        if cond_at == j:
            h = inject_condition(h, cond)
        idx, token = origin[j]
        where = f"model.{section}[{idx}] {token!r}"
        want = _expected_in(module)
        if want is not None and h.dim() >= 2 and not isinstance(module, nn.Linear) and h.shape[1] != want[1]:
            raise ModelError(f"{where}: expects {want[1]} input {want[0]}, but the previous layer gives {h.shape[1]} "
                             f"(input shape {tuple(h.shape[1:])} per sample)")
        if isinstance(module, nn.Linear) and h.shape[-1] != module.in_features:
            raise ModelError(f"{where}: expects {module.in_features} input features, but the previous layer gives "
                             f"{h.shape[-1]} (input shape {tuple(h.shape[1:])} per sample)")
        try:
            h = module(h)
        except Exception as e:  # torch raises RuntimeError/ValueError/IndexError for shape trouble
            msg = str(e).splitlines()[0]
            raise ModelError(f"{where}: fails on input of shape {tuple(h.shape[1:])} per sample: {msg}") from None
        if rows is not None:
            rows.append(LayerRow(section, idx, token, tuple(h.shape[1:]), sum(p.numel() for p in module.parameters())))
    if cond_at is not None and cond_at >= len(seq):
        h = inject_condition(h, cond)
    return h


def condition_width(cfg: ModelConfig, spec: DataSpec) -> tuple[str | None, int]:
    c = cfg.condition
    if c is None:
        return None, 0
    if c.kind == "label":
        width = c.num_classes or spec.num_classes
        if not width:
            raise ConfigError("model.condition.num_classes: the data has no labels; give the number of classes")
        return "label", width
    width = c.dim or spec.condition_dim
    if not width:
        raise ConfigError("model.condition.dim: give the width of the condition vector")
    return "vector", width


def resolve_spec(cfg: ModelConfig, data: DataSpec | Sequence[int] | None) -> DataSpec:
    """The data's spec, or one made from model.input_shape when no data is given; the two must agree."""
    spec = of_shape(data)
    if spec is None:
        if not cfg.input_shape:
            raise ConfigError("model.input_shape is needed when no data fixes it, e.g. model.input_shape: [1, 28, 28]")
        return DataSpec(tuple(cfg.input_shape))
    if cfg.input_shape is not None and tuple(cfg.input_shape) != spec.shape:
        raise ConfigError(f"model.input_shape {list(cfg.input_shape)} does not match the data's shape {list(spec.shape)}")
    return spec


def build_model(cfg: ModelConfig, data: DataSpec | Sequence[int] | None = None, *, trace: list[LayerRow] | None = None) -> VAE:
    """Build and shape-check the VAE for data described by `data` (a DataSpec; a bare per-sample shape means values in
    [0, 1] and nothing else known; None uses model.input_shape). The spec is all the model learns about the data."""
    spec = resolve_spec(cfg, data)
    shape = spec.shape
    kind, width = condition_width(cfg, spec)
    lists = resolve_layers(cfg, shape, width)
    encoder, enc_origin = _build_section(lists.encoder, "encoder")
    decoder, dec_origin = _build_section(lists.decoder, "decoder")
    heads = None
    if lists.heads is not None:
        heads = (_build_section(lists.heads[0], "heads.mu"), _build_section(lists.heads[1], "heads.logvar"))
    cond_after = 0
    for layer in expand(lists.encoder):
        if layer.type != "Flatten":
            break
        cond_after += 1

    # ---- shape check with a batch of zeros (2 samples, so BatchNorm in train mode works)
    c = torch.zeros(2, width) if kind else None
    if c is not None:
        c[:, 0] = 1.0
    with torch.no_grad():
        for m in (encoder, decoder):
            m.eval()
        h = _run_section(encoder, enc_origin, "encoder", torch.zeros(2, *shape), trace, cond=c, cond_at=cond_after if kind else None)
        if heads is not None:
            (mu_seq, mu_o), (lv_seq, lv_o) = heads
            for m in (mu_seq, lv_seq):
                m.eval()
            mu = _run_section(mu_seq, mu_o, "heads.mu", h, trace)
            lv = _run_section(lv_seq, lv_o, "heads.logvar", h, trace)
            if mu.shape != lv.shape:
                raise ModelError(f"model.heads: mu gives {tuple(mu.shape[1:])} but logvar gives {tuple(lv.shape[1:])}; they must match")
            latent = tuple(mu.shape[1:])
        else:
            if h.shape[1] % 2:
                kind_name = "channels" if h.dim() > 2 else "features"
                raise ModelError(
                    f"model.encoder: the last layer gives {h.shape[1]} {kind_name}, which split into mean and log-variance, "
                    f"so the count must be even (2 x latent {kind_name}); or give model.heads"
                )
            latent = (h.shape[1] // 2, *h.shape[2:])
        z = torch.zeros(2, *latent)
        out = _run_section(decoder, dec_origin, "decoder", inject_condition(z, c), trace)
    if tuple(out.shape[1:]) != shape:
        raise ModelError(f"model.decoder outputs {tuple(out.shape[1:])} per sample but the data is {shape}: "
                         "the decoder must end at the input shape")
    activation = pick_output_activation(cfg, spec.value_range, lists.decoder)
    from vaelab.model.quantize import apply_layer_quantization, build_latent_quantizer

    sections = {"encoder": (encoder, enc_origin), "decoder": (decoder, dec_origin)}
    if heads is not None:
        sections.update({"heads.mu": heads[0], "heads.logvar": heads[1]})
    apply_layer_quantization({k: v[0] for k, v in sections.items()}, {k: v[1] for k, v in sections.items()}, cfg.quantize)
    model = VAE(
        encoder, decoder, latent_shape=latent, input_shape=shape,
        heads=(heads[0][0], heads[1][0]) if heads else None,
        latent_scale=cfg.latent_scale, output_activation=activation,
        condition_kind=kind, condition_width=width or None, condition_after=cond_after,
        latent_quantizer=build_latent_quantizer(cfg.quantize.latent if cfg.quantize else None),
    )
    model.train()
    return model


def latent_size(model: VAE) -> int:
    return math.prod(model.latent_shape)
