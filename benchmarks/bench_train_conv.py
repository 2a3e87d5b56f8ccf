"""Conv training speed (issue 12, point 3): vaelab's Trainer vs a plain PyTorch loop over pre-made batches, and a
peer, diffusers' AutoencoderKL built from a config with the same architecture, all measured in the same run.

Models (the loss is the same in every loop: mean reconstruction + weight x mean KL, Adam):
  seed003   - seed 003's conv VAE (1x28x28 -> 16-d latent), MNIST test images, batch 128, mean BCE + 0.1 KL
  sd32/sd64 - the seed001-sd preset in the Stable Diffusion layout (base 16, downsample 4, latent 4 channels)
              at 32 and 64 px on crops of scikit-learn's sample photos in [-1, 1], batch 32, mean MSE + 0.0025 KL
Loops:
  plain     - model.encode / reparameterise / decoder / hand-written loss / backward / step over a list of
              pre-made batch tensors (no data pipeline at all: the floor)
  vaelab    - vaelab.training.trainer.Trainer._train_epoch on the same tensors held in memory (index gather per
              batch, loss terms logged, scheduler and thread-governor hooks)
  diffusers - the same architecture as diffusers.AutoencoderKL(down/up blocks, GroupNorm groups, 1 head of
              mid-block attention), hand-written loop over the pre-made batches (sd32/sd64 only; needs the
              `diffusers` extra: pip install 'vaelab[diffusers]')
Then channels_last (train.channels_last: auto turns it on for these models) and bf16 autocast against
contiguous fp32 through vaelab. Rounds are interleaved so that machine
noise hits every loop alike; each ratio is the median over rounds of the two loops' epoch times in the same
round. Times are the process's CPU seconds (one torch thread), not wall time: on a shared machine wall time
moves 2x with other people's jobs, CPU time much less (caches and memory bandwidth are still shared); wall time
is printed beside it, and the minor page faults per batch (see STEADY_HEAP).

Run: .venv/bin/python benchmarks/bench_train_conv.py [--models seed003,sd32,sd64] [--rounds 5] [--fraction 1] [--steady-heap]
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vaelab.core.config import load_config
from vaelab.data.base import ArrayData, ArraySplit, DataBundle
from vaelab.model.build import build_model
from vaelab.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]

CASES = {
    "seed003": {"model": {"preset": "seed003-conv"}, "loss": {"recon": "bce", "reduction": "mean", "kl_weight": 0.1},
                "batch": 128, "n": 2048, "size": 28},
    "sd32": {"model": {"preset": "seed001-sd", "preset_args": {"base": 16, "downsample": 4}},
             "loss": {"recon": "mse", "reduction": "mean", "kl_weight": 0.0025}, "batch": 32, "n": 512, "size": 32},
    "sd64": {"model": {"preset": "seed001-sd", "preset_args": {"base": 16, "downsample": 4}},
             "loss": {"recon": "mse", "reduction": "mean", "kl_weight": 0.0025}, "batch": 32, "n": 192, "size": 64},
}


def case_data(name: str) -> tuple[torch.Tensor, tuple[float, float]]:
    c = CASES[name]
    if name == "seed003":
        from vaelab.data.idx import find_idx_pairs, load_idx_pair

        return load_idx_pair(*find_idx_pairs(REPO.parent / "shared" / "data" / "mnist")["test"]).x[: c["n"]], (0.0, 1.0)
    from vaelab.data.photos import sample_photos

    rng = np.random.default_rng(0)
    photos = sample_photos()
    s = c["size"]
    crops = []
    for i in range(c["n"]):
        p = photos[i % 2]
        y, x = rng.integers(0, p.shape[0] - s), rng.integers(0, p.shape[1] - s)
        crops.append(p[y : y + s, x : x + s])
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return x.contiguous(), (-1.0, 1.0)


def make_trainer(name: str, x: torch.Tensor, vr, run_dir: Path, **train) -> Trainer:
    c = CASES[name]
    cfg = load_config({"model": c["model"], "loss": c["loss"],
                       "train": {"batch_size": c["batch"], "lr": 1e-3, "epochs": 1000, "progress": False,
                                 "figures": False, "device": "cpu", **train}})
    bundle = DataBundle(ArraySplit(ArrayData(x)), None, None, tuple(x.shape[1:]), vr, None, name)
    torch.manual_seed(0)
    model = build_model(cfg.model, bundle.spec)
    return Trainer(cfg, run_dir, bundle, model, torch.device("cpu"))


def clocks() -> tuple[float, float, int]:
    """(process CPU seconds, wall seconds, minor page faults so far)."""
    return time.process_time(), time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def since(t0: tuple[float, float, int]) -> tuple[float, float, int]:
    return tuple(b - a for a, b in zip(t0, clocks()))


def epoch_vaelab(trainer: Trainer) -> tuple[float, float, int]:
    t = clocks()
    trainer._train_epoch(None)
    trainer.state.epoch += 1
    return since(t)


def plain_step_fn(name: str, model):
    """A hand-written step on the same modules: encode, reparameterise, decode, the recipe's loss."""
    c = CASES[name]
    kl_w = c["loss"]["kl_weight"]
    bce = c["loss"]["recon"] == "bce"

    def loss_of(x):
        post = model.encode(x)
        z = post.mean + torch.randn_like(post.mean) * torch.exp(0.5 * post.logvar)
        out = model.decoder(z)
        rec = F.binary_cross_entropy_with_logits(out, x) if bce else F.mse_loss(model.likelihood.mean(out), x)
        kl = 0.5 * (post.mean.pow(2) + post.logvar.exp() - 1 - post.logvar).mean()
        return rec + kl_w * kl

    return loss_of


