"""Objectives a search can minimise or maximise, each a function of one trained trial.

Registry entries: `OBJECTIVES.register(name, fn, direction=..., doc=..., unit=..., trained=True)` with `fn(ctx, **options) ->
float`; `trained=False` marks an objective that does not depend on the weights (parameter count, latency): the
surrogate pre-screening measures it on the untrained candidate instead of predicting it; `scale="log"` marks one
that spans orders of magnitude (the pre-screening compares its values on a log scale). The
options a search file gives are checked against `fn`'s keyword parameters when the file loads (`check_options`).
Likelihood scores come from `vaelab.use.ood_scores` (`nll_scores`, `auroc`).
"""
from __future__ import annotations

import inspect
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from vaelab.core.config import Config
from vaelab.data import DataBundle
from vaelab.core.errors import ConfigError, VaelabError
from vaelab.model.vae import VAE
from vaelab.core.registry import Registry
from vaelab.use.ood_corruptions import CORRUPTIONS, corrupt
from vaelab.use.ood_scores import auroc, nll_scores

ObjectiveFn = Callable[..., float]
OBJECTIVES: Registry[ObjectiveFn] = Registry("objective")


@dataclass
class TrialContext:
    """What an objective may look at: the trained model, its config and data, its per-epoch history."""

    model: VAE
    config: Config
    bundle: DataBundle
    history: list[dict[str, Any]]
    seed: int = 0
    cache: dict[str, Any] = field(default_factory=dict)  # shared between objectives of one trial

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)


