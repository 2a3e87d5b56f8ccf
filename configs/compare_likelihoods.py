"""Train configs/likelihoods-mnist.yaml once per decoder likelihood and compare their importance-weighted NLL on
the 10,000 MNIST test images; writes the table into configs/README.md between `<!-- likelihood-table:begin -->`
and `<!-- likelihood-table:end -->`.

    .venv/bin/python configs/compare_likelihoods.py [--only NAME,...] [--items A:B] [--budget-s S] [--write]

Only the decoder's last layer differs between the runs: it ends at what the likelihood reads per pixel
(`Likelihood.params_per_value`: 1, 2 for gaussian_per_dim, 256 logits for categorical256, 3 x 10 for the
logistic mixture). Training uses one torch thread (train.threads=1), so a retraining gives the same weights.

The IW-NLL (K=1000) of 10,000 images costs CPU-hours for the wide likelihoods, so it is computed in shards of
500 images, each kept in a small committed file configs/likelihood-iw/<likelihood>/<start>-<end>.json (per-image
IW-NLL and -ELBO, K, seed, the weights' sha256). Every image's K samples come from its own noise stream, seeded
from (seed, image index), so a shard's values do not depend on which machine or invocation computed it. A run
restarts where the files stop; shards of other weights (another training) are refused. The table is built from
every shard present and says how many images its IW column covers.
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
STORE = REPO / "configs" / "likelihood-iw"
BEGIN, END = "<!-- likelihood-table:begin -->", "<!-- likelihood-table:end -->"
LIKELIHOODS = ["bernoulli", "continuous_bernoulli", "gaussian", "gaussian_learned", "gaussian_per_dim", "laplace",
               "categorical256", "logistic_mixture"]
TEST_IMAGES = 10_000  # the MNIST test split (t10k), in file order
TRAIN_RECORD = "compare_train.json"  # the training CPU seconds of a run this script trained


class Refused(Exception):
    """Stored results that do not belong to the run being tabulated (or to these --k/--seed)."""


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
            "train.progress=false", "train.figures=false", "train.threads=1"]


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


# ------------------------------------------------------------------------------------------- stored shards
def shard_path(store: Path, name: str, start: int, end: int) -> Path:
    return store / name / f"{start:05d}-{end:05d}.json"


def read_shards(store: Path, name: str, digest: str, k: int, seed: int) -> list[dict]:
    """Every stored shard of `name`, sorted by start; Refused if one was measured on other weights, K or seed."""
    shards = []
    for p in sorted((store / name).glob("[0-9]*-[0-9]*.json")):
        s = json.loads(p.read_text())
        if s["weights_sha256"] != digest:
            raise Refused(f"{p.relative_to(store.parent.parent)}: measured on weights sha256 {s['weights_sha256'][:12]}, "
                          f"but the run being tabulated has {digest[:12]}: retrain it with this code (train.threads=1 "
                          "gives the same weights) or move the folder away to start over")
        if (s["k"], s["seed"]) != (k, seed):
            raise Refused(f"{p.name}: K={s['k']}, seed {s['seed']}; this table is K={k}, seed {seed}: pass --k/--seed to match")
        if len(s["iw_nll"]) != s["end"] - s["start"]:
            raise Refused(f"{p}: {len(s['iw_nll'])} values for images {s['start']}..{s['end'] - 1}")
        shards.append(s)
    for a, b in zip(shards, shards[1:]):
        if b["start"] < a["end"]:
            raise Refused(f"{store / name}: shards {a['start']}-{a['end']} and {b['start']}-{b['end']} overlap")
    return shards


def write_json(path: Path, data: dict) -> None:
    from vaelab.core.checkpoint import atomic_write_text

    atomic_write_text(path, json.dumps(data, separators=(",", ":")) + "\n")


def compute_shard(model, x, start: int, end: int, k: int, seed: int, digest: str) -> dict:
    """IW-NLL (K samples) and -ELBO (one draw, analytic KL) of images start..end-1, per image, from the images'
    own noise streams."""
    from vaelab.use.likelihood import nll

    per_item = k * x[0].numel() * model.likelihood.params_per_value
    t = time.process_time()
    iw = nll(model, x[start:end], k=k, batch_size=max(1, min(256, 2**22 // per_item)), seed=seed, first_item=start)
    iw_s = time.process_time() - t
    elbo = nll(model, x[start:end], k=1, batch_size=256, seed=seed, first_item=start)
    return {"start": start, "end": end, "k": k, "seed": seed, "weights_sha256": digest, "iw_cpu_s": round(iw_s, 3),
            "torch_threads": torch.get_num_threads(), "data": "mnist test split (t10k), file order",
            "iw_nll": [round(float(v), 4) for v in iw], "neg_elbo": [round(float(v), 4) for v in elbo]}


def summary(run_dir: Path, name: str, train_record: dict, seed: int) -> dict:
    """The run's description, weights digest and -ELBO on all 10,000 test images (cheap: one draw each)."""
    from vaelab.model.layout import weights_sha256
    from vaelab.training.runs import load_run
    from vaelab.use.inputs import dataset_items
    from vaelab.use.likelihood import nll

    run = load_run(run_dir)
    lik = run.model.likelihood
    x = dataset_items(run, limit=TEST_IMAGES).x
    elbo = nll(run.model, x, k=1, batch_size=256, seed=seed)
    eight_bit = bool(lik.discrete and lik.levels == 256)
    return {"name": name, "likelihood": lik.describe(), "weights_sha256": weights_sha256(run.model),
            "kind": "pmf over 256 levels" if eight_bit else ("pmf over {0, 1}" if lik.discrete else "density on [0, 1]"),
            "epochs": run.config.train.epochs, "train_cpu_s": train_record.get("train_cpu_s"), "seed": seed,
            "elbo_images": len(x), "neg_elbo_all": float(elbo.mean()), "dims": int(x[0].numel())}


