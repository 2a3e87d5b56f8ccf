"""Likelihood regret, images/s: batched (vaelab.use.regret.regret_scores) vs the one-input-at-a-time loop
(regret_scores_loop: deepcopy + torch.optim.Adam per input, as in Xiao et al.'s code), at equal steps, on
examples-mlp (784-400-20) trained here on MNIST; in = MNIST test, out = Fashion-MNIST test.
Goal: >= 10x the loop's images/s with the same AUROC within 0.01.
Run: .venv/bin/python benchmarks/bench_regret.py [--n 40] [--steps 10]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _use_common import test_images, timed, train_mnist_mlp  # noqa: E402

from vaelab.use.ood_scores import auroc  # noqa: E402
from vaelab.use.regret import regret_scores, regret_scores_loop  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="images of each set (the loop is the slow part)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=80)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    run = train_mnist_mlp(args.epochs)
    x_in, _ = test_images(run, "mnist", args.n)
    x_out, _ = test_images(run, "fashion_mnist", args.n)
    x = torch.cat([x_in, x_out])
    model = run.model
    kw = dict(steps=args.steps, lr=args.lr)
    regret_scores(model, x[:4], **kw)  # warm-up
    fast, t_fast = timed(regret_scores, model, x, batch_size=args.batch_size, generator=torch.Generator().manual_seed(0), **kw)
    slow, t_slow = timed(regret_scores_loop, model, x, generator=torch.Generator().manual_seed(0), **kw)
    a_fast, a_slow = auroc(fast[: args.n], fast[args.n :]), auroc(slow[: args.n], slow[args.n :])
    print(f"likelihood regret, {args.steps} Adam steps (lr {args.lr}), {len(x)} images, {torch.get_num_threads()} threads")
    print(f"  batched (factored input layer + vmap)      : {len(x) / t_fast:7.2f} images/s  AUROC {a_fast:.4f}")
    print(f"  one input at a time (reference loop)      : {len(x) / t_slow:7.2f} images/s  AUROC {a_slow:.4f}")
    print(f"  max |regret difference| {float((fast - slow).abs().max()):.2e} nats")
    ratio = t_slow / t_fast
    print(f"speed-up: {ratio:.1f}x (goal >= 10x) {'OK' if ratio >= 10 else 'BELOW GOAL'}; "
          f"AUROC difference {abs(a_fast - a_slow):.4f} (goal <= 0.01) {'OK' if abs(a_fast - a_slow) <= 0.01 else 'BELOW GOAL'}")


if __name__ == "__main__":
    main()