def _val(ctx: TrialContext, samples: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    split = ctx.bundle.val if len(ctx.bundle.val) else ctx.bundle.test
    if not len(split):
        raise ConfigError("data: the search needs a validation split; set data.val_fraction > 0")
    return split.take(min(samples or len(split), len(split)))


def _scores(ctx: TrialContext, x: torch.Tensor, y, k: int, likelihood: str | None = None) -> torch.Tensor:
    """Per-sample negative log-likelihood (N,): negative ELBO for k=1, importance-weighted NLL with k samples;
    under the trial's own likelihood, or the one named (so trials trained with different ones compare)."""
    from vaelab.model.likelihoods import likelihood_for

    lik = None if likelihood is None else likelihood_for(ctx.model, likelihood)
    return nll_scores(ctx.model, x, y, k=k, generator=ctx.generator(), likelihood=lik)


def _loss_unit(ctx: TrialContext) -> str:
    from vaelab.training.losses import term_weights
    from vaelab.use.units import training_units

    return training_units(ctx.model.likelihood, ctx.config.loss.reduction, term_weights(ctx.config.loss)).total


def _nll_unit(ctx: TrialContext, likelihood: str | None = None, **_: Any) -> str:
    from vaelab.model.likelihoods import likelihood_for

    lik = ctx.model.likelihood if likelihood is None else likelihood_for(ctx.model, likelihood)
    return f"nats/item under {lik.describe()}"


@OBJECTIVES.register("neg_elbo", direction="minimize", unit=lambda ctx, **_: _loss_unit(ctx),
                     doc="validation loss of the last epoch: the trial's own training loss (its likelihood and term "
                         "weights, KL weight at 1) per sample; the negative ELBO in nats with the default loss")
def neg_elbo(ctx: TrialContext) -> float:
    rows = [r for r in ctx.history if "val_loss" in r]
    if not rows:
        raise ConfigError("objective neg_elbo needs a validation split; set data.val_fraction > 0")
    return float(rows[-1]["val_loss"])


@OBJECTIVES.register("iw_nll", direction="minimize", unit=_nll_unit,
                     doc="importance-weighted NLL on validation data (options: k, samples, likelihood: one for every trial)")
def iw_nll(ctx: TrialContext, *, k: int = 16, samples: int | None = 512, likelihood: str | None = None) -> float:
    x, y = _val(ctx, samples)
    return float(_scores(ctx, x, y, k, likelihood).mean())


@OBJECTIVES.register("ood", direction="minimize", check=lambda options: _check_ood(options),
                     unit=lambda ctx, **_: f"1 - AUROC (0..1) of NLLs in {_nll_unit(ctx)}",
                     doc="1 - AUROC of NLL scores, validation vs an OOD dataset (option data) or corrupted validation data")
def ood(ctx: TrialContext, *, data: dict[str, Any] | None = None, corruption: str = "noise", amount: float = 0.3,
        k: int = 1, samples: int | None = 512) -> float:
    x_in, y_in = _val(ctx, samples)
    if data is not None:
        x_out = _ood_data(ctx, data, samples)
    else:
        x_out = corrupt(x_in, ctx.bundle.value_range, kind=corruption, amount=amount, generator=ctx.generator())
    s_in = _scores(ctx, x_in, y_in, k)
    s_out = _scores(ctx, x_out, y_in[: len(x_out)] if y_in is not None else None, k)
    if not (torch.isfinite(s_in).all() and torch.isfinite(s_out).all()):
        return float("nan")
    return 1.0 - auroc(s_in, s_out)


def _ood_data(ctx: TrialContext, data: dict[str, Any], samples: int | None) -> torch.Tensor:
    from vaelab.data import load_data

    key = "ood_data:" + json.dumps(data, sort_keys=True, default=str) + f":{samples}"
    if key not in ctx.cache:  # the runner shares one cache across its trials: the OOD data loads once
        try:
            bundle = load_data(ood_data_config(data), ctx.seed)
        except VaelabError as e:
            raise ConfigError(f"objective ood: data: {e}") from None
        split = bundle.test if len(bundle.test) else bundle.val
        x, _ = split.take(min(samples or len(split), len(split)))
        if tuple(x.shape[1:]) != tuple(ctx.bundle.shape):
            raise ConfigError(f"objective ood: data {bundle.name!r} has samples of shape {tuple(x.shape[1:])} but the "
                              f"search data has {tuple(ctx.bundle.shape)}; choose OOD data of the same shape")
        ctx.cache[key] = x
    return ctx.cache[key]


def ood_data_config(data: dict[str, Any]):
    from pydantic import ValidationError

    from vaelab.core.config import format_validation_error
    from vaelab.core.data_config import DataConfig

    try:
        return DataConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError("objective ood: data: " + format_validation_error(e, DataConfig)) from None


def _check_ood(options: dict[str, Any]) -> None:
    if options.get("data") is not None:
        ood_data_config(options["data"])
    if options.get("corruption", "noise") not in CORRUPTIONS:
        corrupt(torch.zeros(1), (0.0, 1.0), kind=options["corruption"], amount=0.0, generator=torch.Generator())  # names the valid ones


@OBJECTIVES.register("params", direction="minimize", trained=False, unit="parameters", scale="log", doc="number of trainable parameters")
def params(ctx: TrialContext) -> float:
    return float(ctx.model.num_parameters())


@OBJECTIVES.register("latency", direction="minimize", trained=False, unit="ms", scale="log", doc="median milliseconds for encode+decode of one batch (options: batch, repeats)")
@torch.no_grad()
def latency(ctx: TrialContext, *, batch: int = 64, repeats: int = 5) -> float:
    x, y = _val(ctx, batch)
    model = ctx.model.eval()
    c = model.condition_vector(y) if model.conditional and y is not None else None
    model(x, c)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.decode(model.encode(x, c).mode(), c)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def check_options(name: str, options: dict[str, Any], where: str) -> None:
    """Refuse options objective `name` does not take (or required ones missing), naming `where.<option>`."""
    params = list(inspect.signature(OBJECTIVES.get(name)).parameters.values())[1:]  # after ctx
    valid = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for key in options:
        if key not in valid:
            takes = f"it takes {', '.join(valid)}" if valid else "it takes no options"
            raise ConfigError(f"{where}.{key}: objective {name!r} has no option {key!r}; {takes}")
    check = OBJECTIVES.entry(name).meta.get("check")
    if check is not None:
        check(options)
    missing = [p.name for p in params if p.default is p.empty and p.name not in options and p.kind != p.VAR_KEYWORD]
    if missing:
        raise ConfigError(f"{where}: objective {name!r} needs option(s) {', '.join(missing)}")


def evaluate_objectives(ctx: TrialContext, specs) -> list[float]:
    """The value of every objective spec (`ObjectiveSpec`, options checked when the space loaded), in order."""
    return [float(OBJECTIVES.get(spec.name)(ctx, **spec.options())) for spec in specs]


def objective_units(ctx: TrialContext, specs) -> list[str]:
    """The unit of every objective spec's value for this trial, in order: which likelihood and weighting an NLL or
    loss objective scored it under (an entry's `unit` meta: a string, or `fn(ctx, **options) -> str`)."""
    units = []
    for spec in specs:
        unit = OBJECTIVES.entry(spec.name).meta.get("unit", "")
        units.append(unit(ctx, **spec.options()) if callable(unit) else unit)
    return units
