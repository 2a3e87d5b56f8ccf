"""`vaelab reconstruct|encode|decode --tile N`: images of any size, each at its own size, through the tiled model.

Without --tile the use commands resize every input to the size the model was trained on; with it, nothing is
resized: each image keeps its size (sides that are not a multiple of the model's factor f are padded and the
output cropped back). Latents of tiled encodes are one .npy per image, (C, ceil(H/f), ceil(W/f)), plus
`image_sizes.json` so a tiled decode crops the outputs back to the images' sizes.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vaelab.core.checkpoint import atomic_write_bytes
from vaelab.core.errors import DataError
from vaelab.training.runs import Run
from vaelab.use.inputs import IMAGE_SUFFIXES, Items, check_label
from vaelab.use.outputs import write_item_images, write_npy
from vaelab.use.reconstruct import ReconstructResult
from vaelab.use.tile_stats import STAT_MODES
from vaelab.use.tiling import DEFAULT_STATS, DEFAULT_TILE, TilingError, check_tiling, default_overlap, downsampling_factor, \
    tiled_decode_logits, tiled_posterior

SIZES_FILE = "image_sizes.json"


@dataclass
class Tiling:
    """--tile, --overlap (None: a quarter of the tile) and the statistics mode (vaelab.use.tile_stats)."""

    tile: int = DEFAULT_TILE
    overlap: int | None = None
    stats: str = DEFAULT_STATS

    def checked(self, run: Run) -> "Tiling":
        try:
            STAT_MODES.entry(self.stats)
        except KeyError as e:
            raise TilingError(f"--tile-stats: {e}") from None
        f = downsampling_factor(run.model)
        overlap = default_overlap(self.tile, f) if self.overlap is None else self.overlap
        check_tiling(f, self.tile, overlap)
        return Tiling(self.tile, overlap, self.stats)


@dataclass
class Image:
    name: str
    x: Tensor  # (C, H, W) in the run's value range


def _scale_of(run: Run) -> tuple[float, float]:
    return tuple(run.data_spec.value_range)


def folder_images(run: Run, folder: str | Path, *, limit: int | None = None, warn=None) -> list[Image]:
    """Every image under `folder` (recursively) at its own size, as the model's channels and value range."""
    from PIL import Image as PILImage, UnidentifiedImageError

    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"--input {root}: not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        raise DataError(f"--input {root}: no image files ({', '.join(IMAGE_SUFFIXES)}) in it or its subfolders")
    channels = run.model.input_shape[0]
    lo, hi = _scale_of(run)
    out = []
    for f in files:
        try:
            with PILImage.open(f) as img:
                a = np.asarray(img.convert("RGB" if channels == 3 else "L"), dtype=np.float32) / 255.0
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
            warn(f"skipped {f}: cannot read image ({e})")
            continue
        x = torch.from_numpy(a.reshape(a.shape[0], a.shape[1], channels).copy()).permute(2, 0, 1)
        out.append(Image(str(f.relative_to(root)), x * (hi - lo) + lo))
    if not out:
        raise DataError(f"--input {root}: none of the {len(files)} image files could be read")
    return out


def items_images(items: Items) -> list[Image]:
    return [Image(n, x) for n, x in zip(items.names, items.x)]


def _condition(run: Run, label: int | None) -> Tensor | None:
    model = run.model
    if not model.conditional:
        if label is not None:
            raise DataError(f"--label {label}: the model of {run.path} is unconditional; drop --label")
        return None
    if label is None:
        raise DataError(f"the model of {run.path} is conditional: give --label K with --tile")
    check_label(run, label)
    return model.condition_vector(torch.tensor([label]))


@torch.no_grad()
def reconstruct_tiled(run: Run, images: list[Image], out_dir: Path, tiling: Tiling, *, label: int | None = None) -> ReconstructResult:
    """One reconstruction per image, each at the image's own size, written as PNGs mirroring the names."""
    t = tiling.checked(run)
    c = _condition(run, label)
    model = run.model.eval()
    out_dir = Path(out_dir)
    files, sq, n = [], 0.0, 0
    for im in images:
        mean, _, (h, w) = tiled_posterior(model, im.x[None], c, tile=t.tile, overlap=t.overlap, stats=t.stats)
        logits = tiled_decode_logits(model, mean, c, tile=t.tile, overlap=t.overlap, stats=t.stats)
        r = model.likelihood.mean(logits)[..., :h, :w]
        files += write_item_images(out_dir, [im.name], r, _scale_of(run))
        sq += float((r[0] - im.x).pow(2).sum())
        n += im.x.numel()
    return ReconstructResult(out_dir, len(images), None, files, [], sq / max(n, 1))


