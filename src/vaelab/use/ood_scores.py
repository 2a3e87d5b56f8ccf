"""Out-of-distribution scores by name (`OOD_SCORES`) and their ranking metrics (OOD is the positive class; higher
score = more OOD).

A score is one registered function `fn(ctx, options) -> (N,)` tensor, with a pydantic options model (its
defaults are the score's defaults; `vaelab ood` fills them from its flags). `ScoreContext` carries the model, the
items and a cached NLL, so scores built on the NLL (complexity) do not recompute it. A score may add notes for
the user (e.g. a regret configuration that made the ELBO worse) to `ctx.notes`. Adding a score: register a
function here (or in its own module imported by this one) and the contract test in tests/test_ood_registry.py
covers it. `nll_scores` is the stable entry point the architecture search uses as an objective.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import Tensor

from vaelab.core.errors import ConfigError, DataError
from vaelab.core.registry import Registry, UnknownNameError
from vaelab.model.vae import VAE
from vaelab.use.likelihood import nll

OOD_SCORES: Registry = Registry("OOD score")


class ScoreOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class ScoreContext:
    """What every score sees. x: (N, *shape) in the model's units; y: labels/conditions for conditional models."""

    model: VAE
    x: Tensor
    y: Tensor | None
    value_range: tuple[float, float]
    k: int = 1  # importance samples for the NLL (1 = negative ELBO)
    seed: int = 0
    notes: dict[str, Any] = field(default_factory=dict)
    _nll: Tensor | None = None

    def generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed + offset)

    def nll(self) -> Tensor:
        """Per-item NLL in nats (N,), computed once."""
        if self._nll is None:
            self._nll = nll_scores(self.model, self.x, self.y, k=self.k, generator=self.generator())
        return self._nll


def nll_scores(model: VAE, x: Tensor, y: Tensor | None = None, *, k: int = 1, batch_size: int = 256,
               generator: torch.Generator | None = None, likelihood=None) -> Tensor:
    """Per-item NLL in nats -> (N,): negative ELBO for k=1, importance-weighted NLL with k samples otherwise,
    under the model's decoder likelihood (or `likelihood`, see vaelab.model.likelihoods.likelihood_for).
    y: labels or condition vectors for conditional models."""
    return nll(model, x, y, k=k, batch_size=batch_size, generator=generator, likelihood=likelihood)


@OOD_SCORES.register("nll", options=ScoreOptions, doc="negative log-likelihood in nats (IW with --k samples)")
def nll_score(ctx: ScoreContext, options: ScoreOptions) -> Tensor:
    return ctx.nll()


class ComplexityOptions(ScoreOptions):
    compressor: str = Field("auto", description="lossless compressor (vaelab.use.complexity.COMPRESSORS); auto: "
                                                "png for images, zlib otherwise")


def eight_bit_likelihood(model: VAE) -> str | None:
    """None when the model's likelihood is a probability over the 256 levels of 8-bit data (its NLL in bits is a
    code length of the 8-bit image); otherwise why the complexity correction does not apply, and the fix."""
    lik = model.likelihood
    if lik.discrete and lik.levels == 256:
        return None
    what = "a density" if not lik.discrete else f"a probability over {lik.levels} values per pixel, not 256"
    return (f"complexity needs the NLL of the 8-bit image, but the run's likelihood is {lik.describe()} ({what}): "
            "its NLL in bits cannot be compared with a compressed length (on MNIST vs Fashion-MNIST a Bernoulli model "
            "ranks them backwards). Train with model.likelihood: categorical256 or logistic_mixture, or leave "
            "complexity out of --scores")


@OOD_SCORES.register("complexity", options=ComplexityOptions, applies=eight_bit_likelihood,
                     doc="NLL in bits minus the compressed length in bits (Serra et al. 2020); needs a likelihood "
                         "over the 256 levels of 8-bit data (categorical256, logistic_mixture)")
def complexity_score(ctx: ScoreContext, options: ComplexityOptions) -> Tensor:
    from vaelab.use.complexity import complexity_corrected

    why = eight_bit_likelihood(ctx.model)
    if why is not None:
        raise ConfigError(why)
    return complexity_corrected(ctx.nll(), ctx.x, ctx.value_range, options.compressor).float()


def not_applicable(name: str, model: VAE) -> str | None:
    """Why score `name` cannot be computed for this model (with the fix), or None."""
    check = OOD_SCORES.entry(name).meta.get("applies")
    return None if check is None else check(model)


def default_scores(model: VAE) -> tuple[tuple[str, ...], dict[str, str]]:
    """(every registered score that applies to the model, {skipped score: why})."""
    skipped = {n: why for n in OOD_SCORES.names() if (why := not_applicable(n, model)) is not None}
    return tuple(n for n in OOD_SCORES.names() if n not in skipped), skipped


