"""Train configs/likelihoods-mnist.yaml once per decoder likelihood and compare their importance-weighted NLL on
MNIST test images; writes the table into configs/README.md between `<!-- likelihood-table:begin -->` and
`<!-- likelihood-table:end -->`.

    .venv/bin/python configs/compare_likelihoods.py [--k 1000] [--images 100] [--elbo-images 10000] [--write]

Only the decoder's last layer differs between the runs: it ends at what the likelihood reads per pixel
(`Likelihood.params_per_value`: 1, 2 for gaussian_per_dim, 256 logits for categorical256, 3 x 10 for the
logistic mixture). One torch thread; training and evaluation CPU seconds are reported with the table. Each run's
training CPU time and measurements are kept in its folder (compare_train.json, compare_eval.json), so the table can
be rebuilt without recomputing, and several likelihoods can be measured by parallel invocations with --only.
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


KIND_BINARY = "cross-entropy on grey values (a pmf only over {0, 1})"
TRAIN_RECORD = "compare_train.json"  # the training CPU seconds of a run this script trained
EVAL_RECORD = "compare_eval.json"  # its measurements, reused while --k/--images/--elbo-images stay the same


def ensure_run(name: str, root: Path) -> tuple[Path, dict]:
    """The run of `name` under root, trained now unless its checkpoint exists; its training record."""
    from vaelab.core.config import load_config
    from vaelab.training.trainer import train

    run = root / name
    if not (run / "checkpoint.pt").is_file():
        t, w = time.process_time(), time.time()
        train(load_config(CONFIG, overrides(name)), run)
        (run / TRAIN_RECORD).write_text(json.dumps({"train_cpu_s": time.process_time() - t,
                                                    "train_wall_s": time.time() - w}) + "\n")
    record = json.loads((run / TRAIN_RECORD).read_text()) if (run / TRAIN_RECORD).is_file() else {}
    return run, record


def timed_nll(model, x, k: int) -> tuple[torch.Tensor, float]:
    from vaelab.use.likelihood import nll

    per_item = k * x[0].numel() * model.likelihood.params_per_value  # decoder outputs per item for the K samples
    t = time.process_time()
    v = nll(model, x, k=k, batch_size=max(1, min(256, 2**24 // per_item)), generator=torch.Generator().manual_seed(0))
    return v, time.process_time() - t


def measure(name: str, run_dir: Path, k: int, images: int, elbo_images: int) -> dict:
    """IW-NLL with k samples on the first `images` MNIST test images; the negative ELBO (one draw, analytic KL)
    on those and on the first `elbo_images`. Cached in the run folder."""
    from vaelab.training.runs import load_run
    from vaelab.use.inputs import dataset_items

    cache = run_dir / EVAL_RECORD
    key = {"k": k, "images": images, "elbo_images": elbo_images}
    if cache.is_file():
        old = json.loads(cache.read_text())
        if all(old.get(a) == b for a, b in key.items()):
            return old
    run = load_run(run_dir)
    lik = run.model.likelihood
    items = dataset_items(run, limit=max(images, elbo_images))  # the MNIST test split, in file order
    x = items.x
    iw, iw_s = timed_nll(run.model, x[:images], k)
    elbo_all, elbo_s = timed_nll(run.model, x[:elbo_images], 1)
    d = x[0].numel()
    eight_bit = bool(lik.discrete and lik.levels == 256)
    bpd = (lambda nats: nats / (math.log(2) * d)) if eight_bit else (lambda nats: None)
    row = {**key, "name": name, "likelihood": lik.describe(),
           "kind": "pmf over 256 levels" if eight_bit else ("pmf over {0, 1}" if lik.discrete else "density on [0, 1]"),
           "iw_nll": float(iw.mean()), "iw_nll_sem": float(iw.std() / math.sqrt(len(iw))),
           "elbo_same": float(elbo_all[:images].mean()), "elbo_all": float(elbo_all.mean()),
           "bits_per_dim": bpd(float(iw.mean())), "bits_per_dim_elbo_all": bpd(float(elbo_all.mean())),
           "iw_cpu_s": iw_s, "elbo_cpu_s": elbo_s, "epochs": run.config.train.epochs,
           "torch_threads": torch.get_num_threads()}
    cache.write_text(json.dumps(row) + "\n")
    return row


def table(rows: list[dict], train: dict[str, dict]) -> str:
    k, n, ne = rows[0]["k"], rows[0]["images"], rows[0]["elbo_images"]
    lines = [f"| likelihood | what its NLL is | IW-NLL K={k}, first {n:,} (nats/image) | -ELBO, same {n:,} | "
             f"-ELBO, first {ne:,} | bits/dim (IW / -ELBO {ne:,}) | epochs | train CPU-s | IW eval CPU-s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        bpd = (f"{r['bits_per_dim']:.3f} / {r['bits_per_dim_elbo_all']:.3f}" if r["bits_per_dim"] is not None
               else "- (a density)" if r["kind"].startswith("density") else "- (not 8-bit)")
        t = train.get(r["name"], {}).get("train_cpu_s")
        lines.append(f"| {r['likelihood']} | {r['kind']} | {r['iw_nll']:.1f} ± {r['iw_nll_sem']:.1f} | "
                     f"{r['elbo_same']:.1f} | {r['elbo_all']:.1f} | {bpd} | {r['epochs']} | "
                     f"{'-' if t is None else f'{t:.0f}'} | {r['iw_cpu_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=REPO / "runs" / "likelihoods")
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--images", type=int, default=100,
                    help="IW-NLL on the first N test images (10000: all; configs/README.md gives the cost)")
    ap.add_argument("--elbo-images", type=int, default=10000, help="negative ELBO on the first N test images")
    ap.add_argument("--only", default=None, help="comma list of likelihoods")
    ap.add_argument("--write", action="store_true", help="rewrite the table in configs/README.md")
    ap.add_argument("--train-only", action="store_true", help="train the missing runs, measure nothing")
    args = ap.parse_args()
    torch.set_num_threads(1)
    names = LIKELIHOODS if args.only is None else [n.strip() for n in args.only.split(",")]
    rows, train = [], {}
    for name in names:
        run, train[name] = ensure_run(name, args.runs)
        if args.train_only:
            print(json.dumps({"name": name, "run": str(run), **train[name]}), flush=True)
            continue
        rows.append(measure(name, run, args.k, args.images, args.elbo_images))
        print(json.dumps({**rows[-1], **train[name]}), flush=True)
    if args.train_only:
        return
    text = table(rows, train)
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
