"""Importance-weighted NLL, images/s at K=200, on examples-mlp (784-400-20) and MNIST test images.

Reference: pythae 0.1.2's `VAE.get_nll`, reimplemented here line by line (pythae is not installed: it would pull
its own torch build): for each image, repeat it `batch_size`=100 times, encode the repeats, draw, decode, BCE on
the probabilities, in K/100 chunks, then logsumexp. Ours (vaelab.use.ood_scores.nll_scores): encode each batch once, draw
all K samples at once, decode K*B rows in memory-bounded chunks. Both in torch.no_grad on the same model.
Goal: >= 3x. Run: .venv/bin/python benchmarks/bench_iwae.py [--n 200] [--k 200]
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _use_common import test_images, timed, train_mnist_mlp  # noqa: E402

from vaelab.use.ood_scores import nll_scores  # noqa: E402


@torch.no_grad()
def pythae_get_nll(model, data: torch.Tensor, n_samples: int = 200, batch_size: int = 100) -> np.ndarray:
    """pythae.models.VAE.get_nll (0.1.2), per image, with our model's encoder/decoder; returns per-image NLL."""
    if n_samples <= batch_size:
        n_full_batch = 1
    else:
        n_full_batch = n_samples // batch_size
        n_samples = batch_size
    log_p = []
    for i in range(len(data)):
        x = data[i].unsqueeze(0)
        log_p_x = []
        for _ in range(n_full_batch):
            x_rep = torch.cat(batch_size * [x])
            post = model.encode(x_rep)
            mu, log_var = post.mean, post.logvar
            std = torch.exp(0.5 * log_var)
            z = mu + std * torch.randn_like(std)
            log_q_z_given_x = -0.5 * (log_var + (z - mu) ** 2 / torch.exp(log_var)).sum(dim=-1)
            log_p_z = -0.5 * (z**2).sum(dim=-1)
            recon_x = model.decode(z)
            log_p_x_given_z = -F.binary_cross_entropy(recon_x.reshape(x_rep.shape[0], -1), x_rep.reshape(x_rep.shape[0], -1),
                                                      reduction="none").sum(dim=-1)
            log_p_x.append(log_p_x_given_z + log_p_z - log_q_z_given_x)  # pythae drops the 2*pi constants (they cancel)
        log_p_x = torch.cat(log_p_x)
        log_p.append((torch.logsumexp(log_p_x, 0) - np.log(len(log_p_x))).item())
    return -np.asarray(log_p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="MNIST test images")
    ap.add_argument("--k", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    torch.manual_seed(0)
    run = train_mnist_mlp(args.epochs)
    x, _ = test_images(run, "mnist", args.n)
    model = run.model
    nll_scores(model, x[:8], k=args.k)  # warm-up
    ours, t_ours = timed(nll_scores, model, x, k=args.k, batch_size=args.batch_size, generator=torch.Generator().manual_seed(0))
    ref, t_ref = timed(pythae_get_nll, model, x, args.k)
    print(f"IW-NLL K={args.k} on {len(x)} MNIST test images, {torch.get_num_threads()} threads")
    print(f"  vaelab nll_scores (batched)   : {len(x) / t_ours:8.1f} images/s  mean NLL {ours.mean():.3f} nats")
    print(f"  pythae get_nll (per image)    : {len(x) / t_ref:8.1f} images/s  mean NLL {ref.mean():.3f} nats")
    print(f"  (constants: pythae omits log(2 pi) terms that cancel; the two means agree to Monte-Carlo error)")
    ratio = t_ref / t_ours
    print(f"speed-up: {ratio:.1f}x (goal >= 3x) {'OK' if ratio >= 3 else 'BELOW GOAL'}")
    if not math.isclose(float(ours.mean()), float(ref.mean()), rel_tol=0.01):
        print("warning: the two estimates differ by more than 1%")


if __name__ == "__main__":
    main()
