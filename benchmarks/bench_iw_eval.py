"""IW-NLL cost per image and importance sample on CPU, before/after the no-grad fast path, for every decoder
likelihood of configs/likelihoods-mnist.yaml (DCGAN-style conv VAE on 28x28 MNIST; the last layer outputs 1, 2, 30
or 256 channels).

Before (the plain path, as vaelab computed it until now): NCHW conv weights, chunks of CHUNK_ELEMENTS (64 MB) of
decoder outputs, categorical256 by cross-entropy over dim 1. After (`vaelab.use.likelihood.nll`): channels-last conv
weights for the duration of the call, 4 MiB chunks, categorical256 by a log-softmax over the contiguous last dim.
Both on the same model, images and noise, in this process, one torch thread; the values must agree to float
rounding (the max difference is printed). Weights are the recipe's initialisation: the cost does not depend on them.

    .venv/bin/python benchmarks/bench_iw_eval.py [--images 4] [--k 500] [--repeats 3] [--only NAME,...]
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path

import torch

from vaelab.core.config import load_config
from vaelab.data.spec import DataSpec
from vaelab.model.build import build_model
from vaelab.use.likelihood import CHUNK_ELEMENTS, item_noise, iw_nll_from_posterior, nll

SCRIPT = Path(__file__).resolve().parents[1] / "configs" / "compare_likelihoods.py"


def recipe():
    spec = importlib.util.spec_from_file_location("compare_likelihoods", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def plain(model, x, k: int, seed: int, batch: int) -> torch.Tensor:
    out = []
    with torch.inference_mode():
        for s in range(0, len(x), batch):
            post = model.encode(x[s : s + batch], None)
            eps = item_noise(tuple(post.mean.shape[1:]), seed, s, len(post.mean), k, post.mean)
            out.append(iw_nll_from_posterior(model, post, x[s : s + batch], None, eps, chunk_elements=CHUNK_ELEMENTS))
    return torch.cat(out)


def timed(fn, repeats: int) -> tuple[float, torch.Tensor]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.process_time()
        out = fn()
        times.append(time.process_time() - t)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--k", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    script = recipe()
    names = script.LIKELIHOODS if args.only is None else args.only.split(",")
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.images, 1, 28, 28), generator=g).float() / 255.0
    samples = args.images * args.k
    print(f"IW-NLL, {args.images} images x K={args.k}, 1 torch thread, CPU ms per image-sample (median of {args.repeats})")
    print(f"{'likelihood':22s} {'before':>8s} {'after':>8s} {'speed-up':>9s} {'max |diff| nats':>16s}")
    for name in names:
        torch.manual_seed(0)
        model = build_model(load_config(script.CONFIG, script.overrides(name)).model, DataSpec((1, 28, 28), bits=8)).eval()
        batch = max(1, min(256, 2**22 // (args.k * 784 * model.likelihood.params_per_value)))  # as `vaelab evaluate`
        t_old, old = timed(lambda: plain(model, x, args.k, 0, batch), args.repeats)
        t_new, new = timed(lambda: nll(model, x, k=args.k, batch_size=batch, seed=0), args.repeats)
        print(f"{name:22s} {1e3 * t_old / samples:8.3f} {1e3 * t_new / samples:8.3f} {t_old / t_new:8.2f}x "
              f"{float((old - new).abs().max()):16.2e}", flush=True)


if __name__ == "__main__":
    main()
