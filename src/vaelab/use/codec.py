"""Encode inputs to latents (scaled units, posterior mean by default) and decode latents back."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vaelab.core.errors import DataError
from vaelab.data.base import ARRAY_READ_ERRORS
from vaelab.training.runs import Run
from vaelab.use.inputs import Items, check_shape, labels_for
from vaelab.core.progress import advance, stage
from vaelab.plots import is_image_shape, to_display
from vaelab.use.outputs import PER_ITEM_FILES, item_limit, write_grid, write_item_images, write_npy, write_npz


@torch.no_grad()
def encode_tensor(run: Run, x: Tensor, y: Tensor | None = None, *, sample: bool = False,
                  generator: torch.Generator | None = None, batch_size: int = 256) -> tuple[Tensor, Tensor, Tensor]:
    """(z, mu, logvar): z and mu in scaled units (times the latent scale); z = mu unless `sample`."""
    model = run.model
    check_shape(run, x, "inputs")
    c_all = model.condition_vector(y) if model.conditional else None
    zs, mus, lvs = [], [], []
    for s in range(0, x.shape[0], batch_size):
        post = model.encode(x[s : s + batch_size], None if c_all is None else c_all[s : s + batch_size])
        z = post.sample(generator) if sample else post.mean
        zs.append(z * model.latent_scale)
        mus.append(post.mean * model.latent_scale)
        lvs.append(post.logvar)
        advance(post.mean.shape[0])  # the open progress stage, if any
    return torch.cat(zs), torch.cat(mus), torch.cat(lvs)


@torch.no_grad()
def decode_tensor(run: Run, z: Tensor, y: Tensor | None = None, *, batch_size: int = 256) -> Tensor:
    """Latents in scaled units (N, *latent) -> outputs (N, *shape)."""
    model = run.model
    want = tuple(model.latent_shape)
    if tuple(z.shape[1:]) != want:
        raise DataError(f"latents have shape {tuple(z.shape[1:])} per item but the model of {run.path} takes {want}")
    c_all = model.condition_vector(y) if model.conditional else None
    out = []
    for s in range(0, z.shape[0], batch_size):
        out.append(model.decode(z[s : s + batch_size].float(), None if c_all is None else c_all[s : s + batch_size]))
        advance(out[-1].shape[0])  # the open progress stage, if any
    return torch.cat(out)


def encode(run: Run, items: Items, out: Path, *, sample: bool = False, seed: int = 0, label: int | None = None,
           per_item: int | None = PER_ITEM_FILES) -> Path:
    """A .npz (z, mu, logvar, labels, names, latent_scale) when `out` ends in .npz (every item; labels whenever
    the data has them), else one .npy per input mirroring the input names under the folder `out`, for the first
    `per_item` inputs (None: all)."""
    y = labels_for(run, items, label)
    with stage("encode", len(items)):
        z, mu, logvar = encode_tensor(run, items.x, y, sample=sample, generator=torch.Generator().manual_seed(seed))
    out = Path(out)
    if out.suffix == ".npz":
        out.parent.mkdir(parents=True, exist_ok=True)
        labels = y if y is not None else items.y  # the data's labels, also for unconditional models
        write_npz(out, z=z, mu=mu, logvar=logvar, labels=(labels if labels is not None else np.zeros(0)),
                  names=np.array(items.names), latent_scale=np.float64(run.model.latent_scale))
        return out
    out.mkdir(parents=True, exist_ok=True)
    keep = item_limit(len(items), per_item)
    for name, zi in zip(items.names[:keep], z[:keep]):
        p = (out / name).with_suffix(".npy")
        p.parent.mkdir(parents=True, exist_ok=True)
        write_npy(p, zi)
    write_npy(out / "latent_scale.npy", np.float64(run.model.latent_scale))
    return out


def read_latents(path: Path) -> tuple[Tensor, Tensor | None, list[str]]:
    """A .npz from `encode` (z, labels, names), a single .npy (N, *latent), or a folder of per-item .npy files."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such latents file or folder")
    try:
        return _read_latents(p)
    except ARRAY_READ_ERRORS as e:  # truncated, corrupt, pickled or ragged arrays
        raise DataError(f"{p}: cannot read latents ({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None


def _numbers(a: np.ndarray, where: Path, what: str) -> Tensor:
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_) or np.issubdtype(a.dtype, np.complexfloating):
        raise DataError(f"{where}: {what} has dtype {a.dtype}, expected real numbers")
    if a.ndim == 0:
        raise DataError(f"{where}: {what} is a single number (0-d); expected (N, *latent) latents")
    return torch.from_numpy(np.asarray(a))


