"""Surrogate-assisted NSGA-II vs plain NSGA-II vs random search on digits with tiny training, 3 seeds each.

Plain NSGA-II and random search train T models; the surrogate-assisted search trains T/2 (its goal: >= 95% of
plain NSGA-II's final hypervolume with <= 50% of its trainings). Hypervolume uses objectives min-max normalised
over every trial of every run (one shared reference point 1.1), so the numbers compare across methods.
Run: .venv/bin/python benchmarks/bench_search.py [--trials T] [--population N] [--epochs E]
"""
from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vaelab.data import load_data
from vaelab.search.report import hypervolume_curve
from vaelab.search.runner import open_study, run_search
from vaelab.search.space import load_space
from vaelab.search.surrogate import to_minimise

SPACE = {
    "name": "bench",
    "data": {"name": "digits", "val_fraction": 0.15, "test_fraction": 0.1},
    "genes": {"latent_dim": {"type": "int", "low": 3, "high": 10}, "mid_layer": {"type": "int", "low": 10, "high": 50}},
    "template": {"family": "mlp", "hidden": ["$mid_layer"], "latent": "$latent_dim"},
    "base": {"train": {"epochs": 2, "batch_size": 64, "lr": 0.003, "progress": False, "figures": False}},
    "objectives": [{"name": "neg_elbo"}, {"name": "params"}],
    "search": {"population": 6},
}


def run(method: str, seed: int, trials: int, pop: int, epochs: int, root: Path, bundle) -> np.ndarray:
    raw = copy.deepcopy(SPACE)
    raw["base"]["train"]["epochs"] = epochs
    raw["search"] = {"population": pop, "seed": seed, "sampler": "random" if method == "random" else "nsga2",
                     "surrogate": {"enabled": method == "surrogate", "keep_fraction": 0.25}}
    space = load_space(raw)
    folder = root / f"{method}-{seed}"
    run_search(space, out=folder, trials=trials, bundle=bundle, log=open("/dev/null", "w"))
    study, _ = open_study(folder, space, create=False)
    done = sorted((t for t in study.get_trials() if t.values is not None), key=lambda t: t.number)
    return to_minimise(np.array([t.values for t in done]), space.directions())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=24, help="trainings of plain NSGA-II and random search")
    ap.add_argument("--population", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    bundle = load_data(load_space(SPACE).data, 0)
    budgets = {"nsga2": args.trials, "random": args.trials, "surrogate": args.trials // 2}
    results: dict[str, list[np.ndarray]] = {m: [] for m in budgets}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for method, n in budgets.items():
                t = time.perf_counter()
                results[method].append(run(method, seed, n, args.population, args.epochs, Path(tmp), bundle))
                print(f"{method:9s} seed {seed}: {n} trainings in {time.perf_counter() - t:.0f}s", file=sys.stderr)
    allv = np.vstack([v for vs in results.values() for v in vs])
    lo, hi = allv.min(axis=0), allv.max(axis=0)
    print(f"\nsearch benchmark: digits, {args.epochs} epochs per model, population {args.population}, {args.seeds} seeds, "
          f"{time.perf_counter() - t0:.0f}s")
    print(f"{'method':10s} {'trainings':>9s} {'final HV':>16s} {'HV at T/2':>10s} {'HV per model':>13s}")
    finals = {}
    for method, vs in results.items():
        curves = [hypervolume_curve([v[i:i + 1] for i in range(len(v))], lo, hi) for v in vs]
        final = np.array([c[-1] for c in curves])
        half = np.array([c[min(len(c), budgets["surrogate"]) - 1] for c in curves])
        finals[method] = final.mean()
        print(f"{method:10s} {budgets[method]:9d} {final.mean():9.4f} ± {final.std():.4f} {half.mean():10.4f} "
              f"{final.mean() / budgets[method]:13.5f}")
    ratio = finals["surrogate"] / finals["nsga2"]
    print(f"\nsurrogate final HV / plain NSGA-II final HV = {ratio:.3f} with {budgets['surrogate'] / budgets['nsga2']:.0%} "
          f"of its trainings (goal >= 0.95 with <= 50%): {'met' if ratio >= 0.95 else 'not met'}")


if __name__ == "__main__":
    main()
