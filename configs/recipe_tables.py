"""Regenerate the recipe tables in README.md and configs/README.md from one set of runs (one number per recipe).

    .venv/bin/python configs/recipe_tables.py                     # train what is missing under runs/recipes, print
    .venv/bin/python configs/recipe_tables.py --write             # ... and write every recipe's rows in place
    .venv/bin/python configs/recipe_tables.py --only A,B --write  # train/measure A and B; only their rows change
    .venv/bin/python configs/recipe_tables.py --results OUT       # write the rows of an earlier run's output (JSON lines)

Each recipe is trained (if runs/recipes/NAME holds no finished run) with one torch thread, as the README states
(results depend on the thread count; every metrics.jsonl row records it), then measured on its held-out test
split: configs/measure.py's `test_loss` (the recipe's own training loss with the KL weight at 1, per sample) and
`vaelab evaluate`'s metrics (K=1; rotation error for quaternion data, conditional-sample accuracy for label
CVAEs, MMD for points); active units and KL per dim come from the last metrics.jsonl row. Every table gets
these same numbers, so the files cannot disagree.

Tables sit between `<!-- NAME:begin -->` and `<!-- NAME:end -->` markers (NAME: recipe-table in both files,
recipe-units in configs/README.md). Writing replaces the rows of the recipes measured and appends missing ones;
every other row (a recipe not measured in this call, e.g. one another branch owns) is kept as it is.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SHAPES = "runs/synthetic/shapes"
AMASS = "runs/synthetic/amass/synthetic_run_poses.npz"
DEFAULT = "default"  # the bundled default config (`vaelab train` with no file): in the active-units table only
SHAPES_3K = "runs/synthetic/shapes-3k"
PHOTO_PATCHES = "runs/synthetic/photo-patches"


def _shapes() -> None:
    from vaelab.data.synthetic import make_shapes

    if not (REPO / SHAPES).is_dir():
        make_shapes(REPO / SHAPES)


def _shapes_3k() -> None:
    from vaelab.data.synthetic import make_shapes

    if not (REPO / SHAPES_3K).is_dir():
        make_shapes(REPO / SHAPES_3K, per_class=1000)


def _photo_patches() -> None:
    from vaelab.data.photos import make_photo_patches

    if not (REPO / PHOTO_PATCHES).is_dir():
        make_photo_patches(REPO / PHOTO_PATCHES)


def _amass() -> None:
    from vaelab.data.synthetic import make_amass

    if not (REPO / AMASS).is_file():
        make_amass(REPO / AMASS)


# recipes whose data cannot be shipped: (the README's command, the library call) writing the synthetic stand-in
SETUP = {"seed001-sd-folder": (f".venv/bin/vaelab data make-shapes {SHAPES}", _shapes),
         "seed000-amass": (f".venv/bin/vaelab data make-amass {AMASS}", _amass),
         "seed001-sd-shapes": (f".venv/bin/vaelab data make-shapes {SHAPES_3K} --per-class 1000", _shapes_3k),
         "seed001-sd-gan": (f".venv/bin/vaelab data make-shapes {SHAPES_3K} --per-class 1000", _shapes_3k),
         "seed001-sd-photos": (f".venv/bin/vaelab data make-photo-patches {PHOTO_PATCHES}", _photo_patches)}
# recipe -> what it shows (a recipe missing here is described by its YAML's first comment line)
RECIPES = {
    "seed002-vae-mnist": "seed 002's VAE, 784-500-2 MLP, BCE(sum) + KL, 20 epochs",
    "seed002-cvae-mnist": "the CVAE: one-hot label at encoder (794) and decoder (2+10); below the VAE, as the seed reports",
    "seed002-vae-fashion": "the VAE on Fashion-MNIST, latent 10",
    "seed002-cvae-fashion": "the CVAE on Fashion-MNIST, latent 10, kl_weight 4 (samples show their label)",
    "seed003-conv-mnist": ("seed 003's printed conv model in its mapping form; mean BCE + 0.1 mean KL, free bits 0.5; "
                           "StepLR(30, 0.1), 32 epochs (loss per pixel)"),
    "seed001-sd-folder": ("seed 001's SD-style encoder/decoder (base 32, 32 px, "
                          "latent (4,8,8): downsample 4, not the seed's 32, scale 0.18215) with SSIM and sparsity terms (weighted loss); shapes come back, colours mostly not at 480 images x 8 epochs (seed001-sd-shapes: 2,400 x 10, SSIM 0.929)"),
    "seed001-sd-shapes": ("seed001-sd in the Stable Diffusion layout, downsample 4 (base 16, 32 px, latent (4,8,8)); "
                          "SSIM 0.929 held-out (weighted loss)"),
    "seed001-sd-gan": ("seed001-sd-shapes plus the PatchGAN adversarial term from step 1,500 (weighted loss)"),
    "seed001-sd-photos": ("seed001-sd, downsample 8 (latent (4,4,4) at 32 px), on patches of scikit-learn's "
                          "sample photos (weighted loss)"),
    "seed000-amass": ("seed 000's 88-40-4 MLP on standardised quaternions; Gaussian NLL with variance 0.005 "
                      "(the seed's SSE x 100) + 3 x KL, nats in standardised units"),
    "seed004-pi-vanilla": ("MLP VAE, each colored-pi point one sample, Gaussian sigma 0.05, cyclical KL, latent 2 "
                           "(loss = negative ELBO, nats)"),
    "seed004-pi-attention": "a transformer layer over the 5 feature tokens, same loss and schedule",
}
# what was changed in a recipe against posterior collapse (the active-units table's last column)
COLLAPSE_CHANGES = {
    DEFAULT: "no: its linear KL warm-up (first 20% of the run) keeps units active; `tests/test_collapse.py` checks",
    "seed003-conv-mnist": "`loss.free_bits: 0.5` (without: 0 active units for epochs 1-5; see the notes below)",
    "seed002-cvae-fashion": "no (its `kl_weight: 4` is for label-faithful samples, see the notes below)",
}


def recipe_names() -> list[str]:
    """Every shipped seed recipe: those described above first, then any other configs/seed*.yaml."""
    shipped = sorted(p.stem for p in (REPO / "configs").glob("seed*.yaml"))
    return [n for n in RECIPES if n in shipped] + [n for n in shipped if n not in RECIPES]


def config_path(name: str) -> Path:
    return REPO / "src" / "vaelab" / "configs" / "default.yaml" if name == DEFAULT else REPO / "configs" / f"{name}.yaml"


def describe(name: str) -> str:
    if name in RECIPES:
        return RECIPES[name]
    first = next((ln for ln in config_path(name).read_text().splitlines() if ln.startswith("#")), "# " + name)
    return first.lstrip("# ").strip().replace("|", "/")


def ensure_run(name: str, root: Path) -> Path:
    """The finished run of recipe `name` under root, trained here first when missing or unfinished."""
    from vaelab.core.config import load_config
    from vaelab.training.runs import read_metrics
    from vaelab.training.trainer import train

    cfg = load_config(config_path(name))
    run = root / name
    rows = read_metrics(run) if (run / "checkpoint.pt").is_file() else []
    if rows and rows[-1]["epoch"] >= cfg.train.epochs:
        return run
    if (run / "checkpoint.pt").is_file():
        raise SystemExit(f"{run} holds an unfinished run: finish it with `vaelab train --resume {run}` or delete it")
    if name in SETUP:
        SETUP[name][1]()
    print(f"training {name} into {run}", file=sys.stderr, flush=True)
    return train(load_config(config_path(name), ["train.progress=false"]), run)


def measure(name: str, run: Path) -> dict:
    """The numbers every table quotes for one finished run."""
    sys.path.insert(0, str(REPO / "configs"))
    from measure import test_loss
    from vaelab.data import load_data
    from vaelab.training.losses import term_weights
    from vaelab.training.runs import load_run, read_metrics
    from vaelab.use.evaluate import evaluate
    from vaelab.use.inputs import load_items

    r = load_run(run)
    bundle = load_data(r.config.data, r.config.seed)
    hist = read_metrics(run)
    sizes = " / ".join(f"{len(s):,}" for s in (bundle.train, bundle.val, bundle.test) if s is not None)
    loss = test_loss(r, bundle)
    ev = evaluate(r, load_items(r), run / "tables-eval", k=1, bits=()).metrics
    keep = ("rotation_error_deg", "mean_pose_rotation_error_deg", "conditional_sample_accuracy",
            "classifier_test_accuracy", "mmd_rbf", "ssim", "likelihood")
    last = hist[-1]
    return {"recipe": name, "test_loss": loss["loss"], "test_recon": loss["recon"], "test_kl": loss["kl"],
            "weights": term_weights(r.config.loss),
            "epochs": len(hist), "split": sizes, "train_seconds": sum(h["seconds"] for h in hist),
            "threads": last.get("threads"), "active_units": last.get("active_units"),
            "latent_dims": len(last.get("kl_per_dim") or []), "kl_per_dim": last.get("kl_per_dim") or [],
            **{k: ev[k] for k in keep if k in ev}}


def _command(name: str) -> str:
    if name == DEFAULT:
        return "`.venv/bin/vaelab train`"
    setup = SETUP[name][0] if name in SETUP else None
    train = f".venv/bin/vaelab train configs/{name}.yaml --out runs/{name}"
    return f"`{setup} && {train}`" if setup else f"`{train}`"


def _extra(r: dict) -> str:
    """The recipe's own evaluate numbers, in words (empty when it has none)."""
    parts = []
    if "rotation_error_deg" in r:
        parts.append(f"rotation error {r['rotation_error_deg']:.2f} deg vs {r['mean_pose_rotation_error_deg']:.2f} deg "
                     "for the mean pose")
    if "conditional_sample_accuracy" in r:
        parts.append(f"samples at temperature 1 show their label {100 * r['conditional_sample_accuracy']:.1f}% "
                     f"(classifier's own test accuracy {100 * r['classifier_test_accuracy']:.1f}%)")
    if "mmd_rbf" in r:
        parts.append(f"MMD^2 {r['mmd_rbf']:.4f} vs the data")
    if "ssim" in r:
        parts.append(f"SSIM {r['ssim']:.3f}")
    return "; ".join(parts) or "-"


