"""`vaelab search-report DIR`: Pareto front and hypervolume per generation (PNG), the Pareto-optimal
architectures with their layer strings, every trial as CSV (seed 000's `latent_dim, mid_layer, loss, OOD`
first where they exist, plus a `predicted` flag), and the surrogate's error and Kendall tau per generation.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from optuna.trial import FrozenTrial, TrialState

from vaelab.core.errors import ConfigError
from vaelab.search.hypervolume import hypervolume
from vaelab.search.runner import SPACE_NAME, UNITS_ATTR, open_study
from vaelab.search.sampler import PREDICTED_ATTR, generation_quality, trial_generation
from vaelab.search.space import SearchSpace, load_space
from vaelab.search.surrogate import non_domination_rank, to_minimise
from vaelab.search.trials import OUTCOME, outcome, tally

SEED000_COLUMNS = ("latent_dim", "mid_layer", "loss", "OOD")


def normalise(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return (values - lo) / np.where(hi - lo > 0, hi - lo, 1.0)


def hypervolume_curve(values_by_gen: Sequence[np.ndarray], lo: np.ndarray, hi: np.ndarray, margin: float = 0.1) -> list[float]:
    """Hypervolume of all points up to each generation, objectives min-max normalised, reference 1 + margin."""
    ref = np.full(len(lo), 1.0 + margin)
    out, seen = [], np.zeros((0, len(lo)))
    for v in values_by_gen:
        seen = np.vstack([seen, np.asarray(v, dtype=float).reshape(-1, len(lo))])
        out.append(hypervolume(normalise(seen, lo, hi), ref))
    return out


@dataclass
class SearchReport:
    folder: Path
    trials_csv: Path
    quality_csv: Path
    figures: list[Path]
    pareto: list[dict[str, Any]]  # Pareto-optimal trials: number, genes, objectives, layers, run_dir
    hypervolume: list[float]  # per generation
    quality: list[dict[str, Any]]  # per generation: n, mae_<label>, tau_<label>
    counts: dict[str, int]


def search_report(folder: str | Path, storage: str | None = None) -> SearchReport:
    """Read the search in `folder` (its search.yaml and storage) and write the report files into it."""
    folder = Path(folder)
    if not (folder / SPACE_NAME).is_file():
        raise ConfigError(f"{folder} is not a search folder (no {SPACE_NAME}); give the --out folder of `vaelab search`")
    space = load_space(folder / SPACE_NAME)
    study, _ = open_study(folder, space, storage, create=False)
    trials = study.get_trials(deepcopy=False)
    labels, directions, pop = space.labels(), space.directions(), space.search.population
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None]
    trials_csv = _write_trials(folder / "trials.csv", space, trials)
    gens = sorted({trial_generation(t, pop) for t in done})
    by_gen = [[t for t in done if trial_generation(t, pop) == g] for g in gens]
    vals = [to_minimise(np.array([t.values for t in ts], dtype=float), directions) for ts in by_gen]
    hv: list[float] = []
    figures: list[Path] = []
    if done:
        allv = np.vstack(vals)
        lo, hi = allv.min(axis=0), allv.max(axis=0)
        hv = hypervolume_curve(vals, lo, hi)
        figures += [_plot_fronts(folder / "pareto_fronts.png", gens, by_gen, labels, directions), _plot_hv(folder / "hypervolume.png", gens, hv)]
    quality = generation_quality(trials, labels, pop)
    quality_csv = folder / "surrogate_quality.csv"
    _write_rows(quality_csv, quality, ["generation", "n"] + [f"{m}_{lab}" for lab in labels for m in ("mae", "tau")])
    pareto = _pareto(done, directions, labels, space)
    (folder / "pareto.json").write_text(json.dumps(pareto, indent=1))
    return SearchReport(folder, trials_csv, quality_csv, figures, pareto, hv, quality, tally(trials))


def _pareto(done: list[FrozenTrial], directions, labels, space: SearchSpace) -> list[dict[str, Any]]:
    done = [t for t in done if t.user_attrs.get(OUTCOME) != "reused"]  # a reused trial repeats its twin's point
    if not done:
        return []
    rank = non_domination_rank(to_minimise(np.array([t.values for t in done], dtype=float), directions))
    front = [t for t, r in zip(done, rank) if r == 0]
    front.sort(key=lambda t: t.values[0] * (1 if directions[0] == "minimize" else -1))
    return [{"trial": t.number, "genes": t.params, "objectives": dict(zip(labels, t.values)),
             "layers": t.user_attrs.get("layers"), "run_dir": t.user_attrs.get("run_dir"),
             "units": t.user_attrs.get(UNITS_ATTR) or {}} for t in front]


def trial_rows(space: SearchSpace, trials: list[FrozenTrial]) -> tuple[list[dict[str, Any]], list[str]]:
    labels, pop = space.labels(), space.search.population
    genes = list(space.genes)
    first = [c for c in SEED000_COLUMNS if c in genes or c in labels]
    cols = first + [g for g in genes if g not in first] + [lab for lab in labels if lab not in first]
    cols += ["predicted"] + [f"predicted_{lab}" for lab in labels]
    cols += ["number", "state", "outcome", "generation", "seconds", "run_dir", "reused_from", "fail_reason"]
    rows = []
    for t in trials:
        pred = t.user_attrs.get(PREDICTED_ATTR) or {}
        row: dict[str, Any] = {**t.params, "number": t.number, "state": t.state.name, "outcome": outcome(t),
                               "reused_from": t.user_attrs.get("reused_from", ""), "generation": trial_generation(t, pop),
                               "seconds": t.user_attrs.get("seconds", ""), "run_dir": t.user_attrs.get("run_dir", ""),
                               "fail_reason": t.user_attrs.get("fail_reason", ""), "predicted": int(bool(pred))}
        for i, lab in enumerate(labels):
            row[lab] = t.values[i] if t.values is not None else ""
            row[f"predicted_{lab}"] = pred.get(lab, "")
        rows.append(row)
    return rows, cols


def _write_trials(path: Path, space: SearchSpace, trials: list[FrozenTrial]) -> Path:
    rows, cols = trial_rows(space, trials)
    _write_rows(path, rows, cols)
    return path


def _write_rows(path: Path, rows: list[dict[str, Any]], cols: list[str]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def _plot_fronts(path: Path, gens: list[int], by_gen: list[list[FrozenTrial]], labels: list[str], directions: list[str]) -> Path:
    """Objectives 1 and 2 of every finished trial, coloured by generation, with each generation's front so far."""
    import matplotlib

    from vaelab.plots import new_figure, save_figure

    fig, ax = new_figure(figsize=(6.5, 5))
    cmap = matplotlib.colormaps["viridis"].resampled(max(len(gens), 2))
    seen: list[tuple[float, float]] = []
    for i, (g, ts) in enumerate(zip(gens, by_gen)):
        pts = [(t.values[0], t.values[1]) for t in ts]
        seen += pts
        ax.scatter(*zip(*pts), s=18, color=cmap(i), alpha=0.6)
        arr = np.array(seen)
        rank = non_domination_rank(to_minimise(arr, directions[:2]))
        front = arr[rank == 0]
        front = front[np.argsort(front[:, 0])]
        ax.step(front[:, 0], front[:, 1], where="post" if directions[1] == "minimize" else "pre", color=cmap(i), lw=1.5, label=f"gen {g}")
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title("Pareto front per generation (all finished trials so far)")
    ax.legend(fontsize=7, ncol=2)
    save_figure(fig, path)
    return path


