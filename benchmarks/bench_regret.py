"""Likelihood regret, images/s: batched (vaelab.use.regret.regret_scores) vs the one-input-at-a-time loop
(regret_scores_loop: deepcopy + torch.optim.Adam per input, as in Xiao et al.'s code), at equal steps, for each
encoder family, each model trained here first:
  mlp        examples-mlp (784-400-20) on MNIST; in = MNIST test, out = Fashion-MNIST test
  conv       seed003-conv (3 conv layers + BatchNorm) on MNIST; same sets
  attention  seed004-attention (a transformer layer over the 5 feature tokens) on colored pi; in = pi test
             points, out = uniform points in [0, 1]^5
Goal: >= 10x the loop's inputs per CPU-second with the same AUROC within 0.01. Timed in process CPU time (one
torch thread), best of interleaved rounds, because wall time on a shared machine depends on the others' load.
Run: .venv/bin/python benchmarks/bench_regret.py [--models mlp,conv,attention] [--n 32] [--steps 10]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _use_common import SHARED, test_images  # noqa: E402

from vaelab.use.ood_scores import auroc  # noqa: E402
from vaelab.use.regret import regret_scores, regret_scores_loop  # noqa: E402

MODELS = {
    "mlp": {"model": {"preset": "examples-mlp"}, "data": ("mnist", 4742), "epochs": 2},
    "conv": {"model": {"preset": "seed003-conv"}, "data": ("mnist", 4742), "epochs": 2},
    "attention": {"model": {"preset": "seed004-attention"}, "data": ("colored_pi", None), "epochs": 3,
                  "loss": {"recon": "mse"}},
}


def cpu_timed(fn, *args, **kwargs):
    """(result, CPU seconds of this process): with one torch thread, other jobs on the machine barely change it,
    where they stretch wall time by a different factor for each measurement."""
    t = time.process_time()
    out = fn(*args, **kwargs)
    return out, time.process_time() - t


def train_one(name: str):
    from vaelab.core.config import load_config
    from vaelab.training.runs import load_run
    from vaelab.training.trainer import train
    import tempfile

    spec = MODELS[name]
    data, limit = spec["data"]
    cfg = load_config({"name": f"bench-regret-{name}", "seed": 0, "model": spec["model"], "loss": spec.get("loss", {}),
                       "data": {"name": data, "path": str(SHARED / data), "limit": limit},
                       "train": {"epochs": spec["epochs"], "batch_size": 128, "progress": False, "figures": False}})
    out = Path(tempfile.mkdtemp(prefix="vaelab-bench-")) / "run"
    t = time.perf_counter()
    train(cfg, out)
    print(f"[{name}] trained {cfg.model.preset} for {spec['epochs']} epochs in {time.perf_counter() - t:.1f} s")
    return load_run(out)


def sets(name: str, run, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    if name == "attention":
        x_in, _ = test_images(run, "colored_pi", n)
        return x_in, torch.rand(n, 5, generator=torch.Generator().manual_seed(0))
    return test_images(run, "mnist", n)[0], test_images(run, "fashion_mnist", n)[0]


def bench(name: str, args) -> float:
    run = train_one(name)
    x_in, x_out = sets(name, run, args.n)
    x = torch.cat([x_in, x_out])
    model = run.model
    kw = dict(steps=args.steps, lr=args.lr, weight_decay=args.weight_decay, k=args.k)
    regret_scores(model, x[:4], **kw)  # warm-up
    fast = slow = None
    t_fast, t_slow = [], []
    for _ in range(args.rounds):  # interleaved, best of each: the load of a shared machine changes meanwhile
        fast, t = cpu_timed(regret_scores, model, x, batch_size=args.batch_size, generator=torch.Generator().manual_seed(0), **kw)
        t_fast.append(t)
        slow, t = cpu_timed(regret_scores_loop, model, x, generator=torch.Generator().manual_seed(0), **kw)
        t_slow.append(t)
    t_fast, t_slow = min(t_fast), min(t_slow)
    n = len(x_in)
    a_fast, a_slow = auroc(fast[:n], fast[n:]), auroc(slow[:n], slow[n:])
    ratio = t_slow / t_fast
    print(f"[{name}] {args.steps} Adam steps (lr {args.lr}, weight decay {args.weight_decay}), K {args.k}, {len(x)} inputs, "
          f"batch {args.batch_size}, "
          f"{torch.get_num_threads()} thread(s), load {os.getloadavg()[0]:.1f}")
    print(f"[{name}]   batched            : {len(x) / t_fast:8.2f} inputs per CPU-second  AUROC {a_fast:.4f}")
    print(f"[{name}]   one input at a time: {len(x) / t_slow:8.2f} inputs per CPU-second  AUROC {a_slow:.4f}")
    print(f"[{name}]   max |regret difference| {float((fast - slow).abs().max()):.2e} nats")
    print(f"[{name}] speed-up {ratio:.1f}x (goal >= 10x) {'OK' if ratio >= 10 else 'BELOW GOAL'}; AUROC difference "
          f"{abs(a_fast - a_slow):.4f} (goal <= 0.01) {'OK' if abs(a_fast - a_slow) <= 0.01 else 'BELOW GOAL'}")
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mlp,conv,attention", help="comma list of " + ", ".join(MODELS))
    ap.add_argument("--n", type=int, default=32, help="inputs of each set (the loop is the slow part)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--lr", type=float, default=2e-4, help="the paper's 2e-4")
    ap.add_argument("--weight-decay", type=float, default=5e-5, help="the paper's 5e-5 (0 lets mlp use the factored path)")
    ap.add_argument("--k", type=int, default=1, help="importance samples before/after (the paper's 1000 costs both "
                                                     "paths the same, so 1 isolates the re-fit)")
    ap.add_argument("--batch-size", type=int, default=None, help="default: as many as fit (regret.auto_batch)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds (best of each is kept)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    ratios = {name.strip(): bench(name.strip(), args) for name in args.models.split(",")}
    # the loop (thousands of tiny ops) loses more CPU-time throughput than the batched path on a loaded machine
    print("speed-ups in this run: " + ", ".join(f"{n} {r:.1f}x" for n, r in ratios.items())
          + f" (load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end)")


if __name__ == "__main__":
    main()