def _parts(r: dict) -> str:
    """The test loss's reconstruction and KL parts with their weights, e.g. `100 x 0.87 + 3 x 26.9`."""
    w = r.get("weights") or {"recon": 1.0, "kl": 1.0}
    show = lambda key, v: f"{v:.4g}" if w.get(key, 1.0) == 1.0 else f"{w[key]:g} x {v:.4g}"  # noqa: E731
    others = " + other terms" if set(w) - {"recon", "kl"} else ""
    return f"{show('recon', r['test_recon'])} + {show('kl', r['test_kl'])}{others}"


def _units(r: dict) -> str:
    return f"{r['active_units']} of {r['latent_dims']}"


README = ("| recipe | command | what it shows | test loss / sample | active units | more (`vaelab evaluate`) | training time |",
          lambda r: f"| {r['recipe']} | {_command(r['recipe'])} | {describe(r['recipe'])} | {r['test_loss']:.4f} | "
                    f"{_units(r)} | {_extra(r)} | {r['train_seconds']:.0f} s |")
CONFIGS = ("| recipe | command | what it shows | split (train / val / test) | epochs | test loss / sample (= recon + KL, weighted) "
           "| active units | more (`vaelab evaluate`) | training time |",
           lambda r: f"| {r['recipe']} | {_command(r['recipe'])} | {describe(r['recipe'])} | {r['split']} | {r['epochs']} "
                     f"| **{r['test_loss']:.4f}** ({_parts(r)}) | {_units(r)} | {_extra(r)} "
                     f"| {r['train_seconds']:.0f} s |")
