"""Train configs/likelihoods-mnist.yaml once per decoder likelihood and compare their importance-weighted NLL on
MNIST test images; writes the table into configs/README.md between `<!-- likelihood-table:begin -->` and
`<!-- likelihood-table:end -->`.

    .venv/bin/python configs/compare_likelihoods.py [--k 1000] [--images 1000] [--write]

Only the decoder's last layer differs between the runs: it ends at what the likelihood reads per pixel
(`Likelihood.params_per_value`: 1, 2 for gaussian_per_dim, 256 logits for categorical256, 3 x 10 for the
logistic mixture). One torch thread; training and evaluation CPU seconds are reported with the table.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "likelihoods-mnist.yaml"
BEGIN, END = "<!-- likelihood-table:begin -->", "<!-- likelihood-table:end -->"
LIKELIHOODS = ["bernoulli", "continuous_bernoulli", "gaussian", "gaussian_learned", "gaussian_per_dim", "laplace",
               "categorical256", "logistic_mixture"]


def overrides(name: str) -> list[str]:
    """model.likelihood and the decoder's last layer sized for it."""
    from vaelab.core.config import load_config
    from vaelab.core.vocab import LIKELIHOODS as REG, entry_options

    cfg = load_config(CONFIG)
    opts = entry_options(REG, name, {}, "model.likelihood_args", "model.likelihood")
    per_value = REG.get(name).per_value(opts)
    last = len(cfg.model.decoder) - 1
    token = cfg.model.decoder[last]  # CT2d_16_1_4_2_1: out channels = per_value x 1 data channel
    parts = token.split("_")
    parts[2] = str(per_value)
    return [f"model.likelihood={name}", f"model.decoder.{last}={'_'.join(parts)}", f"name=likelihoods-mnist-{name}",
            "train.progress=false", "train.figures=false"]


def ensure_run(name: str, root: Path) -> tuple[Path, float]:
    from vaelab.core.config import load_config
    from vaelab.training.runs import read_metrics
    from vaelab.training.trainer import train

    run = root / name
    if (run / "checkpoint.pt").is_file():
        return run, sum(r["seconds"] for r in read_metrics(run))
    t = time.process_time()
    train(load_config(CONFIG, overrides(name)), run)
    return run, time.process_time() - t


def measure(name: str, run_dir: Path, k: int, images: int) -> dict:
    from vaelab.use.inputs import dataset_items
    from vaelab.use.likelihood import nll
    from vaelab.training.runs import load_run

    run = load_run(run_dir)
    items = dataset_items(run, limit=images)  # the first `images` of the 10,000 MNIST test images
    lik = run.model.likelihood
    t = time.process_time()
    per_item = k * items.x[0].numel() * lik.params_per_value
    v = nll(run.model, items.x, k=k, batch_size=max(1, min(64, 2**24 // per_item)), generator=torch.Generator().manual_seed(0))
    elbo = nll(run.model, items.x, k=1, generator=torch.Generator().manual_seed(0))
    d = items.x[0].numel()
    eight_bit = bool(lik.discrete and lik.levels == 256)
    return {"likelihood": lik.describe(), "name": name, "kind": "pmf over 256 levels" if eight_bit else
            ("pmf over {0, 1}" if lik.discrete else "density on [0, 1]"),
            "iw_nll": float(v.mean()), "elbo": float(elbo.mean()), "k": k, "images": len(items),
            "bits_per_dim": float(v.mean()) / (math.log(2) * d) if eight_bit else None,
            "eval_cpu_s": time.process_time() - t}


def table(rows: list[dict], train_s: dict[str, float]) -> str:
    k, n = rows[0]["k"], rows[0]["images"]
    lines = [f"| likelihood | what its NLL is | -ELBO (nats/image) | IW-NLL K={k} (nats/image) | bits/dim | train CPU-s |"
             f" eval CPU-s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        bpd = f"{r['bits_per_dim']:.3f}" if r["bits_per_dim"] is not None else "-"
        lines.append(f"| {r['likelihood']} | {r['kind']} | {r['elbo']:.2f} | {r['iw_nll']:.2f} | {bpd} "
                     f"| {train_s[r['name']]:.0f} | {r['eval_cpu_s']:.0f} |")
    lines.append(f"\nIW-NLL with K={k} importance samples on the first {n:,} of the 10,000 MNIST test images, "
                 "one torch thread.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=REPO / "runs" / "likelihoods")
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--images", type=int, default=1000, help="first N test images (10,000 for the full set)")
    ap.add_argument("--only", default=None, help="comma list of likelihoods")
    ap.add_argument("--write", action="store_true", help="rewrite the table in configs/README.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    names = LIKELIHOODS if args.only is None else [n.strip() for n in args.only.split(",")]
    rows, train_s = [], {}
    for name in names:
        run, train_s[name] = ensure_run(name, args.runs)
        rows.append(measure(name, run, args.k, args.images))
        print(json.dumps({**rows[-1], "train_cpu_s": train_s[name]}), flush=True)
    text = table(rows, train_s)
    print(text)
    if args.write:
        path = REPO / "configs" / "README.md"
        doc = path.read_text()
        pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
        if not pattern.search(doc):
            sys.exit(f"{path}: no {BEGIN} ... {END} markers")
        path.write_text(pattern.sub(lambda _: f"{BEGIN}\n{text}\n{END}", doc))


if __name__ == "__main__":
    main()
