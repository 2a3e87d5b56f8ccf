"""Turn a ModelConfig and a DataSpec into a VAE, checking that every layer's shape chains into the next.

The order: the data spec (or model.input_shape), the condition's width, the likelihood (which fixes how many
outputs the decoder gives per data value), the layer lists (parsed by the config, or a preset resolved and parsed
here once), the modules, a shape check with a batch of zeros (`trace_model` rows are what `vaelab check` prints),
then the output activation, layer quantization and the latent quantizer.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from vaelab.core.config import ModelConfig, parse_layer_lists
from vaelab.core.dsl import LayerSpec, expand
from vaelab.core.errors import ConfigError, ModelError
from vaelab.core.layer_specs import LayerLists
from vaelab.core.vocab import CONDITIONS
from vaelab.data.spec import DataSpec, of_shape
from vaelab.model.likelihoods import LIKELIHOODS, Likelihood, check_fits, likelihood_choice
from vaelab.model.presets import resolve_preset
from vaelab.model.quantize import apply_layer_quantization, build_latent_quantizer
from vaelab.model.trace import LayerRow, Section, build_section, run_section
from vaelab.model.vae import VAE, inject_condition

ENDS_IN_ACTIVATION = ("Sigmoid", "Tanh")


def resolve_spec(cfg: ModelConfig, data: DataSpec | Sequence[int] | None) -> DataSpec:
    """The data's spec, or one made from model.input_shape when no data is given; the two must agree."""
    spec = of_shape(data)
    if spec is None:
        if not cfg.input_shape:
            raise ConfigError("model.input_shape is needed when no data fixes it, e.g. model.input_shape: [1, 28, 28]")
        # Without data nothing can contradict a discrete likelihood's claim of 8-bit values; train checks the real data.
        discrete = cfg.likelihood in LIKELIHOODS and LIKELIHOODS.get(cfg.likelihood).discrete
        return DataSpec(tuple(cfg.input_shape), bits=8 if discrete else None)
    if cfg.input_shape is not None and tuple(cfg.input_shape) != spec.shape:
        raise ConfigError(f"model.input_shape {list(cfg.input_shape)} does not match the data's shape {list(spec.shape)}")
    return spec


def resolve_layers(cfg: ModelConfig, shape: tuple[int, ...], cond_width: int, per_value: int = 1) -> LayerLists:
    """The config's parsed lists, or the preset's lists for this data, parsed here (once)."""
    if cfg.preset is None:
        return cfg.layers
    lists: dict[str, Any] = resolve_preset(cfg.preset, shape, cond_width, cfg.preset_args, per_value)
    heads = lists.get("heads")
    return parse_layer_lists(lists["encoder"], lists["decoder"], (heads["mu"], heads["logvar"]) if heads else None)


def pick_output_activation(cfg: ModelConfig, value_range: tuple[float, float], decoder: Sequence[LayerSpec],
                           likelihood: type[Likelihood]) -> str:
    """auto: sigmoid for [0,1] data, tanh for [-1,1], identity otherwise or when the decoder already ends in one;
    identity for likelihoods that read the decoder's raw outputs (logits of 256 levels, mixture parameters)."""
    ends_in = decoder[-1].type if decoder else None
    if not likelihood.uses_activation:
        if cfg.output_activation not in ("auto", "identity") or ends_in in ENDS_IN_ACTIVATION:
            what = f"model.output_activation is {cfg.output_activation!r}" if ends_in not in ENDS_IN_ACTIVATION \
                else f"model.decoder ends with {ends_in}"
            raise ConfigError(f"{what}, but likelihood {likelihood.name} reads the decoder's raw outputs: "
                              "set model.output_activation: auto and end the decoder without an activation")
        return "identity"
    if cfg.output_activation != "auto":
        if ends_in in ENDS_IN_ACTIVATION and cfg.output_activation != "identity":
            raise ConfigError(
                f"model.decoder ends with {ends_in} and model.output_activation is {cfg.output_activation!r}: "
                "remove the last layer or set model.output_activation: identity"
            )
        return cfg.output_activation
    if ends_in in ENDS_IN_ACTIVATION:
        return "identity"
    lo, hi = value_range
    if lo >= 0 and hi <= 1:
        return "sigmoid"
    if lo >= -1 and hi <= 1:
        return "tanh"
    return "identity"


