"""Argument checks shared by the layer builders; `build_layer` prefixes the failing token to each message."""
from __future__ import annotations

from vaelab.core.errors import ModelError


def positive(**values: int) -> None:
    """Raise unless every value is >= 1 (a trailing '_' in a name is dropped: `in_` reads as `in`)."""
    for name, v in values.items():
        if v < 1:
            raise ModelError(f"{name.rstrip('_')} must be >= 1, got {v}")


def non_negative(**values: int) -> None:
    for name, v in values.items():
        if v < 0:
            raise ModelError(f"{name.rstrip('_')} must be >= 0, got {v}")


def probability(name: str, p: float) -> None:
    if not 0.0 <= p < 1.0:
        raise ModelError(f"{name} must be in [0, 1), got {p} (it is a drop probability, e.g. 0.1)")


def divisors(n: int, up_to: int) -> list[int]:
    """The divisors of `n` that are <= `up_to`, in increasing order.

    O(up_to) whatever `n` is: error messages list these as suggestions, and an error path must stay fast
    for a value such as 10**10 (a range over every candidate up to `n` hung `vaelab check`).
    """
    return [d for d in range(1, min(n, up_to) + 1) if n % d == 0]
