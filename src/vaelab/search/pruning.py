"""Early stopping of hopeless trials with an Optuna pruner on the per-epoch validation loss.

Optuna's `Trial.report`/`should_prune` refuse multi-objective studies, so the pruner runs on a small in-memory
single-objective shadow study holding the validation-loss curves of the finished trials (kept in their user
attribute `val_curve`); the pruner's decision then applies to the real trial.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from vaelab.core.errors import ConfigError
from vaelab.core.registry import Registry

PRUNERS: Registry[Callable[..., optuna.pruners.BasePruner]] = Registry("pruner")
PRUNERS.register("median", optuna.pruners.MedianPruner, doc="stop below the median curve (n_startup_trials, n_warmup_steps)")
PRUNERS.register("percentile", optuna.pruners.PercentilePruner, doc="stop outside the best percentile (percentile, ...)")
PRUNERS.register("successive_halving", optuna.pruners.SuccessiveHalvingPruner, doc="asynchronous successive halving")
PRUNERS.register("hyperband", optuna.pruners.HyperbandPruner, doc="Hyperband (min_resource, max_resource, reduction_factor)")
PRUNERS.register("threshold", optuna.pruners.ThresholdPruner, doc="stop when the loss exceeds upper (upper, n_warmup_steps)")

CURVE_ATTR = "val_curve"


class EpochPruner:
    """Per-trial pruning check: `step(epoch, val_loss) -> bool` (True: prune now)."""

    def __init__(self, pruner: optuna.pruners.BasePruner, finished: list[optuna.trial.FrozenTrial]):
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.shadow = optuna.create_study(direction="minimize", pruner=pruner)
        for t in finished:
            curve = t.user_attrs.get(CURVE_ATTR)
            if not curve:
                continue
            done = t.state == TrialState.COMPLETE
            self.shadow.add_trial(optuna.trial.create_trial(
                state=TrialState.COMPLETE if done else TrialState.PRUNED, value=float(curve[-1]) if done else None,
                intermediate_values={i + 1: float(v) for i, v in enumerate(curve)}))
        self.trial = self.shadow.ask()

    def step(self, epoch: int, val_loss: float) -> bool:
        self.trial.report(float(val_loss), epoch)
        return self.trial.should_prune()


def make_pruner(name: str, options: dict[str, Any]) -> optuna.pruners.BasePruner | None:
    if name == "none":
        return None
    factory = PRUNERS.get(name)
    try:  # only the binding of the options is the user's: a TypeError inside the factory is a bug
        inspect.signature(factory).bind(**options)
    except TypeError as e:
        raise ConfigError(f"search.pruner: {name}: {e}") from None
    try:
        return factory(**options)
    except ValueError as e:  # optuna's own range checks, e.g. percentile outside 0..100
        raise ConfigError(f"search.pruner: {name}: {e}") from None
