"""Objectives a search can minimise or maximise, each a function of one trained trial.

Registry entries: `OBJECTIVES.register(name, fn, direction=..., doc=...)` with `fn(ctx, **options) -> float`.
Likelihood scores come from `vaelab.use.ood_scores` (`nll_scores`, `auroc`); until that module exists, the negative ELBO
(one posterior sample) and scikit-learn's ROC AUC stand in.
"""
from __future__ import annotations

import inspect

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from vaelab.core.config import Config
from vaelab.data import DataBundle
from vaelab.core.errors import ConfigError
from vaelab.model.vae import VAE
from vaelab.core.registry import Registry
from vaelab.use.ood_corruptions import corrupt

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


def _scores(ctx: TrialContext, x: torch.Tensor, y, k: int) -> torch.Tensor:
    """Per-sample negative log-likelihood estimate (N,): vaelab.use.ood_scores's importance-weighted NLL when available."""
    try:
        from vaelab.use.ood_scores import nll_scores
    except ImportError:
        nll_scores = None
    if nll_scores is not None:
        return nll_scores(ctx.model, x, y, k=k, generator=ctx.generator())
    return _neg_elbo_scores(ctx, x, y)


@torch.no_grad()
def _neg_elbo_scores(ctx: TrialContext, x: torch.Tensor, y) -> torch.Tensor:
    from vaelab.training.loss_setup import LossSetup
    from vaelab.training.losses import vae_loss

    model = ctx.model.eval()
    setup = LossSetup.from_config(ctx.config, model, ctx.bundle.value_range)
    out = []
    torch.manual_seed(ctx.seed)  # the reparameterisation draws from the global generator
    for i in range(0, len(x), 256):
        xb = x[i:i + 256]
        c = model.condition_vector(y[i:i + 256]) if model.conditional and y is not None else None
        terms = vae_loss(model(xb, c), xb, recon_kind=setup.options.recon_kind, logits=setup.options.logits,
                         reduction="sum", kl_scale=1.0, free_bits=0.0, data_range=setup.options.data_range)
        out.append(terms.per_sample)
    return torch.cat(out)


def _auroc(scores_in: torch.Tensor, scores_out: torch.Tensor) -> float:
    try:
        from vaelab.use.ood_scores import auroc
    except ImportError:
        auroc = None
    if auroc is not None:
        return float(auroc(scores_in, scores_out))
    from sklearn.metrics import roc_auc_score

    labels = [0] * len(scores_in) + [1] * len(scores_out)  # OOD is the positive class: higher NLL = more OOD
    return float(roc_auc_score(labels, torch.cat([scores_in, scores_out]).double().numpy()))


@OBJECTIVES.register("neg_elbo", direction="minimize", doc="validation loss of the last epoch (the negative ELBO per sample with the default loss)")
def neg_elbo(ctx: TrialContext) -> float:
    rows = [r for r in ctx.history if "val_loss" in r]
    if not rows:
        raise ConfigError("objective neg_elbo needs a validation split; set data.val_fraction > 0")
    return float(rows[-1]["val_loss"])


@OBJECTIVES.register("iw_nll", direction="minimize", doc="importance-weighted NLL on validation data (options: k, samples)")
def iw_nll(ctx: TrialContext, *, k: int = 16, samples: int | None = 512) -> float:
    x, y = _val(ctx, samples)
    return float(_scores(ctx, x, y, k).mean())


@OBJECTIVES.register("ood", direction="minimize",
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
    return 1.0 - _auroc(s_in, s_out)


def _ood_data(ctx: TrialContext, data: dict[str, Any], samples: int | None) -> torch.Tensor:
    from vaelab.data import load_data
    from vaelab.core.data_config import DataConfig

    key = "ood_data"
    if key not in ctx.cache:
        try:
            bundle = load_data(DataConfig.model_validate(data), ctx.seed)
        except Exception as e:  # noqa: BLE001 - re-raised with the field named
            raise ConfigError(f"objective ood: data: {e}") from None
        split = bundle.test if len(bundle.test) else bundle.val
        x, _ = split.take(min(samples or len(split), len(split)))
        if tuple(x.shape[1:]) != tuple(ctx.bundle.shape):
            raise ConfigError(f"objective ood: data {bundle.name!r} has samples of shape {tuple(x.shape[1:])} but the "
                              f"search data has {tuple(ctx.bundle.shape)}; choose OOD data of the same shape")
        ctx.cache[key] = x
    return ctx.cache[key]


@OBJECTIVES.register("params", direction="minimize", doc="number of trainable parameters")
def params(ctx: TrialContext) -> float:
    return float(ctx.model.num_parameters())


@OBJECTIVES.register("latency", direction="minimize", doc="median milliseconds for encode+decode of one batch (options: batch, repeats)")
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


def evaluate_objectives(ctx: TrialContext, specs) -> list[float]:
    """The value of every objective spec (`ObjectiveSpec`) for one trained trial, in order."""
    out = []
    for spec in specs:
        fn, options = OBJECTIVES.get(spec.name), spec.options()
        try:  # only the binding of the options is the user's: a TypeError inside fn is a bug and stays one
            inspect.signature(fn).bind(ctx, **options)
        except TypeError as e:
            raise ConfigError(f"objective {spec.name}: {e}; see its options with `vaelab search --help`") from None
        out.append(float(fn(ctx, **options)))
    return out
