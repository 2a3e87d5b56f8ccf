"""A search space in YAML: genes (int ranges, floats, choices), a template that turns genes into an ordinary
vaelab config, the objectives and the NSGA-II settings.

A gene set becomes a normal `Config` (layer strings, no preset), so every trial's run folder is an ordinary
run that `vaelab evaluate` and friends can read. The input size comes from the data.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any, Annotated, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vaelab.core.config import apply_override, format_validation_error, read_yaml
from vaelab.core.data_config import DataConfig
from vaelab.core.errors import ConfigError
from vaelab.core.registry import Registry

# Filled by vaelab.search.sampler (imported on the first lookup), which needs this module's SearchSpace.
SAMPLERS: Registry = Registry("sampler", populate="vaelab.search.sampler")
SCREENS: Registry = Registry("surrogate screen", populate="vaelab.search.sampler")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IntGene(Strict):
    type: Literal["int"]
    low: int
    high: int
    step: int = Field(1, ge=1)
    log: bool = False

    @model_validator(mode="after")
    def _range(self) -> "IntGene":
        _check_range(self.low, self.high, self.log)
        if self.log and self.step != 1:
            raise ValueError("an int gene with log: true must have step 1")
        return self


class FloatGene(Strict):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _range(self) -> "FloatGene":
        _check_range(self.low, self.high, self.log)
        return self


class ChoiceGene(Strict):
    type: Literal["choice"]
    choices: list[Any] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> "ChoiceGene":
        if len({json.dumps(c, sort_keys=True) for c in self.choices}) != len(self.choices):
            raise ValueError(f"choices {self.choices} repeat a value; list each option once")
        return self


def _check_range(low: float, high: float, log: bool) -> None:
    if low > high:
        raise ValueError(f"inverted range: low {low} > high {high}; swap them")
    if low == high:
        raise ValueError(f"empty range: low == high == {low}; widen it, or fix the value in the template instead of a gene")
    if log and low <= 0:
        raise ValueError(f"log: true needs low > 0, got low {low}")


Gene = Annotated[Union[IntGene, FloatGene, ChoiceGene], Field(discriminator="type")]


class Template(Strict):
    """How genes become a model. Values are literals or `$gene` references.

    family: a name from `vaelab.search.families.FAMILIES` (mlp, conv, spatial), or a `$gene` choosing among them.
    hidden (mlp widths), channels (conv channels), kernel (one value, or one per conv layer): lists cut to the
    first `depth` entries; latent (units, or channels of a spatial latent), activation.
    `set` maps other dotted config keys (`train.lr`, `loss.kl_weight`, `loss.recon`, ...) to literals or `$gene`.
    """

    family: Any = "mlp"
    latent: Any = 8
    hidden: list[Any] = Field(default_factory=lambda: [64])
    channels: list[Any] = Field(default_factory=lambda: [16, 32])
    kernel: Any = 4
    depth: Any = None
    activation: Any = "ReLU"
    set: dict[str, Any] = Field(default_factory=dict)


class ObjectiveSpec(BaseModel):
    """One objective: `name` from the OBJECTIVES registry, optional direction/label, the rest are its options."""

    model_config = ConfigDict(extra="allow")
    name: str
    direction: Literal["minimize", "maximize"] | None = None
    label: str | None = None

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SurrogateSpec(Strict):
    enabled: bool = True
    model: str = "random_forest"
    screen: str = Field("hvi", description="how candidates are chosen, from vaelab.search.sampler.SCREENS: hvi, rank")
    pool: int = Field(30, ge=1, description="screen hvi: candidate children bred per generation, times population")
    random_share: float = Field(0.5, ge=0, le=1, description="screen hvi: share of the candidate pool drawn uniformly from the "
                                "space instead of bred from the parents (exploration)")
    kappa: float = Field(1.0, ge=0, description="screen hvi: optimism, predicted mean minus kappa standard deviations")
    keep_fraction: float = Field(0.5, gt=0, le=1, description="screen rank: share of the candidates trained (seed 000's "
                                 "N//2 is 0.5)")
    min_trials: int | None = Field(None, ge=2, description="finished trials before the surrogate is used; default population")


class PrunerSpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = "none"

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SearchSettings(Strict):
    population: int = Field(8, ge=2)
    trials: int = Field(32, ge=1, description="trained models in all (default budget of `vaelab search`)")
    seed: int = 0
    sampler: str = Field("nsga2", description="a name from vaelab.search.sampler.SAMPLERS: nsga2, tpe, gp, random")
    crossover_prob: float = Field(0.9, ge=0, le=1)
    mutation_prob: float | None = Field(None, ge=0, le=1)
    surrogate: SurrogateSpec = Field(default_factory=SurrogateSpec)
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    heartbeat_interval: int = Field(30, ge=1, description="seconds between a running trial's heartbeats (databases)")
    grace_period: int = Field(120, ge=2, description="seconds without a heartbeat before a trial's worker counts as dead")

    @model_validator(mode="after")
    def _check(self) -> "SearchSettings":
        from vaelab.search.pruning import check_pruner

        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler: {_unknown(SAMPLERS, self.sampler)}")
        if self.surrogate.screen not in SCREENS:
            raise ValueError(f"surrogate.screen: {_unknown(SCREENS, self.surrogate.screen)}")
        if self.grace_period <= self.heartbeat_interval:
            raise ValueError(f"grace_period ({self.grace_period}) must exceed heartbeat_interval ({self.heartbeat_interval}); "
                             "about 4 heartbeats is safe")
        check_pruner(self.pruner.name, self.pruner.options())
        return self


def _unknown(registry, name: str) -> str:
    from vaelab.core.registry import UnknownNameError

    return str(UnknownNameError(registry.kind, name, registry.names()))


NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class SearchSpace(Strict):
    name: str = Field("search", description="study name and default folder searches/NAME: letters, digits, . _ -")
    data: DataConfig = Field(default_factory=DataConfig)
    genes: dict[str, Gene]
    template: Template = Field(default_factory=Template)
    base: dict[str, Any] = Field(default_factory=dict, description="loss/train/seed sections of every trial's config")
    objectives: list[ObjectiveSpec] = Field(min_length=2)
    search: SearchSettings = Field(default_factory=SearchSettings)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not NAME_RE.match(v) or ".." in v:
            raise ValueError(f"{v!r} is not a plain name: use letters, digits, '.', '_' and '-' (no '/', no '..', at most "
                             "100 characters); it names the study and the folder searches/NAME")
        return v

    @model_validator(mode="after")
    def _refs(self) -> "SearchSpace":
        if not self.genes:
            raise ValueError("genes is empty: give at least one gene, e.g. latent_dim: {type: int, low: 3, high: 10}")
        for where, value in _template_values(self.template):
            if isinstance(value, str) and value.startswith("$") and value[1:] not in self.genes:
                raise ValueError(f"template.{where} refers to unknown gene {value!r}; genes: {', '.join(self.genes)}")
        self._check_family()
        for key in ("model", "data"):
            if key in self.base:
                raise ValueError(f"base.{key}: the model comes from the template and the data from `data`; remove base.{key}")
        from vaelab.search.objectives import OBJECTIVES, check_options

        for i, o in enumerate(self.objectives):
            if o.name not in OBJECTIVES:
                raise ValueError(f"objectives[{i}].name: {_unknown(OBJECTIVES, o.name)}")
            check_options(o.name, o.options(), f"objectives[{i}]")
        labels = [objective_label(o) for o in self.objectives]
        if len(set(labels)) != len(labels):
            raise ValueError(f"objectives have repeated labels {labels}; give each a distinct `label`")
        return self

    def _check_family(self) -> None:
        from vaelab.search.families import FAMILIES

        fam = self.template.family
        names = self.genes[fam[1:]].choices if isinstance(fam, str) and fam.startswith("$") and \
            isinstance(self.genes[fam[1:]], ChoiceGene) else [fam]
        for n in names:
            if n not in FAMILIES:
                raise ValueError(f"template.family: {_unknown(FAMILIES, str(n))}")

    # ------------------------------------------------------------------ genes -> config
    def directions(self) -> list[str]:
        from vaelab.search.objectives import OBJECTIVES

        return [o.direction or OBJECTIVES.entry(o.name).meta["direction"] for o in self.objectives]

    def labels(self) -> list[str]:
        return [objective_label(o) for o in self.objectives]

    def trial_config(self, genes: dict[str, Any], input_shape: tuple[int, ...]) -> dict[str, Any]:
        """The raw config dict (validate with `load_config`) for one gene set on data of `input_shape`; a ConfigError
        when the genes give no model (the search prunes such a trial without training)."""
        from vaelab.search.families import FAMILIES

        value = lambda v: _resolve(v, genes)  # noqa: E731
        model = FAMILIES.get(str(value(self.template.family)))(_picker(self.template, value), tuple(input_shape))
        raw = copy.deepcopy(self.base)
        raw.setdefault("name", self.name)
        raw["model"] = model
        raw["data"] = self.data.model_dump(mode="json")
        for key, v in self.template.set.items():
            apply_override(raw, f"{key}={json.dumps(value(v))}")
        return raw

    def fingerprint(self) -> str:
        """Hash of everything that makes trials comparable (not the budget, seed or worker settings)."""
        keep = self.model_dump(mode="json", include={"data", "genes", "template", "base", "objectives"})
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def objective_label(o: ObjectiveSpec) -> str:
    """CSV column name: seed 000's `loss` and `OOD` for the likelihood and OOD objectives."""
    return o.label or {"neg_elbo": "loss", "ood": "OOD"}.get(o.name, o.name)