UNITS = ("| recipe | active units (last epoch) | KL, nats per item (smallest dim) | changed for collapse |",
         lambda r: f"| {'bundled default (`vaelab train`)' if r['recipe'] == DEFAULT else r['recipe']} | {_units(r)} | "
                   f"{sum(r['kl_per_dim']):.3g} ({min(r['kl_per_dim'], default=0):.2g}) | "
                   f"{COLLAPSE_CHANGES.get(r['recipe'], 'no')} |")


def table_key(row: str) -> str:
    """The recipe a table row is about: its first cell without markup ('bundled default ...' -> default)."""
    cell = row.strip().strip("|").split("|")[0].strip().strip("`*")
    return DEFAULT if cell.startswith("bundled default") else cell


def merge_table(block: str, header: str, rows: dict[str, str]) -> str:
    """The table `block` with `header`, each row of a recipe in `rows` replaced and missing ones added; rows of
    other recipes are kept verbatim. Rows are in recipe order (the default first), rows of unknown keys last."""
    old = [ln for ln in block.strip().splitlines() if ln.strip().startswith("|")][2:]  # past header and rule
    out, done = [], set()
    for ln in old:
        key = table_key(ln)
        out.append(rows.get(key, ln))
        done.add(key)
    out += [row for key, row in rows.items() if key not in done]
    order = {name: i for i, name in enumerate([DEFAULT, *recipe_names()])}
    out.sort(key=lambda row: order.get(table_key(row), len(order)))  # stable: other rows keep their order, last
    rule = "|" + "---|" * (header.count("|") - 1)
    return "\n".join([header, rule, *out])