class RegretOptions(ScoreOptions):
    """Defaults: Xiao, Yan & Amit (2020)'s compute_LR.py (the encoder re-fitted, decoder frozen)."""

    steps: int = Field(100, ge=1, description="Adam steps on each input's copy of the encoder")
    lr: float = Field(2e-4, gt=0, description="Adam learning rate")
    weight_decay: float = Field(5e-5, ge=0, description="Adam's L2 weight decay")
    k: int = Field(1000, ge=1, description="importance samples for the NLL before and after the re-fit")
    batch_size: int | None = Field(None, ge=1, description="inputs re-fitted together (default: what fits in memory)")


@OOD_SCORES.register("regret", options=RegretOptions,
                     doc="likelihood regret (Xiao et al. 2020): NLL drop when the encoder is re-fitted to the input")
def regret_score(ctx: ScoreContext, options: RegretOptions) -> Tensor:
    """Also notes how the re-fit changed the NLL: a mean below 0 means this configuration made the ELBO worse,
    which `vaelab ood` reports for the in-distribution set instead of averaging it away."""
    from vaelab.use.regret import regret_scores

    r = regret_scores(ctx.model, ctx.x, ctx.y, steps=options.steps, lr=options.lr, weight_decay=options.weight_decay,
                      k=options.k, batch_size=options.batch_size, generator=ctx.generator(1))
    ctx.notes["regret"] = regret_summary(r)
    return r


def regret_summary(r: Tensor) -> dict[str, float | int]:
    """How the re-fit changed each item's NLL (regret = NLL before - NLL after, nats): its mean and median, and the
    items it made worse (regret < 0: the fine-tuned encoder gives a worse bound than the trained one), counted and
    averaged on their own, so a configuration that hurts part of the items is not hidden in the mean."""
    worse = r < 0
    return {"n": int(r.numel()), "mean_nats": float(r.mean()), "median_nats": float(r.median()),
            "n_worse": int(worse.sum()), "share_worse": float(worse.float().mean()),
            "mean_worse_nats": float(r[worse].mean()) if bool(worse.any()) else 0.0}


def score_options(name: str, raw: dict[str, Any] | None) -> ScoreOptions:
    """The validated options of score `name`; errors name the score, the option and the valid ones."""
    try:
        entry = OOD_SCORES.entry(name)
    except UnknownNameError as e:
        raise ConfigError(f"--scores: {e}") from None
    model: type[ScoreOptions] = entry.meta["options"]
    try:
        return model.model_validate(raw or {})
    except ValidationError as e:
        msgs = [f"{name}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()]
        raise ConfigError(f"OOD score options: {'; '.join(msgs)} (valid: {', '.join(model.model_fields) or 'none'})") from None


def compute_scores(ctx: ScoreContext, names: list[str] | tuple[str, ...], options: dict[str, dict] | None = None) -> dict[str, Tensor]:
    """{name: (N,) scores} for the requested scores; options validated per score before any work starts."""
    opts = {n: score_options(n, (options or {}).get(n)) for n in names}
    return {n: OOD_SCORES.get(n)(ctx, opts[n]) for n in names}


def _labels_scores(scores_in, scores_out) -> tuple[np.ndarray, np.ndarray]:
    s_in = np.asarray(torch.as_tensor(scores_in).detach().cpu(), dtype=np.float64).ravel()
    s_out = np.asarray(torch.as_tensor(scores_out).detach().cpu(), dtype=np.float64).ravel()
    if s_in.size == 0 or s_out.size == 0:
        raise DataError(f"need scores for both in- and out-of-distribution items, got {s_in.size} and {s_out.size}")
    scores = np.concatenate([s_in, s_out])
    if not np.isfinite(scores).all():
        raise DataError(f"{int((~np.isfinite(scores)).sum())} scores are not finite (NaN or inf): the model gives "
                        "NaN or inf on these items; check the items and the run's losses")
    labels = np.concatenate([np.zeros(s_in.size), np.ones(s_out.size)])
    return labels, scores


def auroc(scores_in, scores_out) -> float:
    """Area under the ROC curve with OOD as the positive class (0.5 = chance, 1 = perfect separation)."""
    from sklearn.metrics import roc_auc_score

    labels, scores = _labels_scores(scores_in, scores_out)
    return float(roc_auc_score(labels, scores))


def auprc(scores_in, scores_out) -> float:
    """Average precision with OOD as the positive class."""
    from sklearn.metrics import average_precision_score

    labels, scores = _labels_scores(scores_in, scores_out)
    return float(average_precision_score(labels, scores))


def fpr_at_tpr(scores_in, scores_out, tpr: float = 0.95) -> float:
    """Fraction of in-distribution items flagged when the threshold catches `tpr` of the OOD items."""
    from sklearn.metrics import roc_curve

    labels, scores = _labels_scores(scores_in, scores_out)
    fpr, tpr_curve, _ = roc_curve(labels, scores)
    return float(fpr[np.searchsorted(tpr_curve, tpr, side="left")])


__all__ = ["OOD_SCORES", "ScoreContext", "ScoreOptions", "compute_scores", "score_options", "nll_scores", "auroc",
           "default_scores", "not_applicable", "eight_bit_likelihood", "regret_summary",
           "auprc", "fpr_at_tpr"]
