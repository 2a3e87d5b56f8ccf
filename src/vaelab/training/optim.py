"""Optimizers and learning-rate schedulers by name, behind one `Stepper` that hides when each one steps."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Literal

import torch
from torch.optim import lr_scheduler as lrs

from vaelab.core.errors import ConfigError, TrainingError
from vaelab.core.registry import UnknownNameError
from vaelab.core.vocab import LR_SCHEDULERS, OPTIMIZERS

OPTIMIZERS.register("adam", torch.optim.Adam, doc="torch.optim.Adam")
OPTIMIZERS.register("adamw", torch.optim.AdamW, doc="torch.optim.AdamW (decoupled weight decay)")
OPTIMIZERS.register("sgd", torch.optim.SGD, doc="torch.optim.SGD")
OPTIMIZERS.register("rmsprop", torch.optim.RMSprop, doc="torch.optim.RMSprop")

# Set through their own config fields, never through kwargs.
_OWN_FIELDS = {"lr": "train.lr", "weight_decay": "train.optimizer.weight_decay"}


def _init_params(cls: type) -> dict[str, inspect.Parameter]:
    sig = inspect.signature(cls.__init__)
    return {n: p for n, p in sig.parameters.items()
            if n not in ("self", "params", "optimizer") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def make_optimizer(
    name: str,
    params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
    *,
    lr: float,
    weight_decay: float = 0.0,
    kwargs: dict[str, Any] | None = None,
) -> torch.optim.Optimizer:
    """Build a torch optimizer by registry name; `kwargs` are checked against its constructor."""
    try:
        cls = OPTIMIZERS.get(name)
    except UnknownNameError as e:
        raise ConfigError(f"train.optimizer.name: {e}") from None
    kwargs = dict(kwargs or {})
    valid = [n for n in _init_params(cls) if n not in _OWN_FIELDS]
    for key in kwargs:
        if key in _OWN_FIELDS:
            raise ConfigError(f"train.optimizer.kwargs.{key}: set it with {_OWN_FIELDS[key]} instead")
        if key not in valid:
            raise ConfigError(
                f"train.optimizer.kwargs.{key}: not an argument of {cls.__name__}. Valid: {', '.join(valid)}"
            )
    try:
        return cls(params, lr=lr, weight_decay=weight_decay, **kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"train.optimizer ({name}): {e}") from None


# --- learning-rate schedulers ---------------------------------------------------------------------------------

Interval = Literal["batch", "epoch"]
DefaultsFn = Callable[[torch.optim.Optimizer, int, int], dict[str, Any]]


@dataclass(frozen=True)
class SchedulerSpec:
    """How to build one scheduler: the class, when it steps, and defaults derived from the run."""

    cls: type | None  # None: the learning rate stays constant
    interval: Interval
    defaults: DefaultsFn = lambda opt, epochs, steps: {}  # noqa: E731
    managed: tuple[str, ...] = ()  # constructor args set from the run, not from kwargs
    doc: str = ""


def _lr(opt: torch.optim.Optimizer) -> float:
    return float(opt.param_groups[0]["lr"])


def _has_momentum(opt: torch.optim.Optimizer) -> bool:
    return float(opt.defaults.get("momentum", 0.0) or 0.0) > 0.0


_SPECS = {
    "constant": SchedulerSpec(None, "epoch", doc="no schedule: the learning rate stays at train.lr"),
    "steplr": SchedulerSpec(lrs.StepLR, "epoch", lambda o, e, s: {"step_size": max(1, e // 3)},
                            doc="StepLR per epoch; default step_size = epochs // 3"),
    "multisteplr": SchedulerSpec(lrs.MultiStepLR, "epoch",
                                 lambda o, e, s: {"milestones": sorted({max(1, e // 2), max(1, 3 * e // 4)})},
                                 doc="MultiStepLR per epoch; default milestones at 1/2 and 3/4 of the epochs"),
    "exponential": SchedulerSpec(lrs.ExponentialLR, "epoch", lambda o, e, s: {"gamma": 0.95},
                                 doc="ExponentialLR per epoch; default gamma 0.95"),
    "cosine": SchedulerSpec(lrs.CosineAnnealingLR, "epoch", lambda o, e, s: {"T_max": e},
                            doc="CosineAnnealingLR per epoch; default T_max = epochs"),
    "cyclic": SchedulerSpec(
        lrs.CyclicLR, "batch",
        lambda o, e, s: {"base_lr": _lr(o) / 10, "max_lr": _lr(o), "step_size_up": max(1, e * s // 8),
                         "cycle_momentum": _has_momentum(o)},
        doc="CyclicLR per batch; defaults base_lr = lr/10, max_lr = lr, 4 cycles over training, "
            "cycle_momentum only when the optimizer has momentum > 0"),
    "plateau": SchedulerSpec(lrs.ReduceLROnPlateau, "epoch",
                             doc="ReduceLROnPlateau per epoch on the validation loss (the train loss without one)"),
    "onecycle": SchedulerSpec(
        lrs.OneCycleLR, "batch", lambda o, e, s: {"max_lr": _lr(o), "total_steps": e * s},
        managed=("total_steps", "epochs", "steps_per_epoch"),
        doc="OneCycleLR per batch; default max_lr = lr, total_steps = epochs * steps_per_epoch"),
}
for _name, _spec in _SPECS.items():
    LR_SCHEDULERS.register(_name, _spec, doc=_spec.doc)
# Aliases: "none", and the lower-cased torch class names seed 003's configs use.
for _alias, _target in {"none": "constant", "cosineannealinglr": "cosine", "cycliclr": "cyclic",
                        "exponentiallr": "exponential", "reducelronplateau": "plateau",
                        "onecyclelr": "onecycle"}.items():
    LR_SCHEDULERS.register(_alias, _SPECS[_target], doc=f"alias of {_target}", alias_of=_target)


class Stepper:
    """Steps a scheduler at the right moments: call `step_batch()` after every optimizer step and
    `step_epoch(val_loss, train_loss=...)` after every epoch; each is a no-op for schedulers of the other interval.

    `plateau` watches `val_loss`, or `train_loss` when there is no validation split.
    """

    def __init__(self, name: str, scheduler: Any | None, interval: Interval, optimizer: torch.optim.Optimizer):
        self.name, self.scheduler, self.interval, self.optimizer = name, scheduler, interval, optimizer

    @property
    def is_plateau(self) -> bool:
        return isinstance(self.scheduler, lrs.ReduceLROnPlateau)

    def lrs(self) -> list[float]:
        """The current learning rate of each param group."""
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def step_batch(self) -> None:
        if self.scheduler is None or self.interval != "batch":
            return
        total = getattr(self.scheduler, "total_steps", None)
        if total is not None and self.scheduler.last_epoch >= total - 1:
            return  # OneCycleLR is at its final rate; past its end it would overshoot, then raise
        self.scheduler.step()

    def step_epoch(self, val_loss: float | None = None, *, train_loss: float | None = None) -> None:
        if self.scheduler is None or self.interval != "epoch":
            return
        if self.is_plateau:
            metric = val_loss if val_loss is not None else train_loss
            if metric is None:
                raise TrainingError("the plateau scheduler needs a validation or training loss each epoch")
            self.scheduler.step(float(metric))
        else:
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return {} if self.scheduler is None else self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state)

    def __repr__(self) -> str:
        return f"Stepper({self.name!r}, interval={self.interval!r})"


def make_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    kwargs: dict[str, Any] | None = None,
    *,
    epochs: int,
    steps_per_epoch: int,
) -> Stepper:
    """Build a learning-rate scheduler by registry name; user `kwargs` override the run-derived defaults."""
    try:
        spec = LR_SCHEDULERS.get(name)
    except UnknownNameError as e:
        raise ConfigError(f"train.scheduler.name: {e}") from None
    kwargs = dict(kwargs or {})
    if spec.cls is None:
        if kwargs:
            raise ConfigError(f"train.scheduler.kwargs.{next(iter(kwargs))}: the {name!r} scheduler takes no kwargs")
        return Stepper(name, None, spec.interval, optimizer)
    params = _init_params(spec.cls)
    valid = [n for n in params if n not in spec.managed and n != "last_epoch"]
    for key in kwargs:
        if key in spec.managed:
            raise ConfigError(f"train.scheduler.kwargs.{key}: set from train.epochs and the batches per epoch")
        if key not in valid:
            raise ConfigError(
                f"train.scheduler.kwargs.{key}: not an argument of {spec.cls.__name__}. Valid: {', '.join(valid)}"
            )
    args = {**spec.defaults(optimizer, epochs, steps_per_epoch), **kwargs}
    missing = [n for n, p in params.items() if p.default is inspect.Parameter.empty and n not in args]
    if missing:
        raise ConfigError(f"train.scheduler.kwargs.{missing[0]} is required by {spec.cls.__name__}")
    try:
        scheduler = spec.cls(optimizer, **args)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"train.scheduler ({name}): {e}") from None
    return Stepper(name, scheduler, spec.interval, optimizer)