def write_table(path: Path, marker: str, header: str, rows: dict[str, str]) -> None:
    """Merge `rows` into the table between `<!-- marker:begin -->` and `<!-- marker:end -->` in `path`."""
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    text = path.read_text()
    pattern = re.compile(re.escape(begin) + r"(.*?)" + re.escape(end), re.S)
    found = pattern.search(text)
    if not found:
        raise SystemExit(f"{path}: no {begin} ... {end} markers")
    table = merge_table(found.group(1), header, rows)
    path.write_text(text[: found.start()] + f"{begin}\n{table}\n{end}" + text[found.end():])


def write_all(results: list[dict], repo: Path = REPO) -> None:
    recipes = [r for r in results if r["recipe"] != DEFAULT]
    for path, marker, (header, row) in ((repo / "README.md", "recipe-table", README),
                                        (repo / "configs" / "README.md", "recipe-table", CONFIGS),
                                        (repo / "configs" / "README.md", "recipe-units", UNITS)):
        chosen = results if marker == "recipe-units" else recipes
        write_table(path, marker, header, {r["recipe"]: row(r) for r in chosen})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=REPO / "runs" / "recipes", help="where the recipe runs live")
    ap.add_argument("--only", default=None, help=f"comma list of recipes (default: all, and {DEFAULT!r})")
    ap.add_argument("--write", action="store_true", help="write the measured rows into README.md and configs/README.md")
    ap.add_argument("--results", type=Path, default=None,
                    help="a file of this script's earlier output (JSON lines): write those rows instead of measuring")
    args = ap.parse_args()
    if args.results is not None:
        saved = [json.loads(ln) for ln in args.results.read_text().splitlines() if ln.startswith("{")]
        write_all(saved)
        return
    torch.set_num_threads(1)  # the README's numbers are for one thread (results depend on the count)
    names = [*recipe_names(), DEFAULT] if args.only is None else [n.strip() for n in args.only.split(",")]
    unknown = [n for n in names if n != DEFAULT and not config_path(n).is_file()]
    if unknown:
        raise SystemExit(f"--only: no recipe {', '.join(unknown)}; recipes: {', '.join(recipe_names())}, {DEFAULT}")
    results = []
    for n in names:
        results.append(measure(n, ensure_run(n, args.runs)))
        print(json.dumps(results[-1]), flush=True)
    if args.write:
        write_all(results)
    else:
        print("\n".join([README[0], *(README[1](r) for r in results if r["recipe"] != DEFAULT)]))


if __name__ == "__main__":
    main()