def diffusers_model(name: str):
    """AutoencoderKL in vaelab's seed001-sd layout. Two things its config cannot say are set after construction, so
    that both models have the same layers and parameter count: vaelab halves with a 4x4 stride-2 conv (padding 1)
    where diffusers' Downsample2D defaults to 3x3 (padded right and bottom; 8,960 fewer weights, 56% of the FLOPs of
    those two convs), and vaelab's GroupNorms use eps 1e-5 where diffusers' use 1e-6 (no cost either way)."""
    from diffusers import AutoencoderKL
    from diffusers.models.downsampling import Downsample2D

    levels = 3  # downsample 4: widths 16, 32, 64
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * levels,
                        up_block_types=("UpDecoderBlock2D",) * levels, block_out_channels=(16, 32, 64),
                        layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=CASES[name]["size"])
    for block in vae.encoder.down_blocks:
        if block.downsamplers is not None:
            ch = block.downsamplers[0].channels
            block.downsamplers[0] = Downsample2D(ch, use_conv=True, out_channels=ch, padding=1, name="op", kernel_size=4)
    for m in vae.modules():
        if isinstance(m, torch.nn.GroupNorm):
            m.eps = 1e-5
    return vae


def diffusers_loss_fn(vae):
    def loss_of(x):
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        kl = 0.5 * (post.mean.pow(2) + post.var - 1 - post.logvar).mean()
        return F.mse_loss(torch.tanh(rec), x) + 0.0025 * kl

    return loss_of


def epoch_plain(loss_of, opt, batches) -> tuple[float, float, int]:
    t = clocks()
    for x in batches:
        opt.zero_grad(set_to_none=True)
        loss_of(x).backward()
        opt.step()
    return since(t)


