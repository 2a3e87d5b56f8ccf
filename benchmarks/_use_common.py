"""Shared by the use benchmarks: a small MNIST model trained in the benchmark itself, and MNIST/Fashion test items."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def train_mnist_mlp(epochs: int = 2, limit: int = 4742, seed: int = 0):
    """examples-mlp (784-400-20, Bernoulli) on the first MNIST training images; returns the loaded Run."""
    from vaelab.core.config import load_config
    from vaelab.training.runs import load_run
    from vaelab.training.trainer import train

    cfg = load_config({"name": "bench-mnist-mlp", "seed": seed, "model": {"preset": "examples-mlp"},
                       "data": {"name": "mnist", "path": str(SHARED / "mnist"), "limit": limit},
                       "train": {"epochs": epochs, "batch_size": 128, "progress": False, "figures": False}})
    out = Path(tempfile.mkdtemp(prefix="vaelab-bench-")) / "run"
    t = time.perf_counter()
    train(cfg, out)
    print(f"trained {cfg.model.preset} for {epochs} epochs on {limit} MNIST images in {time.perf_counter() - t:.1f} s")
    return load_run(out)


def test_images(run, name: str, n: int):
    from vaelab.use.inputs import dataset_items

    items = dataset_items(run, f"{name}:{SHARED / name}", limit=n)
    return items.x, items.y


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t
