"""bf16 vs fp32 training on CPU for an MLP and a conv preset: samples/s ratio and final loss difference.

Run: .venv/bin/python benchmarks/bench_precision.py [--epochs 3] [--limit 3000]
Reference: the same config in fp32, measured in the same run. Data: ../shared/data/mnist (first N samples).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from vaelab.core.config import load_config
from vaelab.training.runs import read_metrics
from vaelab.training.trainer import train

MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
PRESETS = {"mlp (examples-mlp)": {"preset": "examples-mlp"}, "conv (seed003-conv)": {"preset": "seed003-conv"}}


def run(model: dict, precision: str, epochs: int, limit: int, out: Path) -> dict:
    cfg = load_config({"name": "bench", "seed": 0, "model": model,
                       "data": {"name": "mnist", "path": str(MNIST), "limit": limit},
                       "train": {"epochs": epochs, "batch_size": 128, "precision": precision, "device": "cpu",
                                 "progress": False, "figures": False}})
    t0 = time.perf_counter()
    rows = read_metrics(train(cfg, out))
    wall = time.perf_counter() - t0
    steady = rows[1:] or rows  # epoch 1 includes one-off warm-up
    return {"samples_per_s": sum(r["samples_per_s"] for r in steady) / len(steady), "loss": rows[-1]["val_loss"], "wall": wall}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--limit", type=int, default=10000)
    args = ap.parse_args()
    print(f"CPU training, MNIST first {args.limit}, {args.epochs} epochs, batch 128")
    print(f"{'model':22s} {'fp32 samples/s':>15s} {'bf16 samples/s':>15s} {'bf16/fp32':>10s} {'fp32 val loss':>14s} {'bf16 val loss':>14s} {'diff':>7s}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in PRESETS.items():
            r = {p: run(model, p, args.epochs, args.limit, Path(tmp) / f"{name[:4]}-{p}") for p in ("fp32", "bf16")}
            a, b = r["fp32"], r["bf16"]
            diff = (b["loss"] - a["loss"]) / a["loss"]
            print(f"{name:22s} {a['samples_per_s']:15.0f} {b['samples_per_s']:15.0f} {b['samples_per_s'] / a['samples_per_s']:10.2f} "
                  f"{a['loss']:14.3f} {b['loss']:14.3f} {diff:+7.2%}")


if __name__ == "__main__":
    main()