def measure(name: str, run_dir: Path, train_record: dict, args, deadline: float) -> dict:
    """Fill in the run's summary and its missing shards inside args.items, until the deadline."""
    from vaelab.model.layout import weights_sha256
    from vaelab.training.runs import load_run
    from vaelab.use.inputs import dataset_items

    run = load_run(run_dir)
    digest = weights_sha256(run.model)
    info_path = args.store / name / "run.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else None
    if info is not None:
        check_local_run(run_dir, info, info_path)
    if info is None or info.get("seed") != args.seed:
        info = summary(run_dir, name, train_record, args.seed)
        write_json(info_path, info)
    have = [(s["start"], s["end"]) for s in read_shards(args.store, name, digest, args.k, args.seed)]
    x = None
    for start, end in missing_ranges(have, args.items, args.shard):
        if time.time() > deadline:
            break
        x = dataset_items(run, limit=TEST_IMAGES).x if x is None else x
        s = compute_shard(run.model, x, start, end, args.k, args.seed, digest)
        write_json(shard_path(args.store, name, s["start"], s["end"]), s)
        print(json.dumps({"name": name, "shard": f"{s['start']}-{s['end']}", "iw_cpu_s": s["iw_cpu_s"],
                          "iw_nll_mean": sum(s["iw_nll"]) / len(s["iw_nll"])}), flush=True)
    return info


def missing_ranges(have: list[tuple[int, int]], items: tuple[int, int], shard: int) -> list[tuple[int, int]]:
    """The [start, end) ranges still to compute inside items: the shard grid (multiples of `shard`) less the
    images the stored shards cover, so shards of another size computed earlier are filled around, not redone."""
    done = set()
    for a, b in have:
        done.update(range(a, b))
    out = []
    for start in range(items[0], items[1], shard):
        run_start = None
        for i in range(start, min(start + shard, items[1]) + 1):
            gap = i < min(start + shard, items[1]) and i not in done
            if gap and run_start is None:
                run_start = i
            elif not gap and run_start is not None:
                out.append((run_start, i))
                run_start = None
    return out


def check_local_run(run_dir: Path, info: dict, info_path: Path) -> None:
    """Refused when a run of this likelihood is here and its weights are not the ones the stored files measured."""
    if not (run_dir / "checkpoint.pt").is_file():
        return
    from vaelab.model.layout import weights_sha256
    from vaelab.training.runs import load_run

    digest = weights_sha256(load_run(run_dir).model)
    if digest != info["weights_sha256"]:
        raise Refused(f"{info_path}: weights sha256 {info['weights_sha256'][:12]}, but {run_dir} has {digest[:12]}: "
                      "retrain with this code (train.threads=1), or move the folder away to start over")


# --------------------------------------------------------------------------------------------------- table
def row_of(info: dict, shards: list[dict]) -> dict:
    iw = [v for s in shards for v in s["iw_nll"]]
    same = [v for s in shards for v in s["neg_elbo"]]
    n = len(iw)
    mean = sum(iw) / n if n else math.nan
    sem = math.sqrt(sum((v - mean) ** 2 for v in iw) / (n - 1) / n) if n > 1 else math.nan
    cpu = sum(s["iw_cpu_s"] for s in shards)
    return {**info, "images": n, "iw_nll": mean, "iw_nll_sem": sem, "neg_elbo_same": sum(same) / n if n else math.nan,
            "iw_cpu_s": cpu, "iw_cpu_s_per_image": cpu / n if n else math.nan,
            "ranges": [(s["start"], s["end"]) for s in shards]}


def covered(ranges: list[tuple[int, int]]) -> str:
    """`0-2,999, 5,000-5,499` from the shards' [start, end) ranges (merged)."""
    merged: list[list[int]] = []
    for a, b in ranges:
        if merged and merged[-1][1] == a:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    return ", ".join(f"{a:,}-{b - 1:,}" for a, b in merged)


