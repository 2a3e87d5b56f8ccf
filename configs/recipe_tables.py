"""Regenerate the recipe tables in README.md and configs/README.md from one set of runs (one number per recipe).

    .venv/bin/python configs/recipe_tables.py            # train what is missing under runs/recipes, print the tables
    .venv/bin/python configs/recipe_tables.py --write    # ... and rewrite both tables in place

Each recipe is trained (if runs/recipes/NAME holds no finished run) with one torch thread, as the README states,
then measured on its held-out test split by configs/measure.py's `test_loss`: the recipe's own training loss with
the KL weight at 1, per sample. Both files get that same number, so they cannot disagree. The tables sit between
`<!-- recipe-table:begin -->` and `<!-- recipe-table:end -->` markers.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- recipe-table:begin -->", "<!-- recipe-table:end -->"
SHAPES = "runs/synthetic/shapes"
AMASS = "runs/synthetic/amass/synthetic_run_poses.npz"


def _shapes() -> None:
    from vaelab.data.synthetic import make_shapes

    if not (REPO / SHAPES).is_dir():
        make_shapes(REPO / SHAPES)


def _amass() -> None:
    from vaelab.data.synthetic import make_amass

    if not (REPO / AMASS).is_file():
        make_amass(REPO / AMASS)


# recipes whose data cannot be shipped: (the README's command, the library call) writing the synthetic stand-in
SETUP = {"seed001-sd-folder": (f".venv/bin/vaelab data make-shapes {SHAPES}", _shapes),
         "seed000-amass": (f".venv/bin/vaelab data make-amass {AMASS}", _amass)}
# recipe -> what it shows
RECIPES = {
    "seed002-vae-mnist": ("seed 002's VAE, 784-500-2 MLP, BCE(sum) + KL, 20 epochs"),
    "seed002-cvae-mnist": ("the CVAE: one-hot label at encoder (794) and decoder (2+10)"),
    "seed002-vae-fashion": ("the VAE on Fashion-MNIST, latent 10"),
    "seed002-cvae-fashion": ("the CVAE on Fashion-MNIST, latent 10"),
    "seed003-conv-mnist": ("seed 003's printed conv model in its mapping form; mean BCE + 0.1 mean KL; "
                           "StepLR(30, 0.1), 32 epochs (loss per pixel)"),
    "seed001-sd-folder": ("seed 001's SD-style encoder/decoder (base 32, 32 px, "
                          "latent (4,1,1), scale 0.18215) with SSIM and sparsity terms (weighted loss)"),
    "seed000-amass": ("seed 000's 88-40-4 MLP on standardised quaternions, "
                      "100 x SSE + 3 x KL (standardised units)"),
    "seed004-pi-vanilla": ("MLP VAE, each colored-pi point one sample, cyclical KL, latent 2"),
    "seed004-pi-attention": ("a transformer layer over the 5 feature tokens, same loss and schedule"),
}


def ensure_run(name: str, root: Path) -> Path:
    """The finished run of recipe `name` under root, trained here first when missing or unfinished."""
    from vaelab.core.config import load_config
    from vaelab.training.runs import read_metrics
    from vaelab.training.trainer import train

    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    run = root / name
    rows = read_metrics(run) if (run / "checkpoint.pt").is_file() else []
    if rows and rows[-1]["epoch"] >= cfg.train.epochs:
        return run
    if (run / "checkpoint.pt").is_file():
        raise SystemExit(f"{run} holds an unfinished run: finish it with `vaelab train --resume {run}` or delete it")
    if name in SETUP:
        SETUP[name][1]()
    print(f"training {name} into {run}", file=sys.stderr, flush=True)
    return train(load_config(REPO / "configs" / f"{name}.yaml", ["train.progress=false"]), run)


def measure(name: str, run: Path) -> dict:
    sys.path.insert(0, str(REPO / "configs"))
    from measure import test_loss
    from vaelab.data import load_data
    from vaelab.training.runs import load_run, read_metrics

    r = load_run(run)
    bundle = load_data(r.config.data, r.config.seed)
    hist = read_metrics(run)
    sizes = " / ".join(f"{len(s):,}" for s in (bundle.train, bundle.val, bundle.test) if s is not None)
    return {"recipe": name, "test_loss": test_loss(r, bundle)["loss"], "epochs": len(hist), "split": sizes,
            "train_seconds": sum(h["seconds"] for h in hist), "threads": hist[-1].get("threads")}


def _command(name: str) -> str:
    setup = SETUP[name][0] if name in SETUP else None
    train = f".venv/bin/vaelab train configs/{name}.yaml --out runs/{name}"
    return f"`{setup} && {train}`" if setup else f"`{train}`"


def readme_table(results: list[dict]) -> str:
    lines = ["| recipe | command | what it shows | test loss / sample | training time |", "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['recipe']} | {_command(r['recipe'])} | {RECIPES[r['recipe']]} | {r['test_loss']:.4f} "
                     f"| {r['train_seconds']:.0f} s |")
    return "\n".join(lines)


def configs_table(results: list[dict]) -> str:
    lines = ["| recipe | command | what it shows | split (train / val / test) | epochs | test loss / sample | training time |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['recipe']} | {_command(r['recipe'])} | {RECIPES[r['recipe']]} | {r['split']} | {r['epochs']} "
                     f"| **{r['test_loss']:.4f}** | {r['train_seconds']:.0f} s |")
    return "\n".join(lines)


def replace_table(path: Path, table: str) -> None:
    text = path.read_text()
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{path}: no {BEGIN} ... {END} markers")
    path.write_text(pattern.sub(lambda _: f"{BEGIN}\n{table}\n{END}", text))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=REPO / "runs" / "recipes", help="where the recipe runs live")
    ap.add_argument("--only", default=None, help="comma list of recipes (default: all)")
    ap.add_argument("--write", action="store_true", help="rewrite the tables in README.md and configs/README.md")
    args = ap.parse_args()
    torch.set_num_threads(1)  # the README's numbers are for one thread (results depend on the count)
    names = list(RECIPES) if args.only is None else [n.strip() for n in args.only.split(",")]
    results = [measure(n, ensure_run(n, args.runs)) for n in names]
    for r in results:
        print(json.dumps(r))
    if args.write:
        if args.only is not None:
            raise SystemExit("--write needs every recipe: drop --only")
        replace_table(REPO / "README.md", readme_table(results))
        replace_table(REPO / "configs" / "README.md", configs_table(results))
    else:
        print(readme_table(results))


if __name__ == "__main__":
    main()
