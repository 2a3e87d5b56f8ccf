"""KL-weight schedules: `make_schedule(kind, **params)(step, total_steps) -> float`.

`step` counts optimizer steps from 0; `total_steps` is the length of training. Steps past the end hold the
last value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from vaelab.core.errors import ConfigError
from vaelab.core.vocab import KL_SCHEDULES, build_dataclass_entry

_WHERE = "loss.kl_schedule"


class Schedule(Protocol):
    def __call__(self, step: int, total_steps: int) -> float: ...


SCHEDULES = KL_SCHEDULES


def _number(name: str, value: Any, *, low: float | None = None, high: float | None = None,
            low_open: bool = False) -> float:
    """Validate a real-valued parameter; the error names `loss.kl_schedule.<name>`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{_WHERE}.{name} must be a finite number, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise ConfigError(f"{_WHERE}.{name} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and value > high:
        raise ConfigError(f"{_WHERE}.{name} must be <= {high}, got {value}")
    return float(value)


def _integer(name: str, value: Any, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{_WHERE}.{name} must be an integer >= {low}, got {value!r}")
    return value


def _check_total(total_steps: int) -> None:
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")


@SCHEDULES.register("constant", doc="value at every step")
@dataclass(frozen=True)
class Constant:
    value: float = 1.0

    def __post_init__(self) -> None:
        _number("value", self.value, low=0.0)

    def __call__(self, step: int, total_steps: int) -> float:
        return float(self.value)


@SCHEDULES.register("linear", doc="start -> stop over the warm-up, then stop (warmup_fraction or warmup_steps)")
@dataclass(frozen=True)
class Linear:
    start: float = 0.0
    stop: float = 1.0
    warmup_fraction: float | None = None  # 0.5 when neither warm-up parameter is given
    warmup_steps: int | None = None

    def __post_init__(self) -> None:
        _number("start", self.start, low=0.0)
        _number("stop", self.stop, low=0.0)
        if self.warmup_fraction is not None and self.warmup_steps is not None:
            raise ConfigError(f"{_WHERE}: give warmup_fraction or warmup_steps, not both")
        if self.warmup_fraction is not None:
            _number("warmup_fraction", self.warmup_fraction, low=0.0, high=1.0)
        if self.warmup_steps is not None:
            _integer("warmup_steps", self.warmup_steps, low=0)

    def __call__(self, step: int, total_steps: int) -> float:
        _check_total(total_steps)
        if self.warmup_steps is not None:
            warmup = float(self.warmup_steps)
        else:
            warmup = (0.5 if self.warmup_fraction is None else self.warmup_fraction) * total_steps
        progress = 1.0 if warmup <= 0 else min(1.0, max(step, 0) / warmup)
        return self.start + (self.stop - self.start) * progress


@SCHEDULES.register("cyclical", doc="n_cycles periods, each ramping start -> stop over its first `ratio` (Fu et al. 2019)")
@dataclass(frozen=True)
class Cyclical:
    """Closed form of `frange_cycle_linear(n_iter, start, stop, n_cycle, ratio)` from Fu et al. 2019.

    Period p = total/n_cycles; cycle c starts at step floor(c*p); within it the weight rises by
    (stop - start)/(p*ratio) per step while it stays <= stop, then holds stop.
    """

    n_cycles: int = 4
    ratio: float = 0.5
    start: float = 0.0
    stop: float = 1.0

    def __post_init__(self) -> None:
        _integer("n_cycles", self.n_cycles, low=1)
        _number("ratio", self.ratio, low=0.0, high=1.0, low_open=True)
        _number("start", self.start, low=0.0)
        _number("stop", self.stop, low=0.0)

    def __call__(self, step: int, total_steps: int) -> float:
        _check_total(total_steps)
        t = min(max(step, 0), total_steps - 1)
        period = total_steps / self.n_cycles
        c = min(int(t / period), self.n_cycles - 1)  # the cycle whose start floor(c*p) is the last one <= t
        while c + 1 < self.n_cycles and int((c + 1) * period) <= t:
            c += 1
        while c > 0 and int(c * period) > t:
            c -= 1
        i = t - int(c * period)
        rise = (self.stop - self.start) / (period * self.ratio)
        value = self.start + i * rise
        # The reference loop runs while v <= stop; a falling schedule (stop < start) never enters it.
        if self.stop >= self.start and value <= self.stop + 1e-12 * max(1.0, abs(self.stop)):
            return min(value, self.stop)
        return self.stop


def make_schedule(kind: str, **params: Any) -> Schedule:
    """Build a KL-weight schedule; errors name `loss.kl_schedule.<param>` and list the valid parameters."""
    return build_dataclass_entry(KL_SCHEDULES, kind, _WHERE, params)
