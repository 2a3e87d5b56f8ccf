"""Every vocabulary the config names, declared once.

Each registry is filled by the module named in `populate`, imported on the first lookup: the config (this
layer) validates names without importing the layers, models or trainers that define them, and those
modules register into these objects. Registries that only upper layers consult (likelihoods, OOD scores,
search samplers, ...) live next to their entries.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vaelab.core.errors import ConfigError
from vaelab.core.registry import Registry, UnknownNameError

LAYERS: Registry = Registry("layer", populate="vaelab.layers")
DATASETS: Registry = Registry("dataset", populate="vaelab.data")
PRESETS: Registry = Registry("preset", populate="vaelab.model.presets")
OPTIMIZERS: Registry = Registry("optimizer", case_sensitive=False, populate="vaelab.training.optim")
LR_SCHEDULERS: Registry = Registry("lr scheduler", case_sensitive=False, populate="vaelab.training.optim")
KL_SCHEDULES: Registry = Registry("KL schedule", case_sensitive=False, populate="vaelab.training.schedules")
PRECISIONS: Registry = Registry("precision", case_sensitive=False, populate="vaelab.training.precision")
LOSS_TERMS: Registry = Registry("loss term", populate="vaelab.training.losses")
ADVERSARIAL_LOSSES: Registry = Registry("adversarial loss", populate="vaelab.training.adversarial")
REDUCTIONS: Registry = Registry("reduction", populate="vaelab.training.losses")
LOGGERS: Registry = Registry("train.log logger", populate="vaelab.training.loggers")
LIKELIHOODS: Registry = Registry("likelihood", populate="vaelab.model.likelihoods")
CONDITIONS: Registry = Registry("condition kind", populate="vaelab.model.conditions")


def build_dataclass_entry(registry: Registry, kind: str, where: str, params: dict[str, Any]) -> Any:
    """Instantiate the dataclass registered as `kind`; errors name `where.<param>` and list the valid ones."""
    try:
        cls = registry.get(kind)
    except UnknownNameError as e:
        raise ConfigError(f"{where}.kind: {e}") from None
    valid = [f.name for f in dataclasses.fields(cls)]
    for key in params:
        if key not in valid:
            raise ConfigError(f"{where}.{key}: not a parameter of the {kind!r} {registry.kind}. Valid: {', '.join(valid)}")
    return cls(**params)


class Options(BaseModel):
    """Base for every dataset's options model: unknown keys are errors. `standardize` applies to every in-memory
    dataset (vaelab.data.normalize)."""

    model_config = ConfigDict(extra="forbid")
    standardize: bool = Field(False, description="per-feature mean/std fitted on the training split; undone on output")


class StrictOptions(BaseModel):
    """Base for the options of a registry entry other than a dataset (likelihoods): unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


def entry_options(registry: Registry, name: str, raw: dict | BaseModel | None, where: str, name_field: str) -> BaseModel:
    """Validate `raw` against the `options` model registered with `name` (the value of `name_field`); errors name
    `where.<key>`."""
    try:
        entry = registry.entry(name)
    except UnknownNameError as e:
        raise ConfigError(f"{name_field}: {e}") from None
    model: type[BaseModel] = entry.meta.get("options", StrictOptions)
    if isinstance(raw, model):
        return raw
    try:
        return model.model_validate(raw or {})
    except ValidationError as e:
        valid = list(model.model_fields)
        lines = []
        for err in e.errors():
            key = f"{where}." + ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                hint = UnknownNameError(f"{name} option", str(err["loc"][0]), valid).args[0]
                lines.append(f"{key}: {hint}" if valid else f"{key}: {registry.kind} {name!r} takes no options")
            else:
                lines.append(f"{key}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError("; ".join(lines)) from None


def dataset_options(name: str, raw: dict | BaseModel | None) -> BaseModel:
    """Validate `raw` against the options model of dataset `name`; errors name `data.options.<key>`."""
    if isinstance(raw, BaseModel) and not isinstance(raw, DATASETS.entry(name).meta.get("options", Options)):
        raw = raw.model_dump(exclude_unset=True)
    return entry_options(DATASETS, name, raw, "data.options", "data.name")
