"""Tiled encode and decode for spatial-latent models: images of any size with memory bounded by the tile.

The image (or latent) is cut into overlapping tiles on a grid aligned to the model's downsampling factor f.
Each tile runs through the model alone; outputs are blended with linear ramps across each overlap (weights
that sum to one), so no seam is cut anywhere. Peak memory is the whole-image input and output buffers plus
one tile's activations, instead of the whole image's activations.

GroupNorm and attention are not local: run per tile they see per-tile statistics, which shifts colours
between tiles. `stats` picks how the whole image's statistics are gathered first (`vaelab.use.tile_stats`):
"exact" (the untiled model's statistics; one truncated pass per GroupNorm/attention site), "estimate" (one
statistics pass; faster, approximate, but every tile uses the same statistics so no tile is shifted against
its neighbours) or "tile" (per-tile statistics, what most tiled VAE decoders do).

Sides that are not a multiple of f are padded (edge replication) and the output cropped back; nothing is
resized. Encoded latents of a padded image cover the padded size; `image_size` records the original one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from vaelab.core.errors import DataError
from vaelab.use.tile_stats import STAT_MODES, Rect, StatSites, StopForward

DEFAULT_TILE = 256
DEFAULT_STATS = "exact"  # the untiled model's statistics; "estimate" is faster and approximate


class TilingError(DataError):
    """--tile/--overlap that cannot work for this model."""


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    core_start: int
    core_end: int
    ramp_in: int  # positions at the start that ramp up from the previous tile
    ramp_out: int  # positions at the end that ramp down into the next tile


def spans(length: int, tile: int, overlap: int, align: int) -> list[Span]:
    """Tiles covering [0, length): the fewest whose overlaps are >= `overlap`, spread evenly from 0 to flush with
    the end (starts aligned to `align`); cores split each overlap in the middle (aligned too), so they partition
    [0, length)."""
    if tile >= length:
        return [Span(0, length, 0, length, 0, 0)]
    n = 1 + math.ceil((length - tile) / (tile - overlap))  # fewest tiles whose overlaps are all >= overlap
    starts = [round(i * (length - tile) / (n - 1) / align) * align for i in range(n)]  # evenly spread, aligned
    ends = [s + tile for s in starts]
    cuts = [0] + [((starts[i + 1] + ends[i]) // 2) // align * align for i in range(len(starts) - 1)] + [length]
    out = []
    for i, (s, e) in enumerate(zip(starts, ends)):
        ramp_in = ends[i - 1] - s if i > 0 else 0
        ramp_out = e - starts[i + 1] if i + 1 < len(starts) else 0
        out.append(Span(s, e, cuts[i], cuts[i + 1], ramp_in, ramp_out))
    return out


def ramp(span: Span) -> Tensor:
    """(tile,) blending weights: 0 on the outer quarter of each overlap (where the tile's zero padding still
    shows), a linear ramp across its middle half, 1 inside; the two tiles' weights in an overlap sum to 1."""
    w = torch.ones(span.end - span.start, dtype=torch.float64)
    if span.ramp_in:
        w[: span.ramp_in] = _rise(span.ramp_in)
    if span.ramp_out:
        w[-span.ramp_out:] = torch.minimum(w[-span.ramp_out:], _rise(span.ramp_out).flip(0))
    return w


def _rise(n: int) -> Tensor:
    """(n,) weights rising from 0 to 1 across an overlap of n positions: 0 for the first n//4, 1 for the last n//4."""
    margin = n // 4
    core = n - 2 * margin
    pos = torch.arange(n, dtype=torch.float64) - margin + 0.5
    return (pos / core).clamp(0.0, 1.0)


# --------------------------------------------------------------------- checks
def downsampling_factor(model) -> int:
    """f = input side / latent side for a spatial-latent image model; TilingError for a vector latent."""
    shape, latent = tuple(model.input_shape), tuple(model.latent_shape)
    if len(shape) != 3 or len(latent) != 3:
        raise TilingError(f"--tile needs a model with a spatial latent (C, h, w) over images (C, H, W); this model maps "
                          f"{shape} to a vector latent {latent}, whose decoder needs the whole latent at once: drop --tile")
    fh, fw = shape[1] / latent[1], shape[2] / latent[2]
    if fh != fw or fh != int(fh) or fh < 1:
        raise TilingError(f"--tile: the model maps {shape[1:]} to a {latent[1:]} latent, not a whole-number "
                          f"downsampling factor; tiling needs one")
    return int(fh)