def _read_latents(p: Path) -> tuple[Tensor, Tensor | None, list[str]]:
    if p.is_dir():
        files = sorted(f for f in p.rglob("*.npy") if f.name != "latent_scale.npy")
        if not files:
            raise DataError(f"{p}: no .npy latents in this folder")
        arrays = [np.load(f, allow_pickle=False) for f in files]
        if len({a.shape for a in arrays}) > 1:
            raise DataError(f"{p}: the .npy latents differ in shape ({', '.join(sorted({str(a.shape) for a in arrays}))})")
        return _numbers(np.stack(arrays), p, "the latents").float(), None, [str(f.relative_to(p)) for f in files]
    if p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as d:
            if "z" not in d:
                raise DataError(f"{p}: no array 'z' (expected the .npz that `vaelab encode` writes)")
            z = _numbers(d["z"], p, "'z'").float()
            y = _numbers(d["labels"], p, "'labels'") if "labels" in d and d["labels"].size else None
            names = [str(n) for n in d["names"]] if "names" in d else [f"item-{i:06d}" for i in range(len(z))]
        if len(names) != len(z) or (y is not None and len(y) != len(z)):
            raise DataError(f"{p}: 'z' holds {len(z)} latents but names/labels hold {len(names)}/{len(y) if y is not None else '-'}")
        return z, y, names
    if p.suffix == ".npy":
        z = _numbers(np.load(p, allow_pickle=False), p, "the array").float()
        return z, None, [f"item-{i:06d}" for i in range(len(z))]
    raise DataError(f"{p}: latents must be a .npz from `vaelab encode`, a .npy array or a folder of .npy files")


def decode(run: Run, latents: Path, out_dir: Path, *, label: int | None = None, per_item: int | None = PER_ITEM_FILES) -> Path:
    """Decode a latents file/folder into out_dir: outputs.npy (every latent) plus, for image models, a grid
    (decoded.png, the first 64) and one PNG per latent for the first `per_item` latents (None: all)."""
    from vaelab.use.inputs import check_label

    z, y, names = read_latents(latents)
    if z.dim() == len(run.model.latent_shape):  # a single latent
        z = z.unsqueeze(0)
    if label is not None:
        check_label(run, label)
        y = torch.full((z.shape[0],), label, dtype=torch.long)
    if run.model.conditional and y is None:
        raise DataError(f"the model of {run.path} is conditional and {latents} carries no labels: give --label K")
    with stage("decode", z.shape[0]):
        x = run.data_spec.to_data_units(decode_tensor(run, z, y if run.model.conditional else None))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_npy(out_dir / "outputs.npy", x)
    keep = item_limit(len(x), per_item)
    write_item_images(out_dir, names[:keep], x[:keep], run.data_spec.raw_range)
    if is_image_shape(tuple(x.shape[1:])):
        write_grid(out_dir / "decoded.png", to_display(x[:64], run.data_spec.raw_range), 8,
                   title=f"{run.path.name}: decoded from {Path(latents).name}" + (f" (first 64 of {len(x)})" if len(x) > 64 else ""))
    return out_dir


__all__ = ["encode_tensor", "decode_tensor", "encode", "decode", "read_latents"]
