"""Latent bits (32 = float, 8, 6, 4) against reconstruction error on MNIST.

Run: .venv/bin/python benchmarks/bench_quant_bits.py [--epochs 15] [--limit 4742]
One MLP VAE trained in float; its posterior means quantized after training (vaelab.model.quantize.
recon_error_vs_bits, range = the largest |mean| seen), and, as a second row, a model trained with the 4-bit
quantizer in the loop (straight-through). Reference: the float (32-bit) error of the same model, same run.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from vaelab.core.config import load_config
from vaelab.data import load_data
from vaelab.model.quantize import recon_error_vs_bits
from vaelab.training.runs import load_run
from vaelab.training.trainer import train

MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
BITS = [32, 8, 6, 4]


def config(epochs: int, limit: int, quantize: dict | None = None):
    model = {"preset": "mlp", "preset_args": {"hidden": [512, 256], "latent": 16}}
    if quantize:
        model["quantize"] = quantize
    return load_config({"name": "bits", "seed": 0, "model": model,
                        "data": {"name": "mnist", "path": str(MNIST), "limit": limit},
                        "train": {"epochs": epochs, "batch_size": 128, "progress": False, "figures": False, "device": "cpu"}})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--limit", type=int, default=4742)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config(args.epochs, args.limit)
        x, _ = load_data(cfg.data, cfg.seed).test.take(1000)
        model = load_run(train(cfg, Path(tmp) / "float")).model
        with torch.no_grad():
            r = float(model.encode(x).mean.abs().max())
        post = recon_error_vs_bits(model, x, BITS, range=r)
        qat_cfg = config(args.epochs, args.limit, {"latent": {"kind": "uniform", "bits": 4, "range": 3.0}})
        qat = load_run(train(qat_cfg, Path(tmp) / "qat4")).model
        with torch.no_grad():
            qat_err = float(((qat(x, sample=False).x_hat - x) ** 2).mean())
    print(f"MNIST first {args.limit}, MLP 784-512-256-16, {args.epochs} epochs; per-pixel MSE on 1000 test images")
    print(f"{'latent bits':>12s} {'MSE':>10s} {'vs float':>9s}")
    for b in BITS:
        print(f"{b:>12d} {post[b]:10.5f} {post[b] / post[32]:9.3f}")
    print(f"{'4 (trained)':>12s} {qat_err:10.5f} {qat_err / post[32]:9.3f}   (4-bit quantizer in the training loop, range 3)")


if __name__ == "__main__":
    main()