def table(rows: list[dict], k: int) -> str:
    lines = [f"| likelihood | what its NLL is | IW-NLL K={k} (nats/image) | images in IW-NLL | -ELBO, same images | "
             f"-ELBO, all {TEST_IMAGES:,} | bits/dim (IW / -ELBO all) | epochs | train CPU-s | IW CPU-s per 1,000 images |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for r in rows:
        eight_bit = r["kind"].startswith("pmf over 256")
        to_bits = 1.0 / (math.log(2) * r["dims"])
        bpd = (f"{r['iw_nll'] * to_bits:.3f} / {r['neg_elbo_all'] * to_bits:.3f}" if eight_bit
               else "- (a density)" if r["kind"].startswith("density") else "- (not 8-bit)")
        n = r["images"]
        count = "all 10,000" if n == TEST_IMAGES else (f"{n:,} ({covered(r['ranges'])})" if n else "0")
        iw = f"{r['iw_nll']:.1f} ± {r['iw_nll_sem']:.1f}" if n > 1 else "-"
        same = f"{r['neg_elbo_same']:.1f}" if n else "-"
        t = r.get("train_cpu_s")
        per_k = f"{1000 * r['iw_cpu_s_per_image']:.0f}" if n else "-"
        lines.append(f"| {r['likelihood']} | {r['kind']} | {iw} | {count} | {same} | {r['neg_elbo_all']:.1f} | {bpd} | "
                     f"{r['epochs']} | {'-' if t is None else f'{t:.0f}'} | {per_k} |")
        if 0 < n < TEST_IMAGES:
            left = (TEST_IMAGES - n) * r["iw_cpu_s_per_image"] / 3600
            notes.append(f"`{r['name']}`: {TEST_IMAGES - n:,} images to go, about {left:.1f} CPU-hours at its measured rate")
        elif n == 0:
            notes.append(f"`{r['name']}`: no shard yet")
    if notes:
        lines += ["", "Still to compute (one thread; `--only NAME` continues it): " + "; ".join(notes) + "."]
    return "\n".join(lines)


def parse_items(text: str, shard: int) -> tuple[int, int]:
    a, sep, b = text.partition(":")
    try:
        lo, hi = int(a), int(b)
    except ValueError:
        sys.exit(f"--items {text!r}: give START:END image indices, e.g. 0:5000")
    if not sep or not 0 <= lo < hi <= TEST_IMAGES or lo % shard:
        sys.exit(f"--items {text!r}: need 0 <= START < END <= {TEST_IMAGES} with START a multiple of --shard {shard}")
    return lo, hi


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=REPO / "runs" / "likelihoods")
    ap.add_argument("--store", type=Path, default=STORE, help="where the shard files are (committed)")
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0, help="the per-image noise streams are seeded from (seed, index)")
    ap.add_argument("--shard", type=int, default=500, help="images per shard file")
    ap.add_argument("--items", default=f"0:{TEST_IMAGES}", help="compute the missing shards of these test images only "
                    "(START:END; split the work between machines)")
    ap.add_argument("--budget-s", type=float, default=math.inf, help="start no new shard after this many seconds")
    ap.add_argument("--only", default=None, help="comma list of likelihoods (default: all, cheapest first)")
    ap.add_argument("--table-only", action="store_true", help="compute nothing: the table from the stored files")
    ap.add_argument("--write", action="store_true", help="rewrite the table in configs/README.md")
    ap.add_argument("--train-only", action="store_true", help="train the missing runs, measure nothing")
    args = ap.parse_args()
    if args.k < 1 or args.shard < 1 or args.seed < 0:
        sys.exit("--k and --shard must be >= 1 and --seed >= 0")
    args.items = parse_items(args.items, args.shard)
    torch.set_num_threads(1)
    names = LIKELIHOODS if args.only is None else [n.strip() for n in args.only.split(",")]
    unknown = [n for n in names if n not in LIKELIHOODS]
    if unknown:
        sys.exit(f"--only: unknown likelihood(s) {', '.join(unknown)}; choose from {', '.join(LIKELIHOODS)}")
    deadline = time.time() + args.budget_s
    try:
        if not args.table_only:
            for name in sorted(names, key=cost):  # cheapest first: complete likelihoods one at a time
                run, record = ensure_run(name, args.runs)
                if not args.train_only:
                    measure(name, run, record, args, deadline)
        if args.train_only:
            return
        rows, missing = [], []
        for name in LIKELIHOODS:  # the table always has every likelihood measured so far, whatever --only says
            info_path = args.store / name / "run.json"
            if not info_path.is_file():
                missing.append(name)
                continue
            info = json.loads(info_path.read_text())
            check_local_run(args.runs / name, info, info_path)
            rows.append(row_of(info, read_shards(args.store, name, info["weights_sha256"], args.k, args.seed)))
    except Refused as e:
        sys.exit(f"refused: {e}")
    text = table(rows, args.k) + (f"\n\nNot measured yet: {', '.join(missing)}." if missing else "")
    print(text)
    if args.write:
        path = REPO / "configs" / "README.md"
        doc = path.read_text()
        pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
        if not pattern.search(doc):
            sys.exit(f"{path}: no {BEGIN} ... {END} markers")
        path.write_text(pattern.sub(lambda _: f"{BEGIN}\n{text}\n{END}", doc))


def cost(name: str) -> int:
    """Decoder outputs per value: the IW cost grows with it (the last layer and the likelihood dominate)."""
    return int(overrides(name)[1].rsplit("=", 1)[1].split("_")[2])


if __name__ == "__main__":
    main()
