"""Does streaming an image folder keep up with training seed 001's conv model? (images/s loaded vs trained)

    .venv/bin/python benchmarks/bench_stream.py [--images 10000] [--size 64] [--base 32] [--workers 2] [--steps 8]

1. writes N PNGs (coloured shapes, 3 class subfolders) into a temp folder;
2. LOAD: iterates the image_folder loader in streaming mode (DataLoader worker processes decode and transform
   every image: pad to square, resize 1.25x, centre crop, scale to [-1, 1]) over all N images;
3. TRAIN: forward + backward + AdamW step of preset seed001-sd (small base) on batches already in memory
   (the reference: what the model alone can consume);
4. TRAIN+STREAM: the same steps fed by the streaming loader, workers competing with training for the cores.
Prints images/s for each and the ratios LOAD/TRAIN (>1: loading keeps up) and TRAIN+STREAM/TRAIN (~1: no stall).
"""
from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import torch

from vaelab.data.spec import DataSpec
from vaelab.model.build import build_model
from vaelab.core.config import ModelConfig
from vaelab.data import DataConfig, load_data
from vaelab.training.losses import vae_loss
from vaelab.data.synthetic import make_shapes


def train_step(model, opt, x, weights) -> None:
    out = model(x)
    terms = vae_loss(out, x, weights, recon_kind="mse", logits=False, reduction="mean", kl_scale=1.0, free_bits=0.0,
                     data_range=2.0)
    opt.zero_grad(set_to_none=True)
    terms.total.backward()
    opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--base", type=int, default=32, help="seed001-sd width (the seed's is 128)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=8, help="timed training steps")
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"torch threads {torch.get_num_threads()}, loader workers {args.workers}")

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        per_class = -(-args.images // 3)
        folder = make_shapes(Path(tmp) / "shapes", per_class=per_class, width=args.size, height=args.size, seed=0)
        n_files = sum(1 for _ in folder.rglob("*.png"))
        print(f"wrote {n_files} {args.size}x{args.size} PNGs in {time.perf_counter() - t0:.1f}s")

        t0 = time.perf_counter()
        cfg = DataConfig(name="image_folder", path=folder, val_fraction=0, test_fraction=0,
                         options={"size": args.size, "stream": True, "num_workers": args.workers})
        split = load_data(cfg, 0).train
        index_s = time.perf_counter() - t0
        print(f"indexed (and verified) {len(split)} files in {index_s:.1f}s")

        # ---- LOAD: every image through the streaming pipeline
        t0 = time.perf_counter()
        n = 0
        for x, _ in split.batches(args.batch, shuffle=True, generator=torch.Generator().manual_seed(0)):
            n += x.shape[0]
        load_rate = n / (time.perf_counter() - t0)

        # ---- TRAIN: the model alone, batches in memory
        mcfg = ModelConfig(preset="seed001-sd", preset_args={"base": args.base}, latent_scale=0.18215)
        model = build_model(mcfg, DataSpec((3, args.size, args.size), value_range=(-1.0, 1.0)))
        opt = torch.optim.AdamW(model.parameters(), lr=4e-4)
        weights = {"recon": 200.0, "kl": 0.0025, "ssim": 0.5, "sparse": 0.1}
        x_mem, _ = split.take(args.batch)
        train_step(model, opt, x_mem, weights)  # warm-up
        t0 = time.perf_counter()
        for _ in range(args.steps):
            train_step(model, opt, x_mem, weights)
        train_rate = args.steps * args.batch / (time.perf_counter() - t0)

        # ---- TRAIN+STREAM: training fed by the streaming loader
        batches = split.batches(args.batch, shuffle=True, generator=torch.Generator().manual_seed(1))
        x, _ = next(batches)  # worker start-up is a once-per-epoch cost, not per step
        train_step(model, opt, x, weights)
        t0 = time.perf_counter()
        for x, _ in itertools.islice(batches, args.steps):
            train_step(model, opt, x, weights)
        fed_rate = args.steps * args.batch / (time.perf_counter() - t0)
        del batches

    print(f"LOAD          {load_rate:9.1f} images/s  (streaming, {args.workers} workers, {n} images)")
    print(f"TRAIN         {train_rate:9.1f} images/s  (seed001-sd base {args.base} at {args.size}px, batch {args.batch}, in memory)")
    print(f"TRAIN+STREAM  {fed_rate:9.1f} images/s  (same steps fed by the streaming loader)")
    print(f"ratio LOAD/TRAIN = {load_rate / train_rate:.1f}x   ratio TRAIN+STREAM/TRAIN = {fed_rate / train_rate:.2f}")


if __name__ == "__main__":
    main()
