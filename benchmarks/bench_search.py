"""Samplers on the architecture space of configs/search-mnist-arch.yaml, at equal numbers of trainings, over seeds.

Methods: surrogate-assisted NSGA-II (`surrogate`, trains T/2), Optuna's NSGA-II (`nsga2`), multi-objective TPE
(`tpe`), GPSampler (`gp`) and random search (`random`), each training T models. The space (16 genes: family, depth,
widths, channels, kernels, latent, activation, likelihood, KL weight, learning rate) is the shipped one; to fit
the 2 shared cores of this project the data is cut (MNIST first 1200 training images, 20% of them validation),
each model trains 2 epochs, and the objectives are validation NLL (IW, k=4), OOD = 1 - AUROC against
Fashion-MNIST and log10(parameters) (latency is left out: on a shared machine it measures the load).

Hypervolume: every run's objectives min-max normalised over all trials of all methods and seeds, reference point
1.1 in each: one shared reference, so numbers compare across methods. Printed per generation of `population`
trainings, mean and standard deviation over seeds; the surrogate's Kendall tau per generation is printed too.
Run: .venv/bin/python benchmarks/bench_search.py [--trials T] [--population N] [--seeds S] [--methods a,b]

`--scale 1,2`: trials per hour of W `vaelab search --worker` processes (one torch thread each) sharing one study on a
PostgreSQL server (pgserver, from the `test` extra) for the same budget, 1 worker being the reference.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vaelab.core.config import read_yaml
from vaelab.data import load_data
from vaelab.search.hypervolume import hypervolume
from vaelab.search.runner import open_study, run_search
from vaelab.search.sampler import PREDICTED_ATTR
from vaelab.search.space import load_space
from vaelab.search.surrogate import prediction_quality, to_minimise
from vaelab.search.trials import outcome

ROOT = Path(__file__).resolve().parents[1]
METHODS = {"surrogate": ("nsga2", True), "nsga2": ("nsga2", False), "tpe": ("tpe", False), "gp": ("gp", False),
           "random": ("random", False)}


def bench_space(epochs: int, limit: int) -> dict:
    raw = read_yaml(ROOT / "configs" / "search-mnist-arch.yaml")
    raw = copy.deepcopy(raw)
    data = ROOT.parent / "shared" / "data"
    raw["name"] = "bench"
    raw["data"] = {"name": "mnist", "path": str(data / "mnist"), "val_fraction": 0.2, "limit": limit}
    raw["base"]["train"]["epochs"] = epochs
    raw["objectives"] = [{"name": "iw_nll", "k": 4, "samples": 240, "label": "nll"},
                         {"name": "ood", "data": {"name": "fashion_mnist", "path": str(data / "fashion_mnist")},
                          "samples": 240, "label": "ood"},
                         {"name": "params"}]
    return raw


def run(method: str, seed: int, trainings: int, raw: dict, root: Path, bundle) -> tuple[np.ndarray, list[dict]]:
    """Objective rows (minimised, log10 params) of the trained trials in order; surrogate quality per generation."""
    raw = copy.deepcopy(raw)
    sampler, surrogate = METHODS[method]
    raw["search"] = {**raw["search"], "seed": seed, "sampler": sampler,
                     "surrogate": {"enabled": surrogate, "keep_fraction": 0.25}}
    space = load_space(raw)
    folder = root / f"{method}-{seed}"
    with open("/dev/null", "w") as quiet:
        run_search(space, out=folder, trials=trainings, bundle=bundle, log=quiet)
    study, _ = open_study(folder, space, create=False)
    done = sorted((t for t in study.get_trials() if outcome(t) == "trained"), key=lambda t: t.number)
    values = to_minimise(np.array([t.values for t in done], dtype=float), space.directions())
    values[:, 2] = np.log10(values[:, 2])
    pop, quality = space.search.population, []
    for g in range(1, math.ceil(len(done) / pop)):
        chosen = [t for t in done[g * pop:(g + 1) * pop] if t.user_attrs.get(PREDICTED_ATTR)]
        if len(chosen) >= 3:
            pred = np.array([[t.user_attrs[PREDICTED_ATTR][lab] for lab in space.labels()] for t in chosen])
            q = prediction_quality(pred, np.array([t.values for t in chosen]))
            quality.append({"generation": g, "n": len(chosen), **{f"tau_{lab}": v for lab, v in zip(space.labels(), q["tau"])}})
    return values, quality


def hv_curve(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, steps: list[int]) -> list[float]:
    norm = (values - lo) / np.where(hi > lo, hi - lo, 1.0)
    ref = np.full(values.shape[1], 1.1)
    return [hypervolume(norm[:k], ref) if k <= len(norm) else math.nan for k in steps]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=24, help="trainings of every method but the surrogate (T/2)")
    ap.add_argument("--population", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--limit", type=int, default=1200, help="MNIST training images (first N)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--json", type=Path, help="write every run's objective rows here")
    ap.add_argument("--scale", help="worker counts to time instead, e.g. 1,2")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    raw = bench_space(args.epochs, args.limit)
    raw["search"]["population"] = args.population
    if args.scale:
        return scale([int(w) for w in args.scale.split(",")], args.trials, raw)
    bundle = load_data(load_space(raw).data, 0)
    methods = args.methods.split(",")
    budgets = {m: args.trials // 2 if m == "surrogate" else args.trials for m in methods}
    results: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    taus: list[dict] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for m in methods:
                t = time.perf_counter()
                values, quality = run(m, seed, budgets[m], raw, Path(tmp), bundle)
                results[m].append(values)
                taus += [{"seed": seed, **q} for q in quality] if m == "surrogate" else []
                print(f"{m:9s} seed {seed}: {len(values)} trainings in {time.perf_counter() - t:.0f}s", file=sys.stderr)
    report(results, budgets, taus, args, time.perf_counter() - t0)
    if args.json:
        args.json.write_text(json.dumps({m: [v.tolist() for v in vs] for m, vs in results.items()}))


def report(results, budgets, taus, args, seconds: float) -> None:
    allv = np.vstack([v for vs in results.values() for v in vs])
    lo, hi = allv.min(axis=0), allv.max(axis=0)
    steps = list(range(args.population, args.trials + 1, args.population))
    print(f"\nsearch benchmark: mnist-arch space, MNIST {args.limit} images, {args.epochs} epochs per model, population "
          f"{args.population}, {args.seeds} seeds, {seconds:.0f}s; hypervolume (mean ± std over seeds) after N trainings")
    print(f"{'method':10s} " + " ".join(f"{'N=' + str(s):>15s}" for s in steps))
    curves = {}
    for m, vs in results.items():
        c = np.array([hv_curve(v, lo, hi, steps) for v in vs])
        curves[m] = c
        print(f"{m:10s} " + " ".join(f"{np.nanmean(c[:, i]):7.4f} ± {np.nanstd(c[:, i]):.4f}" if not np.isnan(c[:, i]).all()
                                     else f"{'-':>15s}" for i in range(len(steps))))
    print("gain over the shared first generation (same seed, same random draws in every method), mean ± std:")
    gains = {m: c - c[:, :1] for m, c in curves.items()}
    for m, g in gains.items():
        print(f"{m:10s} " + " ".join(f"{np.nanmean(g[:, i]):+7.4f} ± {np.nanstd(g[:, i]):.4f}" if not np.isnan(g[:, i]).all()
                                     else f"{'-':>15s}" for i in range(len(steps))))
    half = steps.index(args.trials // 2) if args.trials // 2 in steps else None
    if "surrogate" in gains and "nsga2" in gains and half is not None:
        s, p = gains["surrogate"][:, half], gains["nsga2"][:, -1]
        print(f"\nsurrogate gain at T/2 = {args.trials // 2} trainings: {s.mean():+.4f} ± {s.std():.4f}; plain NSGA-II at "
              f"T = {args.trials}: {p.mean():+.4f} ± {p.std():.4f} (goal: surrogate >= NSGA-II): "
              f"{'met' if s.mean() >= p.mean() else 'not met'}")
        for other in ("random", "nsga2", "tpe", "gp"):
            if other in gains:
                r = gains[other][:, half]
                print(f"surrogate vs {other} at {args.trials // 2} trainings: margin {s.mean() - r.mean():+.4f} "
                      f"(per seed {', '.join(f'{a - b:+.4f}' for a, b in zip(s, r))})")
    best = max(curves, key=lambda m: np.nanmean(curves[m][:, -1]) if budgets[m] == args.trials else -1)
    print(f"best final hypervolume at T = {args.trials} trainings: {best}")
    for q in taus:
        print("surrogate Kendall tau: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in q.items()))


def steady_rate(url: str, name: str) -> float:
    """Trainings per hour after every worker has finished its first one (start-up, imports and loading the data
    once per process excluded), from the study's own timestamps."""
    import optuna

    from vaelab.search.storage import with_driver

    study = optuna.load_study(study_name=name, storage=with_driver(url))
    done = [t for t in study.get_trials() if outcome(t) == "trained"]
    first: dict[int, float] = {}
    for t in done:
        pid, end = t.user_attrs["pid"], t.datetime_complete.timestamp()
        first[pid] = min(first.get(pid, end), end)
    ready = max(first.values())
    later = [t for t in done if t.datetime_start.timestamp() >= ready]
    span = max(t.datetime_complete.timestamp() for t in later) - ready if later else 0.0
    return len(later) / span * 3600 if span > 0 else math.nan


