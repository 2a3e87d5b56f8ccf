"""`vaelab ood`: score in- and out-of-distribution items with NLL, likelihood regret and complexity-corrected NLL;
per-item CSV, AUROC/AUPRC/FPR@95%TPR per score, and a ROC figure."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vaelab.core.checkpoint import atomic_write_text
from vaelab.use.ood_scores import auprc, auroc, fpr_at_tpr, nll_scores
from vaelab.plots import new_figure, save_figure
from vaelab.training.runs import Run
from vaelab.use.complexity import complexity_corrected
from vaelab.use.inputs import Items, labels_for
from vaelab.use.regret import regret_scores

SCORES = ("nll", "regret", "complexity")


@dataclass
class OODResult:
    metrics: dict[str, dict[str, float]]  # score -> {auroc, auprc, fpr95}
    csv: Path
    figure: Path
    summary: Path


def score_items(run: Run, items: Items, *, scores=SCORES, k: int = 1, regret_steps: int = 10, regret_lr: float = 1e-3,
                compressor: str = "png", seed: int = 0, label: int | None = None) -> dict[str, torch.Tensor]:
    y = labels_for(run, items, label) if run.model.conditional else None
    g = torch.Generator().manual_seed(seed)
    nll = nll_scores(run.model, items.x, y, k=k, generator=g)
    out = {}
    if "nll" in scores:
        out["nll"] = nll
    if "regret" in scores:
        out["regret"] = regret_scores(run.model, items.x, y, steps=regret_steps, lr=regret_lr, k=k,
                                      generator=torch.Generator().manual_seed(seed + 1))
    if "complexity" in scores:
        out["complexity"] = complexity_corrected(nll, items.x, items.value_range, compressor).float()
    return out


def ood(run: Run, inside: Items, outside: Items, out_dir: Path, *, scores=SCORES, k: int = 1, regret_steps: int = 10,
        regret_lr: float = 1e-3, compressor: str = "png", seed: int = 0, label: int | None = None) -> OODResult:
    bad = [s for s in scores if s not in SCORES]
    if bad:
        raise ValueError(f"--scores: unknown {bad}; choose from {', '.join(SCORES)}")
    kw = dict(scores=scores, k=k, regret_steps=regret_steps, regret_lr=regret_lr, compressor=compressor, seed=seed, label=label)
    s_in = score_items(run, inside, **kw)
    s_out = score_items(run, outside, **kw)
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
    _roc_figure(s_in, s_out, metrics, fig_path, f"in: {inside.source}  out: {outside.source}")
    summary = out_dir / "ood.json"
    import json

    atomic_write_text(summary, json.dumps({"in": inside.source, "out": outside.source, "n_in": len(inside),
                                           "n_out": len(outside), "k": k, "regret_steps": regret_steps,
                                           "metrics": metrics}, indent=2) + "\n")
    return OODResult(metrics, csv_path, fig_path, summary)


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
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right")
    save_figure(fig, path)


__all__ = ["ood", "score_items", "OODResult", "SCORES"]