def _plot_hv(path: Path, gens: list[int], hv: list[float]) -> Path:
    from vaelab.plots import integer_ticks, new_figure, save_figure

    fig, ax = new_figure(figsize=(5.5, 3.8))
    ax.plot(gens, hv, marker="o")
    ax.set_xlabel("generation")
    integer_ticks(ax.xaxis, gens)
    ax.set_title("hypervolume of the trials so far, per generation")
    ax.set_ylabel("hypervolume (normalised objectives, ref 1.1)")
    ax.grid(alpha=0.3)
    save_figure(fig, path)
    return path


def pareto_lines(report: SearchReport) -> list[str]:
    """Human-readable lines for the Pareto-optimal architectures."""
    lines = []
    for p in report.pareto:
        units = p.get("units") or {}
        objs = ", ".join(f"{k} {v:.4g}" + (f" ({units[k]})" if units.get(k) else "") for k, v in p["objectives"].items())
        lines.append(f"trial {p['trial']}: {p['genes']} -> {objs}   ({p['run_dir']})")
        layers = p.get("layers") or {}
        for part in ("encoder", "heads", "decoder"):
            v = layers.get(part)
            if isinstance(v, dict):
                lines.append(f"    {part}: " + "; ".join(f"{k}: {', '.join(map(str, x))}" for k, x in v.items()))
            elif v:
                lines.append(f"    {part}: {', '.join(map(str, v))}")
    return lines


def fmt(x: float) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"
