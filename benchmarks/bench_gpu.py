"""For a GPU session (issue 12, point 6): seed 001's model on CUDA.

1. Training samples/s of the seed001-sd preset at 64, 128 and 256 px in fp32, bf16, fp16 (gradient scaling),
   fp32 + channels_last and fp32 + torch.compile, through vaelab's Trainer on random images (speed does not
   depend on pixel values). Reference: fp32 at the same size, measured in the same run.
2. The batch `vaelab memory` chooses vs the true out-of-memory boundary found by doubling then bisection.
3. Tiled decode of a 4096x4096 image's latent (factor 8: 512x512 latent) with whole-image statistics:
   peak CUDA memory and time, tiled vs untiled (when untiled fits), and the largest difference between them.

Run: .venv/bin/python benchmarks/bench_gpu.py [--base 64] [--sizes 64,128,256] [--batch 32] [--epochs 2]
     .venv/bin/python benchmarks/bench_gpu.py --smoke   (CPU, tiny sizes: checks the code paths without a GPU)
Exits with a message (status 0) on a machine without CUDA unless --smoke.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from vaelab.core.config import load_config
from vaelab.data.base import ArrayData, ArraySplit, DataBundle
from vaelab.data.spec import DataSpec
from vaelab.model.build import build_model
from vaelab.training.memory import GB, cuda_measure, max_batch_for
from vaelab.training.trainer import Trainer

VARIANTS = {"fp32": {}, "bf16": {"precision": "bf16"}, "fp16": {"precision": "fp16"},
            "fp32+channels_last": {"channels_last": True}, "fp32+compile": {"compile": True}}


def spec(size: int) -> dict:
    return {"shape": [3, size, size], "value_range": [0.0, 1.0], "num_classes": None, "cond_dim": None}


def config(base: int, device: str, **train):
    return load_config({"model": {"preset": "seed001-sd", "preset_args": {"base": base}}, "loss": {"recon": "mse"},
                        "train": {"device": device, "progress": False, "figures": False, "epochs": 100, **train}})


def samples_per_s(base: int, size: int, batch: int, epochs: int, device: torch.device, tmp: Path, **train) -> float:
    cfg = config(base, device.type, batch_size=batch, **train)
    x = torch.rand(batch * 8, 3, size, size)
    bundle = DataBundle(ArraySplit(ArrayData(x)), None, None, (3, size, size), (0.0, 1.0), None, "random")
    model = build_model(cfg.model, bundle.spec)
    trainer = Trainer(cfg, tmp / f"{size}-{'-'.join(map(str, train.values()))}", bundle, model, device)
    if cfg.train.compile:
        from vaelab.training.compile import compile_and_warm_up

        compile_and_warm_up(trainer)
    trainer._train_epoch(None)  # warm-up: cudnn autotuning, allocator
    best = float("inf")
    for _ in range(epochs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        trainer._train_epoch(None)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return len(x) / best


def fits(base: int, batch: int) -> bool:
    try:
        cuda_measure(config(base, "cuda"), spec(64), torch.device("cuda"))(batch)
        return True
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return False


def oom_boundary(base: int, start: int) -> int:
    """Largest batch that runs, by doubling then bisection."""
    lo, hi = 0, max(1, start)
    while fits(base, hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(base, mid) else (lo, mid)
    return lo


def tiled_decode(base: int, side: int, tile: int, device: torch.device) -> None:
    """Decode a random latent of a side x side image (factor 8), tiled and untiled; peak memory, time, difference."""
    from vaelab.use.tiling import tiled_decode_logits

    cfg = load_config({"model": {"preset": "seed001-sd", "preset_args": {"base": base, "downsample": 8}, "input_shape": [3, 64, 64]}})
    torch.manual_seed(0)
    model = build_model(cfg.model, DataSpec((3, 64, 64), (-1.0, 1.0))).to(device).eval()
    z = torch.randn(1, 4, side // 8, side // 8, device=device)
    results = {}
    for name, fn in (("tiled (exact statistics)", lambda: tiled_decode_logits(model, z, tile=tile, overlap=tile // 4, stats="exact")),
                     ("tiled (estimate)", lambda: tiled_decode_logits(model, z, tile=tile, overlap=tile // 4, stats="estimate")),
                     ("untiled", lambda: model.decoder_output(z))):
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            torch.cuda.synchronize()
        t = time.perf_counter()
        try:
            with torch.no_grad():
                out = fn()
        except torch.cuda.OutOfMemoryError:
            print(f"  {name:26s} out of memory")
            continue
        if device.type == "cuda":
            torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / GB if device.type == "cuda" else float("nan")
        results[name] = out.float().cpu()
        print(f"  {name:26s} {time.perf_counter() - t:8.1f} s   peak {peak:7.2f} GB")
    if "untiled" in results:
        for name, out in results.items():
            if name != "untiled":
                d = (out.tanh() - results["untiled"].tanh()).abs()
                print(f"  {name} vs untiled: max abs {d.max():.2e}, mean abs {d.mean():.2e} (output in [-1, 1])")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=int, default=64, help="seed001-sd width (128 = the seed's exact model)")
    ap.add_argument("--sizes", default="64,128,256")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs of 8 batches each (best counts)")
    ap.add_argument("--tiled-side", type=int, default=4096)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny sizes: exercise every code path without a GPU")
    args = ap.parse_args()
    if args.smoke:
        device, args.base, args.sizes, args.batch, args.epochs, args.tiled_side, args.tile = \
            torch.device("cpu"), 32, "32", 2, 1, 128, 64
        variants = {k: v for k, v in VARIANTS.items() if k in ("fp32", "bf16", "fp32+channels_last")}
    elif not torch.cuda.is_available():
        print("bench_gpu: no CUDA device on this machine; nothing measured (run it where `torch.cuda.is_available()`).")
        sys.exit(0)
    else:
        device, variants = torch.device("cuda"), VARIANTS
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "CPU (smoke run)"
    print(f"{name}, {time.strftime('%Y-%m-%d')}, torch {torch.__version__}: seed001-sd base {args.base}, batch {args.batch}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            ref = None
            for label, train in variants.items():
                sps = samples_per_s(args.base, size, args.batch, args.epochs, device, Path(tmp), **train)
                ref = ref or sps
                print(f"  {size:4d} px {label:20s} {sps:9.1f} samples/s  ({sps / ref:.2f}x fp32)", flush=True)
    if device.type == "cuda":
        free = torch.cuda.mem_get_info()[0]
        report = max_batch_for(config(args.base, "cuda"), spec(64), device="cuda", margin=0.1)
        print(report.summary())
        true = oom_boundary(args.base, report.batch)
        print(f"vaelab memory chose {report.batch}; the true OOM boundary is {true} "
              f"({report.batch / max(true, 1):.2f} of it; free memory was {free / GB:.1f} GB)")
    print(f"tiled decode of a {args.tiled_side}x{args.tiled_side} image (factor 8), tile {args.tile}:")
    tiled_decode(args.base, args.tiled_side, args.tile, device)


if __name__ == "__main__":
    main()