def scale(workers: list[int], trials: int, raw: dict) -> None:
    """Wall time of `trials` trainings done by W worker processes sharing one PostgreSQL study."""
    import pgserver
    import yaml

    with tempfile.TemporaryDirectory() as tmp:
        srv = pgserver.get_server(Path(tmp) / "pg", cleanup_mode="stop")
        host = srv.get_uri().split("host=", 1)[1]
        rates = {}
        for w in workers:
            srv.psql(f"CREATE DATABASE scale{w};")
            url = f"postgresql://postgres:@/scale{w}?host={host}"
            space = Path(tmp) / f"space{w}.yaml"
            space.write_text(yaml.safe_dump({**raw, "search": {**raw["search"], "sampler": "random", "seed": 0}}))
            env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
            load0 = os.getloadavg()[0]
            t = time.perf_counter()
            procs = [subprocess.Popen([sys.executable, "-m", "vaelab", "search", str(space), "--worker", "--trials", str(trials),
                                       "--storage", url, "--out", str(Path(tmp) / f"s{w}")], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(w)]
            codes = [p.wait() for p in procs]
            elapsed = time.perf_counter() - t
            steady = steady_rate(url, raw["name"])
            rates[w] = steady
            print(f"{w} worker(s): {trials} trainings in {elapsed:.0f}s wall ({trials / elapsed * 3600:.0f} trials/hour with "
                  f"start-up), {steady:.0f} trials/hour once every worker had finished its first trial (exit codes {codes}, "
                  f"load average {load0:.1f} before, {os.getloadavg()[0]:.1f} after)")
        srv.cleanup()
    ref = rates[workers[0]]
    print(f"steady trials/hour relative to {workers[0]} worker: " + ", ".join(f"{w}: {r / ref:.2f}x" for w, r in rates.items()))


if __name__ == "__main__":
    main()
