"""`vaelab ood`: score in- and out-of-distribution items with any registered OOD score (NLL, likelihood regret,
complexity-corrected NLL, see `vaelab.use.ood_scores.OOD_SCORES`); per-item CSV, AUROC/AUPRC/FPR@95%TPR per
score, and a ROC figure."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaelab.core.checkpoint import atomic_write_text
from vaelab.core.progress import stage
from vaelab.plots import new_figure, save_figure
from vaelab.training.runs import Run
from vaelab.use.inputs import Items, labels_for
from vaelab.core.errors import ConfigError
from vaelab.use.ood_scores import (ScoreContext, auprc, auroc, compute_scores, default_scores, fpr_at_tpr,
                                   not_applicable, score_options)

SCORES = ("nll", "regret", "complexity")  # the registered scores when this was written; see OOD_SCORES


@dataclass
class OODResult:
    metrics: dict[str, dict[str, float]]  # score -> {auroc, auprc, fpr95}
    csv: Path
    figure: Path
    summary: Path
    notes: dict[str, Any]  # per set, what the scores reported besides their values (e.g. regret's ELBO check)


def score_items(run: Run, items: Items, *, scores=SCORES, options: dict[str, dict] | None = None, k: int = 1,
                seed: int = 0, label: int | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """({score: (N,) values}, notes) for one set of items."""
    y = labels_for(run, items, label) if run.model.conditional else None
    ctx = ScoreContext(run.model, items.x, y, items.value_range, k=k, seed=seed)
    values: dict[str, torch.Tensor] = {}
    for name in scores:  # one progress stage per score (regret re-fits every item: the long one)
        with stage(f"ood: {name} on {items.source}", len(items)):
            values.update(compute_scores(ctx, (name,), options))
    return values, ctx.notes


def cli_options(regret_steps: int | None = None, regret_lr: float | None = None, regret_k: int | None = None,
                regret_weight_decay: float | None = None, compressor: str | None = None) -> dict[str, dict]:
    """The per-score options from the CLI's flags (only those given; the rest keep the scores' defaults)."""
    regret = {k: v for k, v in (("steps", regret_steps), ("lr", regret_lr), ("k", regret_k),
                                ("weight_decay", regret_weight_decay)) if v is not None}
    return {"regret": regret, "complexity": {} if compressor is None else {"compressor": compressor}}


def ood(run: Run, inside: Items, outside: Items, out_dir: Path, *, scores=None, options: dict[str, dict] | None = None,
        k: int = 1, seed: int = 0, label: int | None = None) -> OODResult:
    """Score both sets with every requested score (None: every registered score that applies to the run, the others
    listed with the reason in the notes); AUROC, AUPRC, FPR@95%TPR per score; CSV, JSON and ROC figure."""
    skipped: dict[str, str] = {}
    if scores is None:
        scores, skipped = default_scores(run.model)
    scores = tuple(scores)
    for name in scores:
        score_options(name, (options or {}).get(name))  # a bad name or option fails before any work
        why = not_applicable(name, run.model)
        if why is not None:
            raise ConfigError(f"--scores {name}: {why}")
    s_in, notes_in = score_items(run, inside, scores=scores, options=options, k=k, seed=seed, label=label)
    s_out, notes_out = score_items(run, outside, scores=scores, options=options, k=k, seed=seed, label=label)
    metrics = {s: {"auroc": auroc(s_in[s], s_out[s]), "auprc": auprc(s_in[s], s_out[s]),
                   "fpr95": fpr_at_tpr(s_in[s], s_out[s], 0.95)} for s in scores}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["set", "index", "name", *scores])
    for tag, items, sc in (("in", inside, s_in), ("out", outside, s_out)):
        for i in range(len(items)):
            w.writerow([tag, i, items.names[i], *[f"{float(sc[s][i]):.6g}" for s in scores]])
    csv_path = out_dir / "ood_scores.csv"
    atomic_write_text(csv_path, buf.getvalue())
    fig_path = out_dir / "ood_roc.png"
    _roc_figure(s_in, s_out, metrics, fig_path, f"{Path(run.path).name}: ROC, in {inside.source} ({len(inside)}) "
                f"vs out {outside.source} ({len(outside)})")
    notes = {"in": notes_in, "out": notes_out, "skipped": skipped, "warnings": _warnings(notes_in, options),
             "regret": regret_lines({"in": notes_in, "out": notes_out}),
             "likelihood": run.model.likelihood.describe(), "units": "nats per item (complexity: bits)"}
    summary = out_dir / "ood.json"
    used = {n: score_options(n, (options or {}).get(n)).model_dump() for n in scores}
    atomic_write_text(summary, json.dumps({"in": inside.source, "out": outside.source, "n_in": len(inside),
                                           "n_out": len(outside), "k": k, "options": used, "metrics": metrics,
                                           "notes": notes}, indent=2) + "\n")
    return OODResult(metrics, csv_path, fig_path, summary, notes)


def _warnings(notes_in: dict[str, Any], options: dict[str, dict] | None) -> list[str]:
    """What the user must know about the scores (one line each): a regret re-fit that made the in-distribution
    NLL worse on average or on most items is not a regret, whatever its AUROC."""
    out = []
    r = notes_in.get("regret")
    if r is not None and (r["mean_nats"] < 0 or r["share_worse"] > 0.5):
        o = score_options("regret", (options or {}).get("regret"))
        out.append(f"likelihood regret: re-fitting the encoder made the NLL worse on {100 * r['share_worse']:.0f}% of the "
                   f"in-distribution items (mean regret {r['mean_nats']:.2f} nats) with {o.steps} steps at lr {o.lr:g}: "
                   "this configuration cannot improve the ELBO; use the paper's defaults (--regret-steps 100 "
                   "--regret-lr 2e-4) or a smaller learning rate")
    return out


def regret_lines(notes: dict[str, Any]) -> list[str]:
    """One line per set on how the regret's re-fit changed the NLL: the mean and median regret, and how many items
    it made worse (regret < 0), with their own mean, so those items are reported rather than averaged away."""
    out = []
    for tag, what in (("in", "in-distribution"), ("out", "out-of-distribution")):
        r = notes.get(tag, {}).get("regret")
        if r is None:
            continue
        worse = (f"made the NLL worse on {r['n_worse']} of {r['n']} items (mean {r['mean_worse_nats']:.2f} nats on those)"
                 if r["n_worse"] else f"improved the NLL on all {r['n']} items")
        out.append(f"regret, {what}: mean {r['mean_nats']:.2f} nats, median {r['median_nats']:.2f}; the re-fit {worse}")
    return out


def _roc_figure(s_in, s_out, metrics, path: Path, title: str) -> None:
    from sklearn.metrics import roc_curve

    fig, ax = new_figure(figsize=(5, 4.5))
    for s in s_in:
        labels = np.concatenate([np.zeros(len(s_in[s])), np.ones(len(s_out[s]))])
        fpr, tpr, _ = roc_curve(labels, np.concatenate([s_in[s].numpy(), s_out[s].numpy()]))
        ax.plot(fpr, tpr, label=f"{s} (AUROC {metrics[s]['auroc']:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("false positive rate (in-distribution flagged)")
    ax.set_ylabel("true positive rate (OOD caught)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right")
    save_figure(fig, path)


__all__ = ["ood", "score_items", "cli_options", "regret_lines", "OODResult", "SCORES"]