def check_tiling(f: int, tile: int, overlap: int) -> None:
    """Refuse a tile smaller than or not a multiple of f, or an overlap that is negative, >= tile or not a multiple of f."""
    def near(v: int) -> str:
        lo = max(f, v // f * f)
        return f"{lo} or {lo + f}" if lo != v else str(v)

    if tile < f:
        raise TilingError(f"--tile {tile} is smaller than the model's downsampling factor {f}: give --tile {f} or more "
                          f"(a multiple of {f}, e.g. {max(f, DEFAULT_TILE // f * f)})")
    if tile % f:
        raise TilingError(f"--tile {tile} is not a multiple of the model's downsampling factor {f}: use {near(tile)}")
    if overlap < 0:
        raise TilingError(f"--overlap {overlap} must be >= 0 (e.g. --overlap {tile // 4 // f * f})")
    if overlap >= tile:
        raise TilingError(f"--overlap {overlap} must be smaller than --tile {tile}: e.g. --overlap {tile // 4 // f * f}")
    if overlap % f:
        raise TilingError(f"--overlap {overlap} is not a multiple of the model's downsampling factor {f}: "
                          f"use {overlap // f * f} or {overlap // f * f + f}")


def default_overlap(tile: int, f: int) -> int:
    """A quarter of the tile, rounded down to a multiple of f."""
    return tile // 4 // f * f


# --------------------------------------------------------------------- the engine
def _scale_span(s: Span, scale: Fraction) -> Span:
    return Span(*(int(v * scale) for v in (s.start, s.end, s.core_start, s.core_end, s.ramp_in, s.ramp_out)))


def run_tiles(sites: StatSites, domain: tuple[int, int], tile: int, overlap: int, align: int, stats: str,
              fn: Callable[[Rect], Tensor], scale: Fraction, out_hw: tuple[int, int]) -> Tensor:
    """Run fn on every tile of `domain` (after the statistics passes of mode `stats`) and blend the outputs.

    fn(tile rect in domain units) -> (B, C, h*scale, w*scale); the output grid is the domain times `scale`
    (1/f when encoding pixels to latents, f when decoding), where the blending ramps are laid."""
    ys, xs = spans(domain[0], tile, overlap, align), spans(domain[1], tile, overlap, align)
    grid = [(sy, sx, Rect(sy.start, sy.end, sx.start, sx.end), Rect(sy.core_start, sy.core_end, sx.core_start, sx.core_end))
            for sy in ys for sx in xs]
    if sites.empty or len(grid) == 1:
        stats = "tile"  # one tile is the whole image: its statistics are the whole image's
    with sites.attached():
        _statistics_passes(sites, domain, grid, STAT_MODES.get(stats), fn)
        sites.begin_pass(collect=False, domain=domain)
        out = weight = None
        for sy, sx, rect, core in grid:
            sites.set_tile(rect, core)
            y = fn(rect)
            if out is None:  # on the model's device
                out = y.new_zeros((*y.shape[:2], *out_hw))  # (B, channels of fn's output, H*scale, W*scale)
                weight = torch.zeros(out_hw, dtype=torch.float64, device=y.device)
            oy, ox = _scale_span(sy, scale), _scale_span(sx, scale)
            w = torch.outer(ramp(oy), ramp(ox)).to(y.device)  # (h*scale, w*scale), float64
            out[..., oy.start:oy.end, ox.start:ox.end] += y * w.to(y.dtype)
            weight[oy.start:oy.end, ox.start:ox.end] += w
    return out / weight.to(out.dtype)


def _statistics_passes(sites: StatSites, domain, grid, mode: str, fn) -> None:
    if mode == "estimate":
        sites.begin_pass(collect=True, running=True, domain=domain)
        for _sy, _sx, rect, core in grid:
            sites.set_tile(rect, core)
            fn(rect)
        sites.end_pass()
    elif mode == "exact":
        _, _, rect, core = grid[0]
        sites.begin_pass(collect=False, domain=domain)  # one tile, to learn the order the sites run in
        sites.set_tile(rect, core)
        fn(rect)
        for target in range(len(sites.order)):
            sites.begin_pass(collect=True, target=target, domain=domain)
            for _sy, _sx, rect, core in grid:
                sites.set_tile(rect, core)
                try:
                    fn(rect)
                except StopForward:
                    pass
            sites.end_pass()


def pad_to_multiple(x: Tensor, f: int) -> tuple[Tensor, tuple[int, int]]:
    """Edge-replicate the bottom/right so both sides are multiples of f; returns (padded, original (H, W))."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % f, (-w) % f
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


@torch.no_grad()
def tiled_posterior(model, x: Tensor, c: Tensor | None = None, *, tile: int = DEFAULT_TILE, overlap: int | None = None,
                    stats: str = DEFAULT_STATS) -> tuple[Tensor, Tensor, tuple[int, int]]:
    """(mean, logvar, original (H, W)) of q(z|x) for images x (B, C, H, W) of any size, in decoder units.

    The latent covers x padded to multiples of f: (B, latent C, ceil(H/f), ceil(W/f))."""
    f = downsampling_factor(model)
    overlap = default_overlap(tile, f) if overlap is None else overlap
    check_tiling(f, tile, overlap)
    _check_image(model, x)
    xp, size = pad_to_multiple(x, f)
    hp, wp = xp.shape[-2:]
    lc = model.latent_shape[0]
    sites = StatSites(model)

    def run(r: Rect) -> Tensor:
        post = model.encode(xp[..., r.y0:r.y1, r.x0:r.x1], c)
        return torch.cat([post.mean, post.logvar], dim=1)

    both = run_tiles(sites, (hp, wp), tile, overlap, f, stats, run, Fraction(1, f), (hp // f, wp // f))
    return both[:, :lc], both[:, lc:], size


@torch.no_grad()
def tiled_decode_logits(model, z_units: Tensor, c: Tensor | None = None, *, tile: int = DEFAULT_TILE,
                        overlap: int | None = None, stats: str = DEFAULT_STATS) -> Tensor:
    """The decoder's output (the likelihood's parameters, before its mean) for latents in decoder units
    (B, C, h, w) of any size.

    `tile` and `overlap` are in output pixels (multiples of f), as for encoding."""
    f = downsampling_factor(model)
    overlap = default_overlap(tile, f) if overlap is None else overlap
    check_tiling(f, tile, overlap)
    if z_units.dim() != 4 or z_units.shape[1] != model.latent_shape[0]:
        raise DataError(f"latents have shape {tuple(z_units.shape[1:])} per item; this model's latents have "
                        f"{model.latent_shape[0]} channels: (C={model.latent_shape[0]}, h, w)")
    h, w = z_units.shape[-2:]
    sites = StatSites(model.decoder)

    def run(r: Rect) -> Tensor:
        return model.decoder_output(z_units[..., r.y0:r.y1, r.x0:r.x1], c)

    return run_tiles(sites, (h, w), tile // f, overlap // f, 1, stats, run, Fraction(f), (h * f, w * f))


@torch.no_grad()
def tiled_reconstruct(model, x: Tensor, c: Tensor | None = None, *, tile: int = DEFAULT_TILE, overlap: int | None = None,
                      stats: str = DEFAULT_STATS) -> Tensor:
    """decode(encode(x).mean) tile by tile, cropped back to x's size: (B, C, H, W)."""
    mean, _, (h, w) = tiled_posterior(model, x, c, tile=tile, overlap=overlap, stats=stats)
    params = tiled_decode_logits(model, mean, c, tile=tile, overlap=overlap, stats=stats)
    return model.likelihood.mean(params)[..., :h, :w]


def _check_image(model, x: Tensor) -> None:
    if x.dim() != 4 or x.shape[1] != model.input_shape[0]:
        raise DataError(f"images have shape {tuple(x.shape[1:])}; the model takes {model.input_shape[0]}-channel images "
                        f"(C={model.input_shape[0]}, H, W) of any size when tiled")


__all__ = ["tiled_posterior", "tiled_decode_logits", "tiled_reconstruct", "downsampling_factor", "check_tiling", "DEFAULT_STATS",
           "default_overlap", "spans", "ramp", "pad_to_multiple", "TilingError", "DEFAULT_TILE"]
