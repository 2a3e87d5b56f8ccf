"""Early stopping of hopeless trials with an Optuna pruner on the per-epoch validation loss.

Optuna's `Trial.report`/`should_prune` refuse multi-objective studies, so the pruner runs on a small in-memory
single-objective shadow study holding the validation-loss curves of the finished trials (kept in their user
attribute `val_curve`); the pruner's decision then applies to the real trial. Registry `PRUNERS` maps names to
factories `fn(**options) -> BasePruner | None`; `none` prunes nothing.
"""
from __future__ import annotations

import contextlib
import inspect
from typing import Any, Callable, Iterator

import optuna
from optuna.trial import TrialState

from vaelab.core.errors import ConfigError
from vaelab.core.registry import Registry, UnknownNameError

PrunerFactory = Callable[..., "optuna.pruners.BasePruner | None"]
PRUNERS: Registry[PrunerFactory] = Registry("pruner")
PRUNERS.register("median", optuna.pruners.MedianPruner, doc="stop below the median curve (n_startup_trials, n_warmup_steps)",
                 example={"n_startup_trials": 2})
PRUNERS.register("percentile", optuna.pruners.PercentilePruner, doc="stop outside the best percentile (percentile, ...)",
                 example={"percentile": 25.0, "n_startup_trials": 2})
PRUNERS.register("successive_halving", optuna.pruners.SuccessiveHalvingPruner, doc="asynchronous successive halving",
                 example={})
PRUNERS.register("hyperband", optuna.pruners.HyperbandPruner, doc="Hyperband (min_resource, max_resource, reduction_factor)",
                 example={"min_resource": 1, "max_resource": 4})
PRUNERS.register("threshold", optuna.pruners.ThresholdPruner, doc="stop when the loss exceeds upper (upper, n_warmup_steps)",
                 example={"upper": 1.0})


@PRUNERS.register("none", doc="never stop a trial early", example={})
def no_pruner() -> None:
    return None


CURVE_ATTR = "val_curve"


@contextlib.contextmanager
def optuna_quiet() -> Iterator[None]:
    """Optuna's log level at WARNING inside the block, restored after (the caller's level is theirs)."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


class EpochPruner:
    """Per-trial pruning check: `step(epoch, val_loss) -> bool` (True: prune now)."""

    def __init__(self, pruner: optuna.pruners.BasePruner, finished: list[optuna.trial.FrozenTrial]):
        with optuna_quiet():  # "A new study created in memory" for every trial otherwise
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
        return bool(self.trial.should_prune())


def check_pruner(name: str, options: dict[str, Any]) -> None:
    """Refuse an unknown pruner or an option its factory does not take, naming `pruner.<option>`."""
    if name not in PRUNERS:
        raise ConfigError(f"search.pruner.name: {UnknownNameError('pruner', name, PRUNERS.names())}")
    params = inspect.signature(PRUNERS.get(name)).parameters
    for key in options:
        if key not in params:
            raise ConfigError(f"search.pruner.{key}: pruner {name!r} has no option {key!r}; it takes "
                              f"{', '.join(params) or 'no options'}")


def make_pruner(name: str, options: dict[str, Any]) -> optuna.pruners.BasePruner | None:
    check_pruner(name, options)
    try:
        return PRUNERS.get(name)(**options)
    except ValueError as e:  # Optuna checks the values (e.g. ThresholdPruner needs lower or upper)
        raise ConfigError(f"search.pruner: {name}: {e}") from None
