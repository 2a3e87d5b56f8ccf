"""`vaelab report RUN [RUN2 ...]`: one self-contained HTML page (every figure a base64 data URI), so it opens
from disk in any browser with no server and no neighbouring files.

One run: its config, last-epoch and evaluation tables (every number with its unit), OOD results and figures.
Several runs: their training curves overlaid per metric (runs in different units on separate figures), a table
of final metrics side by side, posterior collapse (0 active units) flagged, and a warning when the runs were
trained on different data. Collapse is read from the evaluation and from the training log's last epoch. Pages
name runs by folder name, never by absolute path.
"""
from __future__ import annotations

import base64
import html
import json
import tempfile
from pathlib import Path
from typing import Any

from vaelab.core.checkpoint import atomic_write_text
from vaelab.plots import loss_curves, overlay_curves
from vaelab.training.runs import Run, read_metrics
from vaelab.use.evaluate import EVALUATION_NAME
from vaelab.use.units import LossUnits, fmt, run_units, unit_of, with_unit

REPORT_NAME = "report.html"
COMPARISON_NAME = "comparison.html"
MAX_FIGURES = 60
CURVE_KEYS = ("val_loss", "train_loss", "val_recon", "val_kl")
CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
td.num{text-align:right}.bad{background:#fde2e2;font-weight:bold}.warn{background:#fff4d6;padding:0.5em}
pre{background:#f6f6f6;padding:1em;overflow:auto}figure{display:inline-block;margin:0.5em;vertical-align:top}
figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:0.85em;color:#555}
img.small{width:320px;image-rendering:pixelated}"""


def _esc(v: Any) -> str:
    return html.escape(str(v))


def _table(rows, header=("metric", "value")) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = ""
    for r in rows:
        cells = []
        for c in r:
            cls = ' class="bad"' if isinstance(c, str) and c.startswith("COLLAPSED") else ""
            cells.append(f"<td{cls}>{_esc(c)}</td>")
        body += "<tr>" + "".join(cells) + "</tr>"
    return f"<table><tr>{head}</tr>{body}</table>"


def _img_bytes(raw: bytes, caption: str) -> str:
    data = base64.b64encode(raw).decode("ascii")
    width = int.from_bytes(raw[16:20], "big") if raw[12:16] == b"IHDR" else 1000  # PNG header
    cls = ' class="small"' if width < 240 else ""  # raw image grids of 8x8 digits: show them enlarged, pixel-sharp
    return (f'<figure><img{cls} alt="{_esc(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>")


def _drawn(draw, caption: str) -> str:
    """Embed a figure drawn by `draw(path)` into a temporary file (nothing is left in any run folder)."""
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "figure.png"
        draw(p)
        return _img_bytes(p.read_bytes(), caption)


def _page(title: str, parts: list[str]) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{_esc(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>\n")


def _unit(run: Run) -> LossUnits:
    return run_units(run)


def _evaluation(run: Run) -> dict[str, Any]:
    ev = Path(run.path) / EVALUATION_NAME
    return json.loads(ev.read_text()) if ev.is_file() else {}


def collapse_note(ev: dict[str, Any], missing: str = "not evaluated (run vaelab evaluate)") -> str:
    """'COLLAPSED ...' when no latent dimension is active, else how many are; `missing` without numbers."""
    if "active_units" not in ev:
        return missing
    active, dims = ev["active_units"], ev.get("latent_dims", "?")
    if active == 0:
        return f"COLLAPSED: 0 of {dims} latent dims active"
    return f"no: {active} of {dims} latent dims active"


def logged_units(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The last epoch's active units and latent dims from metrics.jsonl ({} for runs that did not log them)."""
    last = history[-1] if history else {}
    if "active_units" not in last:
        return {}
    return {"active_units": last["active_units"], "latent_dims": len(last.get("kl_per_dim") or []) or "?"}


def kl_per_dim_text(kl: list[float], show: int = 32) -> str:
    """Every unit's KL for small latents; a summary (max, median, min) for large ones."""
    if len(kl) <= show:
        return ", ".join(fmt(v) for v in kl)
    ordered = sorted(kl)
    return f"{len(kl)} dims: max {fmt(ordered[-1])}, median {fmt(ordered[len(kl) // 2])}, min {fmt(ordered[0])}"


# ------------------------------------------------------------------------------------------------ one run
def build_report(run: Run, out: Path | None = None) -> Path:
    """Write RUN/report.html (or `out`) and return its path; figures are every PNG in the run folder tree."""
    root = Path(run.path)
    path = Path(out) if out else root / REPORT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)  # an unusable --out fails before any figure is drawn
    history = read_metrics(root) or run.history
    unit = _unit(run)
    m = run.model
    parts = [f"<h1>{_esc(run.config.name)}</h1>",
             f"<p>run folder <code>{_esc(root.resolve().name)}</code>; input {tuple(m.input_shape)}, latent "
             f"{tuple(m.latent_shape)}, {m.num_parameters():,} parameters; trained on "
             f"{_esc(run.data_spec.name or run.config.data.name)}; decoder likelihood {_esc(m.likelihood.describe())}; training "
             f"losses in {_esc(unit.total)}</p>"]
    if history:
        last = history[-1]
        rows = [(k, fmt(v), unit_of(k, training=unit)) for k, v in last.items() if isinstance(v, (int, float))]
        if "kl_per_dim" in last:  # posterior collapse, as the training log measured it on validation data
            rows += [("kl_per_dim", kl_per_dim_text(last["kl_per_dim"]), unit_of("kl_per_dim")),
                     ("posterior collapse", collapse_note(logged_units(history)), "")]
        parts += ["<h2>Training: last epoch</h2>", _table(rows, ("metric", "value", "unit")),
                  _drawn(lambda p: loss_curves(history, p, title=f"{run.config.name}: loss per epoch", unit=unit),
                         "loss per epoch (train solid, validation dashed)")]
    ev = _evaluation(run)
    if ev:
        rows = [(k, fmt(v), unit_of(k, training=unit)) for k, v in ev.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)]
        rows.append(("posterior collapse", collapse_note(ev), ""))
        parts += [f"<h2>Evaluation on {_esc(ev.get('data', ''))}</h2>", _table(rows, ("metric", "value", "unit"))]
    for ood_json in sorted(root.rglob("ood.json")):
        d = json.loads(ood_json.read_text())
        rows = [(s, f"{m_['auroc']:.4f}", f"{m_['auprc']:.4f}", f"{m_['fpr95']:.4f}") for s, m_ in d["metrics"].items()]
        parts += [f"<h2>Out-of-distribution: in {_esc(d['in'])} vs out {_esc(d['out'])}</h2>",
                  _table(rows, ("score", "AUROC (0..1)", "AUPRC (0..1)", "FPR at 95% TPR (0..1)"))]
    pngs = sorted(p for p in root.rglob("*.png") if p.is_file() and p.name != "loss_curve.png")
    # the training figures first, then the rest; per-item outputs (reconstructions/item-*.png) are left out
    pngs = [p for p in pngs if p.parent == root] + [p for p in pngs if p.parent != root and not p.stem.startswith("item-")]
    parts.append("<h2>Figures</h2>")
    parts += [_img_bytes(p.read_bytes(), str(p.relative_to(root))) for p in pngs[:MAX_FIGURES]]
    parts += ["<h2>Config</h2>", f"<pre>{_esc(run.config.to_yaml())}</pre>"]
    atomic_write_text(path, _page(run.config.name, parts))
    return path