@torch.no_grad()
def encode_tiled(run: Run, images: list[Image], out: Path, tiling: Tiling, *, sample: bool = False, seed: int = 0,
                 label: int | None = None) -> Path:
    """One latent .npy per image (scaled units, posterior mean unless `sample`) under the folder `out`,
    mirroring the names, with image_sizes.json and latent_scale.npy."""
    t = tiling.checked(run)
    c = _condition(run, label)
    model = run.model.eval()
    out = Path(out)
    if out.suffix == ".npz":
        raise DataError(f"--out {out}: tiled latents differ in size from image to image; give a folder instead")
    gen = torch.Generator().manual_seed(seed)
    sizes = {}
    for im in images:
        mean, logvar, (h, w) = tiled_posterior(model, im.x[None], c, tile=t.tile, overlap=t.overlap, stats=t.stats)
        z = mean + torch.randn(mean.shape, generator=gen) * (0.5 * logvar).exp() if sample else mean
        p = (out / im.name).with_suffix(".npy")
        p.parent.mkdir(parents=True, exist_ok=True)
        write_npy(p, (z * model.latent_scale)[0])
        sizes[str(p.relative_to(out))] = [h, w]
    write_npy(out / "latent_scale.npy", np.float64(model.latent_scale))
    text = json.dumps(sizes, indent=1).encode()
    atomic_write_bytes(out / SIZES_FILE, lambda fh: fh.write(text))
    return out


@torch.no_grad()
def decode_tiled(run: Run, latents: Path, out_dir: Path, tiling: Tiling, *, label: int | None = None) -> Path:
    """Decode per-image latents (a folder from a tiled encode, one .npy (C, h, w) or a stack (N, C, h, w)) to
    PNGs and .npy arrays, cropped to image_sizes.json where the folder has one."""
    t = tiling.checked(run)
    c = _condition(run, label)
    model = run.model.eval()
    out_dir = Path(out_dir)
    for name, z, size in _read_latents(Path(latents), model.latent_shape[0]):
        logits = tiled_decode_logits(model, z[None] / model.latent_scale, c, tile=t.tile, overlap=t.overlap, stats=t.stats)
        x = model.likelihood.mean(logits)
        if size is not None:
            x = x[..., : size[0], : size[1]]
        write_npy((out_dir / name).with_suffix(".npy"), x[0])
        write_item_images(out_dir, [name], x, _scale_of(run))
    return out_dir


def _read_latents(p: Path, channels: int):
    """(name, z (C, h, w), original size or None) for each latent."""
    if not p.exists():
        raise DataError(f"{p}: no such latents file or folder")
    if p.is_dir():
        sizes = json.loads((p / SIZES_FILE).read_text()) if (p / SIZES_FILE).is_file() else {}
        files = sorted(f for f in p.rglob("*.npy") if f.name != "latent_scale.npy")
        if not files:
            raise DataError(f"{p}: no .npy latents in this folder")
        for f in files:
            rel = str(f.relative_to(p))
            yield rel, _latent(np.load(f), channels, f), sizes.get(rel)
        return
    if p.suffix == ".npz":
        d = np.load(p)
        if "z" not in d:
            raise DataError(f"{p}: no array 'z' (expected the .npz that `vaelab encode` writes)")
        arr, names = d["z"], [str(n) for n in d["names"]] if "names" in d else None
    elif p.suffix == ".npy":
        arr, names = np.load(p), None
    else:
        raise DataError(f"{p}: latents must be a folder from `vaelab encode --tile`, a .npz or a .npy array")
    arr = arr[None] if arr.ndim == 3 else arr
    for i, z in enumerate(arr):
        yield (names[i] if names else f"item-{i:06d}"), _latent(z, channels, p), None


def _latent(a: np.ndarray, channels: int, where: Path) -> Tensor:
    if a.ndim != 3 or a.shape[0] != channels:
        raise DataError(f"{where}: a latent of shape {a.shape}; this model's latents are ({channels}, h, w)")
    return torch.from_numpy(np.ascontiguousarray(a)).float()


__all__ = ["Tiling", "Image", "folder_images", "items_images", "reconstruct_tiled", "encode_tiled", "decode_tiled"]