def condition_width(cfg: ModelConfig, spec: DataSpec) -> tuple[str | None, int]:
    c = cfg.condition
    if c is None:
        return None, 0
    return c.kind, CONDITIONS.get(c.kind).width_for(c, spec)


def _check_output(out_shape: tuple[int, ...], spec: DataSpec, likelihood: Likelihood) -> None:
    want = likelihood.output_shape(spec.shape)
    if out_shape == want:
        return
    if likelihood.params_per_value == 1:
        raise ModelError(f"model.decoder outputs {out_shape} per sample but the data is {spec.shape}: "
                         "the decoder must end at the input shape")
    unit = "channels" if len(spec.shape) > 1 else "features"
    raise ModelError(f"model.decoder outputs {out_shape} per sample but the data is {spec.shape} and likelihood "
                     f"{likelihood.describe()} needs {want} ({likelihood.params_per_value} outputs per data value): "
                     f"end the decoder at {want[0]} {unit}")


def _shape_check(sections: dict[str, Section], spec: DataSpec, kind: str | None, width: int, cond_after: int,
                 trace: list[LayerRow] | None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(latent shape, decoder output shape) per sample, from 2 zero samples (so BatchNorm in train mode works)."""
    c = None
    if kind is not None:  # any (B, width) vector will do; no random draw, so building never moves the global RNG
        c = torch.zeros(2, width)
        c[:, 0] = 1.0
    with torch.no_grad():
        for s in sections.values():
            s.modules.eval()
        h = run_section(sections["encoder"], torch.zeros(2, *spec.shape), trace, cond=c, cond_at=cond_after)
        if "heads.mu" in sections:
            mu = run_section(sections["heads.mu"], h, trace)
            lv = run_section(sections["heads.logvar"], h, trace)
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
        out = run_section(sections["decoder"], inject_condition(torch.zeros(2, *latent), c), trace, cond=None)
    for s in sections.values():
        s.modules.train()
    return latent, tuple(out.shape[1:])


def build_model(cfg: ModelConfig, data: DataSpec | Sequence[int] | None = None, *, trace: list[LayerRow] | None = None) -> VAE:
    """Build and shape-check the VAE for data described by `data` (a DataSpec; a bare per-sample shape means values in
    [0, 1] and nothing else known; None uses model.input_shape). The spec is all the model learns about the data."""
    spec = resolve_spec(cfg, data)
    kind, width = condition_width(cfg, spec)
    lik_cls, lik_opts = likelihood_choice(cfg.likelihood, cfg.likelihood_args, spec.in_unit_interval)
    check_fits(lik_cls, spec.value_range, spec.bits)
    lists = resolve_layers(cfg, spec.shape, width, lik_cls.per_value(lik_opts))
    sections = {"encoder": build_section(lists.encoder, "encoder"), "decoder": build_section(lists.decoder, "decoder")}
    if lists.heads is not None:
        sections["heads.mu"] = build_section(lists.heads[0], "heads.mu")
        sections["heads.logvar"] = build_section(lists.heads[1], "heads.logvar")
    cond_after = 0
    for layer in expand(lists.encoder):
        if layer.type != "Flatten":
            break
        cond_after += 1
    latent, out_shape = _shape_check(sections, spec, kind, width, cond_after, trace)
    activation = pick_output_activation(cfg, spec.value_range, lists.decoder, lik_cls)
    likelihood = lik_cls(lik_opts, value_range=spec.value_range, activation=activation)
    _check_output(out_shape, spec, likelihood)
    apply_layer_quantization({k: s.modules for k, s in sections.items()}, {k: s.origin for k, s in sections.items()},
                             cfg.quantize)
    model = VAE(
        sections["encoder"].modules, sections["decoder"].modules, latent_shape=latent, input_shape=spec.shape,
        heads=(sections["heads.mu"].modules, sections["heads.logvar"].modules) if lists.heads is not None else None,
        latent_scale=cfg.latent_scale, likelihood=likelihood,
        condition_kind=kind, condition_width=width or None, condition_after=cond_after,
        latent_quantizer=build_latent_quantizer(cfg.quantize.latent if cfg.quantize else None),
    )
    model.train()
    return model


__all__ = ["build_model", "resolve_spec", "resolve_layers", "pick_output_activation", "LayerRow"]