# ------------------------------------------------------------------------------------------- several runs
def run_labels(runs: list[Run]) -> list[str]:
    """Folder names, made unique with the parent folder where two runs share one."""
    names = [Path(r.path).resolve().name for r in runs]
    return [f"{Path(r.path).resolve().parent.name}/{n}" if names.count(n) > 1 else n for r, n in zip(runs, names)]


def build_comparison(runs: list[Run], out: Path | None = None) -> Path:
    """One page comparing runs: overlaid curves per unit, final metrics side by side, collapse flagged."""
    labels = run_labels(runs)
    units = [_unit(r) for r in runs]
    histories = [read_metrics(r.path) or r.history for r in runs]
    evals = [_evaluation(r) for r in runs]
    datas = [r.data_spec.name or r.config.data.name for r in runs]
    parts = [f"<h1>Comparison of {len(runs)} runs: {_esc(', '.join(labels))}</h1>"]
    if len(set(datas)) > 1:
        parts.append(f"<p class='warn'>These runs were trained on different data ({_esc(', '.join(sorted(set(datas))))}): "
                     "their losses are not comparable.</p>")
    rows = [(lab, r.config.name, d, len(h), f"{r.model.num_parameters():,}", str(tuple(r.model.latent_shape)),
             r.model.likelihood.describe(), u.total) for lab, r, d, h, u in zip(labels, runs, datas, histories, units)]
    parts += ["<h2>Runs</h2>", _table(rows, ("run", "config name", "data", "epochs", "parameters", "latent shape",
                                            "decoder likelihood", "training loss unit"))]
    parts.append("<h2>Training curves</h2>")
    for key in CURVE_KEYS:
        for unit in dict.fromkeys(units):
            group = {lab: h for lab, h, u in zip(labels, histories, units) if u == unit and any(key in row for row in h)}
            if group:
                title, shown = f"{key} per epoch", unit_of(key, training=unit)
                parts.append(_drawn(lambda p, g=group, k=key, t=title, u=shown: overlay_curves(g, k, p, title=t, unit=u),
                                    f"{key} ({shown}): {', '.join(group)}"))
    parts += ["<h2>Final metrics</h2>", _final_table(labels, units, histories, evals)]
    path = Path(out) if out else Path(COMPARISON_NAME)
    atomic_write_text(path, _page("Comparison: " + ", ".join(labels), parts))
    return path


def _final_table(labels, units, histories, evals) -> str:
    keys = [k for k in ("train_loss", "val_loss", "val_recon", "val_kl") if any(h and k in h[-1] for h in histories)]
    rows = [(k, *(with_unit(k, h[-1][k], training=u) if h and k in h[-1] else "-" for h, u in zip(histories, units)))
            for k in keys]
    rows.append(("training time", *(with_unit("seconds", round(sum(r.get("seconds", 0) for r in h), 1)) for h in histories)))
    ev_keys = [k for k in ("negative_elbo", "reconstruction_nll", "kl", "training_loss", "bits_per_dim", "mse", "ssim",
                           "mmd_rbf", "rotation_error_deg", "conditional_sample_accuracy", "active_units")
               if any(k in e for e in evals)]
    ev_keys += sorted({k for e in evals for k in e if k.startswith("iw_nll")})
    rows += [(f"evaluation: {k}", *(with_unit(k, e[k], training=u) if k in e else "not evaluated" for e, u in zip(evals, units)))
             for k in ev_keys]
    data = [e.get("data") for e in evals if e]
    if len(set(data)) > 1:
        rows.append(("evaluated on", *(e.get("data", "-") for e in evals)))
    rows.append(("posterior collapse", *(collapse_note(e) for e in evals)))
    rows.append(("posterior collapse (training log, last epoch)",
                 *(collapse_note(logged_units(h), "not logged") for h in histories)))
    return _table(rows, ("metric", *labels))


__all__ = ["build_report", "build_comparison", "collapse_note", "logged_units", "kl_per_dim_text", "run_labels",
           "REPORT_NAME", "COMPARISON_NAME"]
