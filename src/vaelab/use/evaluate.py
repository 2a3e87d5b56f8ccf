"""`vaelab evaluate`: likelihood metrics, latent usage, SSIM or point-distribution match, and seed 003's figures.

Writes evaluation.json and figures (loss_curve.png, eval_reconstructions.png, eval_samples.png,
latent_embedding.png, kl_per_dim.png) into the output folder and returns the metrics.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaelab.core.checkpoint import atomic_write_text
from vaelab.core.progress import advance, stage
from vaelab.plots import integer_ticks, new_figure, is_image_shape, loss_curves, save_figure, scatter_points, to_display
from vaelab.training.runs import Run
from vaelab.use.inputs import Items, labels_for
from vaelab.use.likelihood import log_likelihood, nll
from vaelab.use.metrics import (FEATURE_METRICS, active_units, conditional_sample_accuracy, embed_2d, mmd_rbf,
                                 wasserstein_per_dim)
from vaelab.use.outputs import alternating_rows, class_names, render_point_cloud, write_grid, write_png
from vaelab.use.units import run_units

EVALUATION_NAME = "evaluation.json"


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    path: Path
    figures: list[Path]


@torch.no_grad()
def _posterior_pass(run: Run, x, c, generator: torch.Generator, batch_size: int = 256):
    """Per item: reconstruction NLL at one draw, KL; posterior means; KL per dim; mean-latent reconstructions."""
    model = run.model
    rec, kl, mus, kl_dims, recons = [], [], [], [], []
    for s in range(0, x.shape[0], batch_size):
        xb = x[s : s + batch_size]
        cb = None if c is None else c[s : s + batch_size]
        post = model.encode(xb, cb)
        eps = torch.randn(post.mean.shape, generator=generator)
        rec.append(-log_likelihood(model, post.mean + post.std * eps, xb, cb))
        kl.append(post.kl())
        mus.append(post.mean)
        kl_dims.append(post.kl_per_dim())
        recons.append(model.decode(post.mean * model.latent_scale, cb))
        advance(xb.shape[0])
    return torch.cat(rec), torch.cat(kl), torch.cat(mus), torch.cat(kl_dims), torch.cat(recons)


def evaluate(run: Run, items: Items, out_dir: Path, *, k: int = 1000, embedding: str = "pca", seed: int = 0,
             label: int | None = None, bits: tuple[int, ...] = (32, 8, 6, 4)) -> Evaluation:
    """Metrics of `run` on `items` (nats per item; the likelihood follows the run's loss, see vaelab.use.likelihood)."""
    from vaelab.training.losses import ssim

    model = run.model
    y = labels_for(run, items, label)  # before anything is written: a bad label leaves the folder untouched
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    c = model.condition_vector(y) if model.conditional else None
    x = items.x
    g = torch.Generator().manual_seed(seed)
    with stage("evaluate: negative ELBO and reconstructions", len(x)):
        rec, kl, mu, kl_dims, recon = _posterior_pass(run, x, c, g)
    per_item = k * x[0].numel() * model.likelihood.params_per_value  # decoder outputs per item for the K samples
    with stage(f"evaluate: importance-weighted NLL, K={k}", len(x)):  # item i's samples seeded from (seed, its index)
        iw = nll(model, x, y, k=k, batch_size=max(1, min(256, 2**22 // max(1, per_item))), seed=seed,
                 first_item=items.first_index)
    per_item_file = _write_per_item(run, items, out_dir, iw, k, seed)
    n_active, unit_var = active_units(mu)
    kl_per_dim = kl_dims.reshape(kl_dims.shape[0], -1).mean(dim=0)
    m: dict[str, Any] = {
        "items": len(items), "data": items.source, "likelihood": model.likelihood.describe(),
        "negative_elbo": float((rec + kl).mean()), "reconstruction_nll": float(rec.mean()), "kl": float(kl.mean()),
        "mse": float((recon - x).pow(2).mean()),
        f"iw_nll_k{k}": float(iw.mean()), "iw_k": k, "nll_units": "nats per sample",
        "first_item": items.first_index, "iw_nll_per_item": per_item_file.name,
        "active_units": n_active, "latent_dims": int(kl_per_dim.numel()),
        "kl_per_dim": [round(float(v), 6) for v in kl_per_dim], "unit_variance": [round(v, 6) for v in unit_var],
    }
    if _eight_bit(model, run.data_spec):  # a probability of the 8-bit values: the literature's bits per dimension
        m["bits_per_dim"] = float(iw.mean()) / (np.log(2) * x[0].numel())
    m.update(training_loss(run, x, c, seed))
    spec = run.data_spec
    if spec.normalization is not None:
        m["standardized"] = True  # mse, NLLs and KL above are in standardised units; feature metrics below are not
    kind = _feature_kind(items.source)
    if kind is not None:
        m.update(FEATURE_METRICS.get(kind)(spec.to_data_units(x), spec.to_data_units(recon)))
    if bits:  # reconstruction error of the posterior mean quantized to each latent bit width
        from vaelab.model.quantize import recon_error_vs_bits

        for b, err in recon_error_vs_bits(model, x, [None if b >= 32 else b for b in bits], c=c).items():
            m[f"mse_latent_{32 if b is None else b}bit"] = err
    shape = tuple(x.shape[1:])
    vr = items.value_range
    figures: list[Path] = []
    if len(shape) >= 3 and min(shape[1:]) >= 3:
        m["ssim"] = float(ssim(recon, x, data_range=(vr[1] - vr[0]) or 1.0).mean())
    sample_labels = None
    if model.conditional:
        sample_labels = model.condition.all_labels(8)  # None for condition vectors
    n_gen = len(sample_labels) if sample_labels is not None else max(64, min(len(items), 2000))
    if model.conditional and sample_labels is None:
        gen = None  # condition vectors: nothing to sample without data-specific conditions
    else:
        gen = model.sample(n_gen, model.condition_vector(sample_labels) if sample_labels is not None else None, generator=g)
    if len(shape) == 1 and shape[0] <= 16 and gen is not None:
        m["mmd_rbf"] = mmd_rbf(x, gen, generator=g)
        w = wasserstein_per_dim(x, gen)
        m["wasserstein_per_dim"] = w
        m["wasserstein_mean"] = float(np.mean(w))
    with stage(f"evaluate: figures and latent embedding ({embedding})"):
        figures += _figures(run, items, out_dir, x, recon, gen, mu, kl_per_dim, embedding, seed)
    if model.conditional and model.condition.takes_labels:
        with stage("evaluate: conditional-sample accuracy"):
            m.update(_conditional_accuracy(run, seed))
    m["figures"] = [f.name for f in figures]
    path = out_dir / EVALUATION_NAME
    atomic_write_text(path, json.dumps(m, indent=2) + "\n")
    return Evaluation(m, path, figures)


def _write_per_item(run: Run, items: Items, out_dir: Path, iw, k: int, seed: int) -> Path:
    """iw_nll_k{K}_{first}-{end}.json: each item's IW-NLL with what it depends on (K, seed, the weights' sha256),
    so slices of a long evaluation (--offset/--limit) can be computed apart and joined."""
    from vaelab.model.layout import weights_sha256

    first = items.first_index
    path = out_dir / f"iw_nll_k{k}_{first}-{first + len(items)}.json"
    record = {"k": k, "seed": seed, "first_item": first, "items": len(items), "data": items.source,
              "likelihood": run.model.likelihood.describe(), "weights_sha256": weights_sha256(run.model),
              "units": "nats per item", "names": items.names, "iw_nll": [round(float(v), 4) for v in iw]}
    atomic_write_text(path, json.dumps(record) + "\n")
    return path


def _figures(run: Run, items: Items, out_dir: Path, x, recon, gen, mu, kl_per_dim, embedding: str, seed: int) -> list[Path]:
    """loss curve, reconstruction and sample grids (or point plots), latent embedding, KL per dimension."""
    shape, vr = tuple(x.shape[1:]), items.value_range
    figures: list[Path] = []
    if run.history:
        loss_curves(run.history, out_dir / "loss_curve.png", title=f"{run.config.name}: loss per epoch", unit=run_units(run))
        figures.append(out_dir / "loss_curve.png")
    if is_image_shape(shape):
        n = min(32, len(items))
        write_grid(out_dir / "eval_reconstructions.png", to_display(alternating_rows(x[:n], recon[:n], 8), vr), 8,
                   title=f"{run.path.name}: originals / reconstructions ({items.source})",
                   row_labels=["original", "reconstruction"] * (-(-n // 8)))
        figures.append(out_dir / "eval_reconstructions.png")
        if gen is not None and run.model.conditional:  # 8 per class, every class: one row each, named
            k = len(gen) // 8
            write_grid(out_dir / "eval_samples.png", to_display(gen, vr), 8, title=f"{run.path.name}: samples, one row per class",
                       row_labels=class_names(run.data_spec, k))
        elif gen is not None:
            write_grid(out_dir / "eval_samples.png", to_display(gen[:64], vr), 8, title=f"{run.path.name}: samples from the prior")
            figures.append(out_dir / "eval_samples.png")
    elif shape == (5,) and gen is not None:
        write_png(out_dir / "eval_samples.png", render_point_cloud(gen))
        figures.append(out_dir / "eval_samples.png")
    if len(shape) == 1 and gen is not None:
        scatter_points(x.numpy(), gen.numpy(), out_dir / "eval_points.png", "data vs generated (first two dims)")
        figures.append(out_dir / "eval_points.png")
    k = run.data_spec.num_classes or 0
    figures.append(_embedding_figure(mu, items.y, out_dir / "latent_embedding.png", embedding, seed,
                                     class_names(run.data_spec, k) if k else None, f"{run.path.name}: "))
    figures.append(_kl_figure(kl_per_dim, out_dir / "kl_per_dim.png"))
    return figures


@torch.no_grad()
def training_loss(run: Run, x, c, seed: int, batch_size: int = 256) -> dict[str, Any]:
    """The run's own objective on the items, per sample, with every term at its configured weight and the KL
    schedule at its end (1): what training minimised, in its units (nats for `reduction: sum` likelihood terms,
    means for `reduction: mean`). One posterior draw per item from a seeded stream; the global RNG is restored."""
    from vaelab.training.loss_setup import LossSetup

    model = run.model
    setup = LossSetup.from_config(run.config, model, run.data_spec.value_range)
    total, n = 0.0, 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for s in range(0, x.shape[0], batch_size):
            xb = x[s : s + batch_size]
            cb = None if c is None else c[s : s + batch_size]
            total += float(setup(model(xb, cb), xb, 1.0).total) * xb.shape[0]
            n += xb.shape[0]
    weights = ", ".join(f"{k} x {v:g}" for k, v in setup.weights.items())
    return {"training_loss": total / max(n, 1), "training_loss_terms": weights,
            "training_loss_reduction": run.config.loss.reduction, "training_loss_units": run_units(run).total}


def _conditional_accuracy(run: Run, seed: int) -> dict[str, Any]:
    """Conditional-sample accuracy at temperature 1 with a classifier fitted on the run's own training split
    (`vaelab.use.metrics.conditional_sample_accuracy`); {} when the run's data has no test split to check it on."""
    from vaelab.data import load_data

    bundle = load_data(run.config.data, run.config.seed)
    test = bundle.test if bundle.test is not None else bundle.val
    if test is None:
        return {}
    tx, ty = bundle.train.take(len(bundle.train))
    sx, sy = test.take(len(test))
    if ty is None or ty.is_floating_point() or ty.dim() != 1:
        return {}
    return conditional_sample_accuracy(run.model, tx, ty, sx, sy, seed=seed)


def _eight_bit(model, spec) -> bool:
    """Whether the NLL is a code length of 8-bit data: a likelihood over 256 levels on data on the 8-bit grid.
    Densities (Gaussian, Laplace, continuous Bernoulli) and a Bernoulli on grey values are not, so no bits/dim."""
    lik = model.likelihood
    return bool(lik.discrete and lik.levels == 256 and getattr(spec, "bits", None) == 8)


def _feature_kind(source: str) -> str | None:
    """What the dataset's features are (e.g. "quaternion"), from its registry entry; None for other sources."""
    from vaelab.data import DATASETS

    return DATASETS.entry(source).meta.get("features") if source in DATASETS else None


def _embedding_figure(mu, y, path: Path, method: str, seed: int, names: list[str] | None = None, title: str = "") -> Path:
    """The latent means in 2-d, one colour per class named in the legend (a colour bar for many or real labels)."""
    xy = embed_2d(mu, method, seed)
    fig, ax = new_figure(figsize=(6.5, 4.5), layout="constrained")
    colors = None if y is None or y.dim() != 1 else y.numpy()
    if colors is not None and not y.is_floating_point() and len(np.unique(colors)) <= 20:
        cmap = "tab10" if colors.max() < 10 else "tab20"
        for k in np.unique(colors):
            shown = names[k] if names is not None and 0 <= k < len(names) else str(k)
            ax.scatter(xy[colors == k, 0], xy[colors == k, 1], s=6, alpha=0.8, color=_cmap(cmap)(int(k) % 20), label=shown)
        ax.legend(title="class", fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.01, 0.5))
    elif colors is not None:
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=colors, cmap="viridis", s=6, alpha=0.8)
        fig.colorbar(sc, ax=ax, label="label value")
    else:
        ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.8)
    axis = "PC" if method == "pca" else "t-SNE"
    ax.set_xlabel(f"{axis} 1 (latent units)" if method == "pca" else f"{axis} 1 (no unit)")
    ax.set_ylabel(f"{axis} 2 (latent units)" if method == "pca" else f"{axis} 2 (no unit)")
    ax.set_title(f"{title}latent means, {method.upper() if method == 'pca' else 't-SNE'} ({len(xy)} items)")
    save_figure(fig, path)
    return path


def _cmap(name: str):
    from matplotlib import colormaps

    return colormaps[name]


def _kl_figure(kl_per_dim, path: Path) -> Path:
    v = kl_per_dim.numpy()
    fig, ax = new_figure(figsize=(max(4, min(12, 0.3 * len(v) + 2)), 3), layout="constrained")
    ax.bar(np.arange(len(v)), v)
    ax.set_xlabel("latent dimension")
    ax.set_ylabel("mean KL (nats/item)")
    ax.set_title("KL per latent dimension")
    integer_ticks(ax.xaxis, range(len(v)))  # dimensions are counted
    save_figure(fig, path)
    return path


def table_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, value with its unit) rows of the scalar metrics, for the printed table: e.g. `iw_nll_k1000` ->
    `830.6042 nats/item`, so a number is never shown without what it measures."""
    from vaelab.use.units import unit_of

    training = metrics.get("training_loss_units", "per item")  # the unit of training_loss, from the run's loss
    rows = []
    for key, v in metrics.items():
        if key == "figures":
            continue
        if isinstance(v, bool):
            rows.append((key, str(v)))
            continue
        unit = unit_of(key, training=training)
        if isinstance(v, float):
            rows.append((key, f"{v:.4f} {unit}".rstrip()))
        elif isinstance(v, (int, str)):
            rows.append((key, f"{v} {unit}".rstrip() if isinstance(v, int) else v))
    return rows


__all__ = ["evaluate", "Evaluation", "table_rows", "EVALUATION_NAME"]
