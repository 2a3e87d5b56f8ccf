"""Architecture search: NSGA-II on genes (Optuna) with surrogate pre-screening, likelihood and OOD objectives.

Names are imported on first use, so that `vaelab.search.storage` (what a worker needs to reach a database) does
not pull in torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"OBJECTIVES": "vaelab.search.objectives", "TrialContext": "vaelab.search.objectives",
         "SearchResult": "vaelab.search.runner", "open_study": "vaelab.search.runner", "run_search": "vaelab.search.runner",
         "SearchSpace": "vaelab.search.space", "load_space": "vaelab.search.space"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vaelab.search' has no attribute {name!r}")


__all__ = list(_LAZY)
