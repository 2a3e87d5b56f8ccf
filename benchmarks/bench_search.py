"""Samplers on the architecture space of configs/search-mnist-arch.yaml, at equal numbers of trainings, over seeds.

Methods: surrogate-assisted NSGA-II (`surrogate`, the shipped `hvi` screen, trains T/2; `surrogate_full` the same
seeded run continued to T; `surrogate_rank` seed 000's rank screen at T/2), Optuna's NSGA-II (`nsga2`),
multi-objective TPE (`tpe`), GPSampler (`gp`, log expected hypervolume improvement) and random search (`random`),
each training T models. The space (16 genes: family, depth, widths, channels, kernels, latent, activation,
likelihood, KL weight, learning rate) is the shipped one; to fit the 2 shared cores of this project the data is cut
(MNIST first 1200 training images, 20% of them validation), each model trains 2 epochs, and the objectives are
validation NLL (IW, k=4), OOD = 1 - AUROC against Fashion-MNIST and log10(parameters) (latency is left out: on a
shared machine it measures the load).

Hypervolume: every run's objectives min-max normalised over all trials of all methods and seeds, reference point
1.1 in each: one shared reference, so numbers compare across methods. Printed per generation of `population`
trainings, mean and standard deviation over seeds, then each surrogate method at T/2 minus the others at T/2 and at
T, per seed; the surrogate's Kendall tau per generation is printed too.
Run: .venv/bin/python benchmarks/bench_search.py [--trials T] [--population N] [--seeds S|a,b] [--methods a,b]
Runs are seeded and reproducible, so methods and seeds can run in separate processes: `--json F` in each, then
`--methods "" --load F1,F2,...` reports them together.
Each goal difference is printed with its paired standard error, 95% t interval and sign test over seeds.
`--variant NAME=KEY:VALUE,...` adds the shipped screen with other search.surrogate settings as a method (T/2).

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
from vaelab.search.sampler import generation_quality
from vaelab.search.space import load_space
from vaelab.search.surrogate import to_minimise
from vaelab.search.trials import outcome

ROOT = Path(__file__).resolve().parents[1]
# method -> (sampler, surrogate settings over the shipped config's (None: off), share of T trained). `surrogate` is
# the goal's T/2 run; `surrogate_full` continues the same seeded run to T (its first T/2 trainings are the same).
METHODS = {"surrogate": ("nsga2", {}, 0.5), "surrogate_full": ("nsga2", {}, 1.0),
           "surrogate_rank": ("nsga2", {"screen": "rank", "keep_fraction": 0.25}, 0.5),
           "nsga2": ("nsga2", None, 1.0), "tpe": ("tpe", None, 1.0), "gp": ("gp", None, 1.0), "random": ("random", None, 1.0)}
DEFAULT_METHODS = "surrogate,nsga2,tpe,gp,random"


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
    sampler, surrogate, _ = METHODS[method]
    raw["search"] = {**raw["search"], "seed": seed, "sampler": sampler,
                     "surrogate": {**raw["search"]["surrogate"], **(surrogate or {}), "enabled": surrogate is not None}}
    space = load_space(raw)
    folder = root / f"{method}-{seed}"
    with open("/dev/null", "w") as quiet:
        run_search(space, out=folder, trials=trainings, bundle=bundle, log=quiet)
    study, _ = open_study(folder, space, create=False)
    done = sorted((t for t in study.get_trials() if outcome(t) == "trained"), key=lambda t: t.number)
    values = to_minimise(np.array([t.values for t in done], dtype=float), space.directions())
    values[:, 2] = np.log10(values[:, 2])
    quality = [{k: v for k, v in q.items() if not k.startswith("mae_")}
               for q in generation_quality(study.get_trials(), space.labels(), space.search.population)]
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
    ap.add_argument("--seeds", default="3", help="N (seeds 0..N-1) or a list such as 3,4 (one seed: '3,')")
    ap.add_argument("--methods", default=DEFAULT_METHODS, help=f"from {', '.join(METHODS)}")
    ap.add_argument("--json", type=Path, help="write every run's objective rows (and the surrogate's taus) here")
    ap.add_argument("--load", default="", help="comma-separated --json files of earlier runs (same settings) to report "
                                                 "with this one: runs are seeded, so methods and seeds can be run apart")
    ap.add_argument("--scale", help="worker counts to time instead, e.g. 1,2")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=KEY:VALUE,...",
                    help="an extra surrogate method trained T/2, the shipped screen with these search.surrogate settings "
                         "(e.g. kappa0=kappa:0); give it again with --load to report its runs")
    args = ap.parse_args()
    for v in args.variant:
        name, _, sets = v.partition("=")
        METHODS[name] = ("nsga2", {k: yaml_value(x) for k, _, x in (kv.partition(":") for kv in sets.split(",") if kv)}, 0.5)
    import torch

    torch.set_num_threads(1)
    raw = bench_space(args.epochs, args.limit)
    raw["search"]["population"] = args.population
    if args.scale:
        return scale([int(w) for w in args.scale.split(",")], args.trials, raw)
    settings = {k: getattr(args, k) for k in ("trials", "population", "epochs", "limit")}
    seeds = list(range(int(args.seeds))) if args.seeds.isdigit() else [int(x) for x in args.seeds.split(",") if x]
    methods = [m for m in args.methods.split(",") if m]
    results: dict[str, dict[int, np.ndarray]] = {}
    taus: list[dict] = []
    for f in filter(None, args.load.split(",")):
        old = json.loads(Path(f).read_text())
        if old["settings"] != settings:
            sys.exit(f"{f} was run with {old['settings']}, this run with {settings}: they do not compare")
        for m, runs in old["runs"].items():
            results.setdefault(m, {}).update({int(k): np.array(v) for k, v in runs.items()})
        taus += old["taus"]
    bundle = load_data(load_space(raw).data, 0) if methods else None
    new_runs: dict[str, dict[int, list]] = {}
    new_taus: list[dict] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for m in methods:
                t = time.perf_counter()
                values, quality = run(m, seed, budget(m, args.trials), raw, Path(tmp), bundle)
                results.setdefault(m, {})[seed] = values
                new_runs.setdefault(m, {})[seed] = values.tolist()
                new_taus += [{"method": m, "seed": seed, **q} for q in quality] if METHODS[m][1] is not None else []
                print(f"{m:9s} seed {seed}: {len(values)} trainings in {time.perf_counter() - t:.0f}s", file=sys.stderr)
                if args.json:  # after every run, so a long benchmark cut short keeps what it did
                    args.json.write_text(json.dumps({"settings": settings, "runs": new_runs, "taus": new_taus}))
    report(results, taus + new_taus, args, time.perf_counter() - t0)


def yaml_value(text: str):
    import yaml

    return yaml.safe_load(text)


def budget(method: str, trials: int) -> int:
    return int(trials * METHODS[method][2])


def paired(d: np.ndarray) -> str:
    """Paired standard error of the mean difference, its 95% t interval and the two-sided sign test's p (ties left
    out): seeds are independent pairs, every method of a seed starting from the same random first generation."""
    from scipy.stats import binomtest, t

    se = d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else math.nan
    half = t.ppf(0.975, len(d) - 1) * se if len(d) > 1 else math.nan
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    p = binomtest(wins, wins + losses).pvalue if wins + losses else math.nan
    return (f"paired s.e. {se:.4f}, 95% CI [{d.mean() - half:+.4f}, {d.mean() + half:+.4f}], sign test {wins}-{losses} "
            f"p = {p:.4f}")


def cell(col: np.ndarray, sign: str = "") -> str:
    col = col[~np.isnan(col)]
    return f"{col.mean():{sign}7.4f} ± {col.std():.4f}" if len(col) else f"{'-':>15s}"


def report(results: dict[str, dict[int, np.ndarray]], taus: list[dict], args, seconds: float) -> None:
    allv = np.vstack([v for runs in results.values() for v in runs.values()])
    lo, hi = allv.min(axis=0), allv.max(axis=0)
    steps = list(range(args.population, args.trials + 1, args.population))
    print(f"\nsearch benchmark: mnist-arch space, MNIST {args.limit} images, {args.epochs} epochs per model, population "
          f"{args.population}, {seconds:.0f}s (this invocation); hypervolume (mean ± std over seeds) after N trainings, "
          f"objectives normalised over all {len(allv)} trained trials of every method and seed, reference 1.1")
    print(f"{'method':10s} {'seeds':>6s} " + " ".join(f"{'N=' + str(s):>15s}" for s in steps))
    curves = {m: {s: np.array(hv_curve(v, lo, hi, steps)) for s, v in runs.items()} for m, runs in results.items()}
    for m, c in curves.items():
        arr = np.array(list(c.values()))
        print(f"{m:10s} {len(c):6d} " + " ".join(cell(arr[:, i]) for i in range(len(steps))))
    print("gain over the shared first generation (same seed, same random draws in every method), mean ± std:")
    for m, c in curves.items():
        arr = np.array([v - v[0] for v in c.values()])
        print(f"{m:10s} {len(c):6d} " + " ".join(cell(arr[:, i], "+") for i in range(len(steps))))
    half = steps.index(args.trials // 2) if args.trials // 2 in steps else None
    for sm in [m for m in curves if METHODS[m][1] is not None and half is not None]:  # at T/2 trainings
        sur = curves[sm]
        for other, at in (("nsga2", -1), ("nsga2", half), ("random", -1), ("random", half), ("tpe", -1), ("tpe", half),
                          ("gp", -1), ("gp", half)):
            if other not in curves:
                continue
            common = sorted(set(sur) & set(curves[other]))
            d = np.array([sur[s][half] - curves[other][s][at] for s in common])
            print(f"{sm} at {args.trials // 2} trainings minus {other} at {steps[at]}: {d.mean():+.4f} ± {d.std():.4f}, "
                  f"{paired(d)}, median {np.median(d):+.4f}, >= 0 on {int((d >= 0).sum())} of {len(d)} seeds (per seed "
                  f"{', '.join(f'{s}: {x:+.3f}' for s, x in zip(common, d))})")
    full = [m for m in curves if budget(m, args.trials) == args.trials]
    if full:
        best = max(full, key=lambda m: np.nanmean([c[-1] for c in curves[m].values()]))
        print(f"best mean final hypervolume at T = {args.trials} trainings: {best}")
    for sm in sorted({q["method"] for q in taus}):
        rows_m = [q for q in taus if q["method"] == sm]
        labels = [k[4:] for k in rows_m[0] if k.startswith("tau_")]
        print(f"{sm}: Kendall tau between predicted and trained objectives, per generation (mean ± std over seeds):")
        for g in sorted({q["generation"] for q in rows_m}):
            rows = [q for q in rows_m if q["generation"] == g]
            print(f"  generation {g} ({len(rows)} seeds, {np.mean([q['n'] for q in rows]):.0f} trained each): " + ", ".join(
                f"{lab} {np.nanmean([q['tau_' + lab] for q in rows]):+.2f} ± {np.nanstd([q['tau_' + lab] for q in rows]):.2f}"
                for lab in labels))
        for q in rows_m:
            print("  seed {seed} generation {generation}: ".format(**q) + ", ".join(
                f"{k[4:]} {v:+.2f}" for k, v in q.items() if k.startswith("tau_")))


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
