"""`vaelab report`: one self-contained HTML page per run (config, metrics, every figure as a base64 data URI),
so it opens from disk in any browser with no server and no neighbouring files."""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from vaelab.core.checkpoint import atomic_write_text
from vaelab.plots import loss_curves
from vaelab.training.runs import Run, read_metrics
from vaelab.use.evaluate import EVALUATION_NAME, table_rows

REPORT_NAME = "report.html"
MAX_FIGURES = 60
CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
pre{background:#f6f6f6;padding:1em;overflow:auto}figure{display:inline-block;margin:0.5em;vertical-align:top}
figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:0.85em;color:#555}
img.small{width:320px;image-rendering:pixelated}"""


def _table(rows, header=("metric", "value")) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(path: Path, root: Path) -> str:
    raw = path.read_bytes()
    data = base64.b64encode(raw).decode("ascii")
    name = html.escape(str(path.relative_to(root)))
    width = int.from_bytes(raw[16:20], "big") if raw[12:16] == b"IHDR" else 1000  # PNG header
    cls = ' class="small"' if width < 240 else ""  # raw image grids of 8x8 digits: show them enlarged, pixel-sharp
    return f'<figure><img{cls} alt="{name}" src="data:image/png;base64,{data}"><figcaption>{name}</figcaption></figure>'


def build_report(run: Run, out: Path | None = None) -> Path:
    """Write RUN/report.html (or `out`) and return its path; figures are every PNG in the run folder tree."""
    root = Path(run.path)
    path = Path(out) if out else root / REPORT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)  # an unusable --out fails before any figure is drawn
    history = read_metrics(root) or run.history
    if history and not (root / "loss_curve.png").is_file():
        loss_curves(history, root / "loss_curve.png", title=f"{run.config.name}: loss")
    parts = [f"<h1>{html.escape(run.config.name)}</h1>",
             f"<p>run folder <code>{html.escape(str(root.resolve()))}</code>; model {html.escape(type(run.model).__name__)} "
             f"input {tuple(run.model.input_shape)} latent {tuple(run.model.latent_shape)}, "
             f"{run.model.num_parameters():,} parameters</p>"]
    if history:
        last = history[-1]
        parts += ["<h2>Training</h2>", _table([(k, f"{v:.5g}" if isinstance(v, float) else v) for k, v in last.items()],
                                             ("last epoch", "value"))]
    ev = root / EVALUATION_NAME
    if ev.is_file():
        parts += ["<h2>Evaluation</h2>", _table(table_rows(json.loads(ev.read_text())))]
    for ood_json in sorted(root.rglob("ood.json")):
        d = json.loads(ood_json.read_text())
        rows = [(s, f"{m['auroc']:.4f}", f"{m['auprc']:.4f}", f"{m['fpr95']:.4f}") for s, m in d["metrics"].items()]
        parts += [f"<h2>Out-of-distribution: in {html.escape(d['in'])} vs out {html.escape(d['out'])}</h2>",
                  _table(rows, ("score", "AUROC", "AUPRC", "FPR@95%TPR"))]
    pngs = sorted(p for p in root.rglob("*.png") if p.is_file())
    # the training figures first, then the rest; per-item outputs (reconstructions/item-*.png) are left out
    pngs = [p for p in pngs if p.parent == root] + [p for p in pngs if p.parent != root and not p.stem.startswith("item-")]
    parts.append("<h2>Figures</h2>")
    parts += [_img(p, root) for p in pngs[:MAX_FIGURES]]
    parts += ["<h2>Config</h2>", f"<pre>{html.escape(run.config.to_yaml())}</pre>"]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(run.config.name)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>\n")
    atomic_write_text(path, page)
    return path


__all__ = ["build_report", "REPORT_NAME"]
