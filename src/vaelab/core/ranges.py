"""Range rules for config values that are free-form mappings (scheduler kwargs) or strings (devices).

Typed fields carry their ranges in `config.py` (`Field(gt=0)`, finite floats everywhere); these are the values
torch would otherwise accept and misuse (a negative `max_lr` trains with a negative learning rate, a
`step_size` of -1 never decays) or reject with a message that names no field ("'int' object is not iterable").
"""
from __future__ import annotations

import math
import re
from typing import Any, Callable

_DEVICE = re.compile(r"auto|cpu|mps|(cuda|xpu)(:\d+)?")


def _int_at_least(low: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low), f"an integer >= {low}"


def _number(*, low: float = 0.0, strict: bool = False, high: float | None = None,
            many: bool = False) -> tuple[Callable[[Any], bool], str]:
    def one(v: Any) -> bool:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        return ok and (v > low if strict else v >= low) and (high is None or v < high)

    what = f"a finite number {'>' if strict else '>='} {low:g}" + (f" and < {high:g}" if high is not None else "")
    if many:
        return (lambda v: one(v) or (isinstance(v, list) and bool(v) and all(map(one, v)))), what + " (or a list of them)"
    return one, what


def _milestones(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in v)


# torch.optim.lr_scheduler keyword -> (check, what it must be); keywords not listed are left to torch
SCHEDULER_KWARGS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "step_size": _int_at_least(1),
    "T_max": _int_at_least(1),
    "step_size_up": _int_at_least(1),
    "step_size_down": ((lambda v: v is None or _int_at_least(1)[0](v)), "null or an integer >= 1"),
    "patience": _int_at_least(0),
    "cooldown": _int_at_least(0),
    "milestones": (_milestones, "a list of epoch numbers >= 1, e.g. [30, 60]"),
    "gamma": _number(strict=True),
    "eta_min": _number(),
    "base_lr": _number(many=True),
    "min_lr": _number(many=True),
    "max_lr": _number(strict=True, many=True),
    "factor": _number(strict=True, high=1.0),
    "pct_start": _number(strict=True, high=1.0),
    "div_factor": _number(strict=True),
    "final_div_factor": _number(strict=True),
    "threshold": _number(),
    "eps": _number(),
    "base_momentum": _number(many=True),
    "max_momentum": _number(many=True),
}


def check_scheduler_kwargs(kwargs: dict[str, Any]) -> None:
    """Raise ValueError naming `train.scheduler.kwargs.KEY` for a value outside its range."""
    for key, value in kwargs.items():
        rule = SCHEDULER_KWARGS.get(key)
        if rule is not None and not rule[0](value):
            raise ValueError(f"train.scheduler.kwargs.{key} must be {rule[1]}, got {value!r}")


def check_device(value: str) -> str:
    if not _DEVICE.fullmatch(value):
        raise ValueError(f"train.device must be auto, cpu, cuda, cuda:N, mps, xpu or xpu:N, got {value!r}")
    return value
