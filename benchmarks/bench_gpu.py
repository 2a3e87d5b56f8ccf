"""For a GPU session: samples/s of seed 001's conv VAE at 64x64 in fp32, bf16, fp16, and the batch `vaelab memory`
chooses against the true out-of-memory boundary found by trying.

Run: .venv/bin/python benchmarks/bench_gpu.py [--base 64] [--steps 20]
Exits with a message (status 0) on a machine without CUDA. Data: random 3x64x64 tensors (speed and memory
do not depend on the pixel values). Reference: fp32 samples/s, measured in the same run.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from vaelab.core.config import load_config
from vaelab.training.memory import GB, build_step, cuda_measure, max_batch_for

SPEC = {"shape": [3, 64, 64], "value_range": [0.0, 1.0], "num_classes": None, "cond_dim": None}


def config(base: int, precision: str):
    return load_config({"model": {"preset": "seed001-sd", "preset_args": {"base": base}},
                        "train": {"precision": precision, "device": "cuda"}})


def samples_per_s(base: int, precision: str, batch: int, steps: int) -> float:
    step = build_step(config(base, precision), SPEC, torch.device("cuda"))
    step(batch, 3)  # warm-up (cudnn autotune, allocator)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    step(batch, steps)
    torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t0)


def fits(base: int, batch: int) -> bool:
    try:
        cuda_measure(config(base, "fp32"), SPEC, torch.device("cuda"))(batch)
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", type=int, default=64, help="seed001-sd width (128 = the seed's exact model)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device on this machine; nothing measured (run it where `torch.cuda.is_available()`).")
        sys.exit(0)
    print(f"{torch.cuda.get_device_name(0)}: seed001-sd base {args.base}, 3x64x64, batch {args.batch}, {args.steps} steps")
    ref = None
    for p in ("fp32", "bf16", "fp16"):
        sps = samples_per_s(args.base, p, args.batch, args.steps)
        ref = ref or sps
        print(f"  {p}: {sps:9.1f} samples/s  ({sps / ref:.2f}x fp32)")
    free = torch.cuda.mem_get_info()[0]
    report = max_batch_for(config(args.base, "fp32"), SPEC, device="cuda", margin=0.1)
    print(report.summary())
    true = oom_boundary(args.base, report.batch)
    print(f"vaelab memory chose {report.batch}; the true OOM boundary is {true} "
          f"({report.batch / max(true, 1):.2f} of it; free memory was {free / GB:.1f} GB)")


if __name__ == "__main__":
    main()
