"""Measure finished recipe runs on their held-out test split (what configs/README.md's table reports).

    .venv/bin/python configs/measure.py runs/seed002-vae-mnist runs/seed002-cvae-mnist ...

For each run: the test loss per sample (the run's own loss with the KL weight fully on, i.e. the negative ELBO
in nats for `reduction: sum` recipes), its recon and KL parts, the training wall time from metrics.jsonl, and for
5-D point data (colored pi) the distribution match of 5,000 samples against the data (MMD with an RBF kernel and
the per-dimension Wasserstein-1 distance), with the rendered image written to RUN/generated_points.png.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from vaelab.data import load_data
from vaelab.training.runs import load_run, read_metrics
from vaelab.training.loss_setup import LossSetup


@torch.no_grad()
def test_loss(run, bundle, batch_size: int = 500) -> dict[str, float]:
    model = run.model.eval()
    setup = LossSetup.from_config(run.config, model, bundle.value_range)
    split = bundle.test if bundle.test is not None else bundle.val
    torch.manual_seed(0)  # the posterior sample inside forward()
    sums, n = np.zeros(3), 0
    for x, y in split.batches(batch_size, shuffle=False):
        c = model.condition_vector(y) if model.conditional else None
        t = setup(model(x, c), x, 1.0)
        sums += np.array([float(t.total), float(t.recon), float(t.kl)]) * len(x)
        n += len(x)
    total, recon, kl = sums / n
    return {"n": n, "loss": total, "recon": recon, "kl": kl}


def rbf_mmd(a: np.ndarray, b: np.ndarray, n: int = 2000, seed: int = 0) -> float:
    """Unbiased MMD^2 with an RBF kernel whose bandwidth is the median pairwise distance of the data."""
    rng = np.random.default_rng(seed)
    a = torch.from_numpy(a[rng.permutation(len(a))[:n]]).double()
    b = torch.from_numpy(b[rng.permutation(len(b))[:n]]).double()
    d_aa, d_bb, d_ab = torch.cdist(a, a) ** 2, torch.cdist(b, b) ** 2, torch.cdist(a, b) ** 2
    h = torch.median(torch.cdist(a, a)) ** 2
    k_aa, k_bb, k_ab = (torch.exp(-d / (2 * h)) for d in (d_aa, d_bb, d_ab))
    m = len(a)
    return float((k_aa.sum() - m) / (m * (m - 1)) + (k_bb.sum() - m) / (m * (m - 1)) - 2 * k_ab.mean())


def distribution_match(real: np.ndarray, fake: np.ndarray) -> dict[str, object]:
    from scipy.stats import wasserstein_distance

    w1 = [float(wasserstein_distance(real[:, d], fake[:, d])) for d in range(real.shape[1])]
    return {"mmd2": rbf_mmd(real, fake), "w1_per_dim": [round(v, 4) for v in w1], "w1_mean": float(np.mean(w1))}


@torch.no_grad()
def point_report(run, bundle, out: Path, n: int = 5000) -> dict[str, object]:
    from PIL import Image

    from vaelab.data import render_points

    real = torch.cat([s.take(len(s))[0] for s in bundle.splits().values()]).numpy()
    fake = run.model.eval().sample(n, generator=torch.Generator().manual_seed(0)).numpy()
    Image.fromarray(render_points(fake)).save(out)
    report = distribution_match(real, fake)
    # reference: two halves of the data itself (the best a model could score with this many points)
    half = len(real) // 2
    report["data_vs_data"] = distribution_match(real[:half], real[half:])
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    args = ap.parse_args()
    for path in args.runs:
        run = load_run(path)
        bundle = load_data(run.config.data, run.config.seed)
        row: dict[str, object] = {"run": str(path), **test_loss(run, bundle)}
        hist = read_metrics(path)
        row["epochs"] = len(hist)
        row["train_seconds"] = round(sum(h["seconds"] for h in hist), 1)
        if tuple(bundle.shape) == (5,):
            row["points"] = point_report(run, bundle, path / "generated_points.png")
        print(json.dumps(row))


if __name__ == "__main__":
    main()