def bench_case(name: str, rounds: int, tmp: Path) -> None:
    x, vr = case_data(name)
    n, bs = len(x), CASES[name]["batch"]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    batches = [x[perm[i:i + bs]].contiguous() for i in range(0, n, bs)]
    trainer = make_trainer(name, x, vr, tmp / f"{name}-fp32", channels_last=False)  # contiguous, as the plain loop
    plain_model = make_trainer(name, x, vr, tmp / f"{name}-plain", channels_last=False).model
    loops = {"plain": (plain_step_fn(name, plain_model), torch.optim.Adam(plain_model.parameters(), lr=1e-3)), "vaelab": None}
    params = {"vaelab": trainer.model.num_parameters()}
    if name != "seed003":
        try:
            vae = diffusers_model(name)
            loops["diffusers"] = (diffusers_loss_fn(vae), torch.optim.Adam(vae.parameters(), lr=1e-3))
            params["diffusers"] = sum(p.numel() for p in vae.parameters())
        except ImportError:
            print("  diffusers is not installed (pip install 'vaelab[diffusers]'): no peer measured")
    variants = {"channels_last": make_trainer(name, x, vr, tmp / f"{name}-cl", channels_last=True),
                "bf16": make_trainer(name, x, vr, tmp / f"{name}-bf16", precision="bf16", channels_last=False)}
    times: dict[str, list[tuple[float, float, int]]] = {k: [] for k in [*loops, *variants]}
    for k, loop in loops.items():  # warm-up
        epoch_vaelab(trainer) if loop is None else epoch_plain(*loop, batches[:2])
    for v in variants.values():
        epoch_vaelab(v)
    for _ in range(rounds):
        for k, loop in loops.items():
            times[k].append(epoch_vaelab(trainer) if loop is None else epoch_plain(*loop, batches))
        for k, v in variants.items():
            times[k].append(epoch_vaelab(v))
    print(f"\n{name}: {n} samples of {tuple(x.shape[1:])}, batch {bs}, parameters {params}, {rounds} rounds")
    for k, v in times.items():
        cpu, wall, faults = (statistics.median(t[i] for t in v) for i in range(3))
        print(f"  {k:14s} {n / cpu:9.1f} samples per CPU-second, {n / wall:9.1f} per wall-second "
              f"(median epoch; {faults / (n / bs):,.0f} minor page faults per batch)")

    def ratio(a: str, b: str, i: int) -> str:  # a faster than b: > 1; median over rounds of the same round's ratio
        r = sorted(tb[i] / ta[i] for ta, tb in zip(times[a], times[b]))
        return f"{statistics.median(r):.3f}x (rounds {r[0]:.3f}-{r[-1]:.3f})"

    def both(a: str, b: str) -> str:
        return f"CPU {ratio(a, b, 0)}, wall {ratio(a, b, 1)}"

    print(f"  vaelab / plain loop:                 {both('vaelab', 'plain')}  (goal >= 0.95)")
    if "diffusers" in times:
        print(f"  vaelab / diffusers AutoencoderKL:    {both('vaelab', 'diffusers')}  (goal >= 1.0)")
    print(f"  channels_last / contiguous (vaelab): {both('channels_last', 'vaelab')}")
    print(f"  bf16 / fp32 (vaelab):                {both('bf16', 'vaelab')}")

# glibc's malloc hands freed memory back to the kernel (heap trimming above 128 KiB, mmap for large blocks, both
# thresholds moving with the allocation history), so each epoch pays for a path-dependent number of fresh zeroed
# pages: 0.8-4.7 thousand minor faults per batch at 64 px, about 10% of the step, and which loop pays more
# changes from run to run. --steady-heap re-runs this script with these two settings (the same for every loop),
# so that the kernel's page faults drop out of the comparison; a user can export them for training too.
STEADY_HEAP = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="seed003,sd32,sd64")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--fraction", type=float, default=1.0, help="train on this fraction of each case's samples")
    ap.add_argument("--steady-heap", action="store_true", help="re-run under glibc malloc settings that keep freed "
                    "memory in the process (see STEADY_HEAP): no loop pays the kernel's page faults")
    args = ap.parse_args()
    if args.steady_heap and any(os.environ.get(k) != v for k, v in STEADY_HEAP.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **STEADY_HEAP})
    for c in CASES.values():
        c["n"] = max(c["batch"], int(c["n"] * args.fraction) // c["batch"] * c["batch"])
    torch.set_num_threads(1)
    heap = "steady heap (" + ", ".join(f"{k}={v}" for k, v in STEADY_HEAP.items()) + ")" if args.steady_heap else "default malloc"
    print(f"torch {torch.__version__}, 1 thread, {heap}; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            bench_case(name, args.rounds, Path(tmp))
    print(f"\nload average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