def _template_values(t: Template):
    for k in ("family", "latent", "depth", "activation"):
        yield k, getattr(t, k)
    for k in ("hidden", "channels"):
        for i, v in enumerate(getattr(t, k)):
            yield f"{k}[{i}]", v
    kernels = t.kernel if isinstance(t.kernel, list) else [t.kernel]
    for i, v in enumerate(kernels):
        yield f"kernel[{i}]" if isinstance(t.kernel, list) else "kernel", v
    for k, v in t.set.items():
        yield f"set.{k}", v


def _resolve(v: Any, genes: dict[str, Any]) -> Any:
    return genes[v[1:]] if isinstance(v, str) and v.startswith("$") else v


def _positive_int(v: Any, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or v < 1:
        raise ConfigError(f"template.{where} must be a positive integer, got {v!r}")
    return int(v)


def _picker(t: Template, value):
    """`pick(key)` for the families: genes filled in, lists cut to `depth`, kernel repeated per conv layer."""
    depth = _positive_int(value(t.depth), "depth") if t.depth is not None else None

    def listed(key: str, items: list[Any]) -> list[int]:
        out = [_positive_int(value(v), f"{key}[{i}]") for i, v in enumerate(items)]
        if depth is not None:
            if depth > len(out):
                raise ConfigError(f"template.depth {depth} exceeds the {len(out)} entries of template.{key}; list more")
            out = out[:depth]
        return out

    def pick(key: str) -> Any:
        if key in ("hidden", "channels"):
            return listed(key, getattr(t, key))
        if key == "kernel":
            n = len(listed("channels", t.channels))
            ks = listed("kernel", t.kernel) if isinstance(t.kernel, list) else [_positive_int(value(t.kernel), "kernel")] * n
            if len(ks) < n:
                raise ConfigError(f"template.kernel lists {len(ks)} kernels for {n} conv layers; list one per layer")
            return ks[:n]
        if key == "latent":
            return _positive_int(value(t.latent), "latent")
        return value(getattr(t, key))

    return pick


def load_space(source: str | Path | dict[str, Any]) -> SearchSpace:
    """Read and validate a search-space YAML (or mapping); errors name the dotted field."""
    raw = copy.deepcopy(source) if isinstance(source, dict) else read_yaml(source)
    try:
        return SearchSpace.model_validate(raw)
    except ValidationError as e:
        where = f"{source}: " if not isinstance(source, dict) else ""
        raise ConfigError(where + format_validation_error(e, SearchSpace)) from None


def space_to_yaml(space: SearchSpace) -> str:
    return yaml.safe_dump(space.model_dump(mode="json"), sort_keys=False)


def suggest(trial, space: SearchSpace) -> dict[str, Any]:
    """Draw one gene set through an Optuna trial (the sampler decides the values)."""
    out = {}
    for name, g in space.genes.items():
        if isinstance(g, IntGene):
            out[name] = trial.suggest_int(name, g.low, g.high, step=g.step, log=g.log)
        elif isinstance(g, FloatGene):
            out[name] = trial.suggest_float(name, g.low, g.high, log=g.log)
        else:
            out[name] = trial.suggest_categorical(name, g.choices)
    return out


def distributions(space: SearchSpace) -> dict[str, Any]:
    import optuna

    d = {}
    for name, g in space.genes.items():
        if isinstance(g, IntGene):
            d[name] = optuna.distributions.IntDistribution(g.low, g.high, step=g.step, log=g.log)
        elif isinstance(g, FloatGene):
            d[name] = optuna.distributions.FloatDistribution(g.low, g.high, log=g.log)
        else:
            d[name] = optuna.distributions.CategoricalDistribution(g.choices)
    return d


def encode_genes(space: SearchSpace, genes: dict[str, Any]) -> list[float]:
    """Feature vector for the surrogate: ints/floats as numbers (log genes as logs), choices one-hot."""
    row: list[float] = []
    for name, g in space.genes.items():
        v = genes[name]
        if isinstance(g, ChoiceGene):
            row += [1.0 if v == c else 0.0 for c in g.choices]
        else:
            row.append(math.log(v) if g.log else float(v))
    return row
