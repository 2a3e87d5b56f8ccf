"""Shared fixtures: small configs that train in about a second on 2 CPU cores."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Subprocesses (`python -m vaelab ...`, torchrun) import this checkout's code, as pytest's pythonpath does for the
# tests themselves, not whichever checkout `pip install -e` pointed the venv at.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))


def tiny_config(**sections) -> dict:
    """An MLP VAE on 300 sklearn digits, 2 epochs; sections override whole keys."""
    cfg = {
        "name": "tiny",
        "seed": 3,
        "data": {"name": "digits", "limit": 300},
        "model": {
            "encoder": ["Flatten", "Linear_64_32", "ReLU"],
            "heads": {"mu": ["Linear_32_4"], "logvar": ["Linear_32_4"]},
            "decoder": ["Linear_4_32", "ReLU", "Linear_32_64", "Unflatten_1_8_8"],
        },
        "train": {"epochs": 2, "batch_size": 32, "progress": False, "figures": False},
    }
    for k, v in sections.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    return cfg


@pytest.fixture
def tiny():
    return tiny_config


@pytest.fixture
def mnist_dir():
    p = SHARED_DATA / "mnist"
    if not p.is_dir():
        pytest.skip(f"{p} is not present")
    return p
