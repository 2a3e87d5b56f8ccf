"""Whole-image statistics for tiled encoding/decoding: GroupNorm moments and attention keys/values.

Run on one tile, a GroupNorm normalises with that tile's mean and variance and attention attends only to that
tile's positions. Both differ from tile to tile, which is where the colour shifts between tiles of naive tiled
decoders come from. Here statistics passes over all tiles gather, for every GroupNorm, the per-(sample, group)
moments over the whole image, and for every attention block its keys and values at every position; the output
pass then normalises every tile with the same whole-image moments and lets each tile's queries attend to the
whole image's keys. Each tile contributes only its *core* (the part of the image it owns; cores partition the
image), so overlaps are not counted twice. Three modes:

- "tile": no statistics pass; per-tile statistics, as naive tiling does.
- "estimate" (one statistics pass): tiles run in order and each GroupNorm normalises with the moments gathered
  so far (the tiles before and this one), so the deeper layers' moments come from activations normalised
  nearly as the whole image would be; the output pass uses the final moments. Not exact: the early tiles
  saw partial moments.
- "exact": one truncated pass per site (GroupNorm or attention, in forward order): pass k runs each tile only
  up to site k, with sites < k already using whole-image statistics, so site k's are exactly the untiled
  network's (up to the tile borders' zero padding, which the overlaps hide). Costs about as many forward runs
  as there are sites at the full-resolution end of the network.

The hooks are registered for the duration of `StatSites.attached()` and removed in `finally`.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaelab.core.registry import Registry
from vaelab.layers.attention import SpatialSelfAttention

STAT_MODES = Registry("tile statistics mode")
for _name, _doc in (("tile", "per-tile statistics (naive tiling), no extra pass"),
                    ("estimate", "one statistics pass with running whole-image moments"),
                    ("exact", "one truncated pass per GroupNorm/attention site: the untiled network's statistics")):
    STAT_MODES.register(_name, _name, doc=_doc)


@dataclass(frozen=True)
class Rect:
    """[y0, y1) x [x0, x1) in the tiled domain's units (image pixels to encode, latent cells to decode)."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def w(self) -> int:
        return self.x1 - self.x0


class StopForward(Exception):
    """Raised by the site an exact pass targets, once its statistics for this tile are gathered."""


def _scaled(v: int, r: Fraction, what: str) -> int:
    s = v * r
    if s.denominator != 1:  # the grid aligns tiles and cores to the downsampling factor, so this cannot happen
        raise RuntimeError(f"tile {what} {v} does not map to a whole activation position at ratio {r}")
    return int(s)


class StatSites:
    """The GroupNorms and attention blocks of a module, with the statistics passes' accumulators."""

    def __init__(self, module: nn.Module):
        self.norms = [m for m in module.modules() if isinstance(m, nn.GroupNorm)]
        self.attns = [m for m in module.modules() if isinstance(m, SpatialSelfAttention)]
        self.moments: dict[int, tuple[Tensor, Tensor]] = {}  # id(GN) -> whole-image (mean, var), each (B, G) float64
        self.kv: dict[int, tuple[Tensor, Tensor]] = {}  # id(attention) -> whole-image (K, V), each (B, N, C)
        # id(attention) -> its residual branch at every position, (B, C, gh, gw), filled core by core in the first
        # pass that has the whole-image keys, then read by later passes instead of attending again
        self.delta: dict[int, Tensor] = {}
        self._delta_done: set[int] = set()
        self.order: list[int] = []  # ids of the sites in the order a forward calls them
        self.collect = self.running = False
        self.target: int | None = None  # exact mode: the site this pass gathers, then stops
        self._sums: dict[int, tuple] = {}
        self._kv_new: dict[int, tuple[Tensor, Tensor]] = {}
        self.domain: tuple[int, int] = (0, 0)
        self.tile = self.core = None

    @property
    def empty(self) -> bool:
        return not self.norms and not self.attns

    # ----------------------------------------------------------------- passes
    def begin_pass(self, *, collect: bool, domain: tuple[int, int], running: bool = False, target: int | None = None) -> None:
        self.collect, self.running, self.target, self.domain = collect, running, target, domain
        self._sums = {}

    def end_pass(self) -> None:
        for key, (s1, s2, n) in self._sums.items():
            self.moments[key] = self._finish(s1, s2, n)
        self.kv.update(self._kv_new)
        self._kv_new = {}
        self._delta_done |= {key for key in self.delta if key in self.kv}
        self.collect = self.running = False
        self.target = None

    @staticmethod
    def _finish(s1: Tensor, s2: Tensor, n: int) -> tuple[Tensor, Tensor]:
        mean = s1 / n
        return mean, (s2 / n - mean * mean).clamp_min(0.0)

    def set_tile(self, tile: Rect, core: Rect) -> None:
        self.tile, self.core = tile, core

    def _site(self, m: nn.Module) -> int:
        if id(m) not in self.order:
            self.order.append(id(m))
        return self.order.index(id(m))

    # ----------------------------------------------------------------- geometry
    def _ratio(self, x: Tensor) -> Fraction:
        return Fraction(x.shape[-1], self.tile.w)

    def _core_slices(self, x: Tensor) -> tuple[slice, slice, Rect]:
        return self._core_slices_shape(x.shape[-2], x.shape[-1])

    def _core_slices_shape(self, h: int, w: int) -> tuple[slice, slice, Rect]:
        """The core's rows/cols within a (h, w) activation of this tile, and the core in whole-image activation
        coordinates."""
        r, t, c = Fraction(w, self.tile.w), self.tile, self.core
        glob = Rect(*(_scaled(v, r, "core") for v in (c.y0, c.y1, c.x0, c.x1)))
        ty, tx = _scaled(t.y0, r, "origin"), _scaled(t.x0, r, "origin")
        return slice(glob.y0 - ty, glob.y1 - ty), slice(glob.x0 - tx, glob.x1 - tx), glob

    # ----------------------------------------------------------------- GroupNorm
    def _group_norm(self, m: nn.GroupNorm, x: Tensor, mom: tuple[Tensor, Tensor] | None) -> Tensor:
        """GroupNorm of x with the given (B, G) moments, or the tile's own (what m(x) does) without."""
        if mom is None:
            return F.group_norm(x, m.num_groups, m.weight, m.bias, m.eps)
        b, c = x.shape[:2]
        mean, var = (t.to(x.dtype).view(b, m.num_groups, 1) for t in mom)
        y = ((x.reshape(b, m.num_groups, -1) - mean) * torch.rsqrt(var + m.eps)).reshape_as(x)
        if m.affine:
            shape = (1, c) + (1,) * (x.dim() - 2)
            y = y * m.weight.view(shape) + m.bias.view(shape)
        return y

    def _moments_now(self, m: nn.GroupNorm) -> tuple[Tensor, Tensor] | None:
        """The moments this GroupNorm uses now: the running ones in an estimate pass, else the gathered ones."""
        if self.running and id(m) in self._sums:
            return self._finish(*self._sums[id(m)])
        return self.moments.get(id(m))

    def _norm_hook(self, m: nn.GroupNorm, inputs, out: Tensor) -> Tensor:
        (x,) = inputs
        site = self._site(m)
        if self.collect and (self.target is None or self.target == site):
            ys, xs, _ = self._core_slices(x)
            flat = x[..., ys, xs].double().reshape(x.shape[0], m.num_groups, -1)
            s1, s2, n = self._sums.get(id(m), (0.0, 0.0, 0))
            self._sums[id(m)] = (s1 + flat.sum(-1), s2 + (flat * flat).sum(-1), n + flat.shape[-1])
            if self.target == site:
                raise StopForward
        mom = self._moments_now(m)
        return out if mom is None else self._group_norm(m, x, mom)

    # ----------------------------------------------------------------- attention
    def _attn_hook(self, m: SpatialSelfAttention, inputs, out: Tensor) -> Tensor:
        (x,) = inputs
        site = self._site(m)
        gather = self.collect and (self.target is None or self.target == site)
        have = self.kv.get(id(m))
        if not gather and have is None:
            return out
        b, c, h, w = x.shape
        tokens = self._group_norm(m.norm, x, self._moments_now(m.norm)).flatten(2).transpose(1, 2)  # (B, h*w, C)
        q, k, v = m.in_proj(tokens).chunk(3, dim=-1)
        if gather:
            self._store_kv(m, x, k, v)
            if self.target == site:
                raise StopForward
        if have is None:
            return out
        return x + self._attend(m, q, have, x.shape)

    def _attend(self, m: SpatialSelfAttention, q: Tensor, kv: tuple[Tensor, Tensor], shape) -> Tensor:
        """The attention branch for this tile's queries against the whole image's keys, (B, C, h, w)."""
        b, c, h, w = shape
        ys, xs, glob = self._core_slices_shape(h, w)
        r = Fraction(w, self.tile.w)
        ty, tx = _scaled(self.tile.y0, r, "origin"), _scaled(self.tile.x0, r, "origin")
        if id(m) in self._delta_done:  # computed in an earlier pass: read this tile's window
            return self.delta[id(m)][..., ty:ty + h, tx:tx + w]
        gk, gv = kv
        # 4-D (B, heads=1, N, C): PyTorch's fused kernels, memory linear in the number of keys
        a = F.scaled_dot_product_attention(q.unsqueeze(1), gk.unsqueeze(1), gv.unsqueeze(1)).squeeze(1)
        d = m.out_proj(a).transpose(1, 2).reshape(b, c, h, w)
        gh, gw = _scaled(self.domain[0], r, "height"), _scaled(self.domain[1], r, "width")
        buf = self.delta.setdefault(id(m), d.new_zeros(b, c, gh, gw))
        buf[..., glob.y0:glob.y1, glob.x0:glob.x1] = d[..., ys, xs]
        return d

    def _store_kv(self, m: SpatialSelfAttention, x: Tensor, k: Tensor, v: Tensor) -> None:
        b, c, h, w = x.shape
        ys, xs, glob = self._core_slices(x)
        r = self._ratio(x)
        gh, gw = _scaled(self.domain[0], r, "height"), _scaled(self.domain[1], r, "width")
        if id(m) not in self._kv_new:
            self._kv_new[id(m)] = (x.new_zeros(b, gh * gw, c), x.new_zeros(b, gh * gw, c))
        gk, gv = self._kv_new[id(m)]
        for buf, t in ((gk, k), (gv, v)):
            part = t.transpose(1, 2).reshape(b, c, h, w)[..., ys, xs]  # (B, C, core h, core w)
            buf.view(b, gh, gw, c)[:, glob.y0:glob.y1, glob.x0:glob.x1] = part.permute(0, 2, 3, 1)

    # ----------------------------------------------------------------- hooks
    @contextlib.contextmanager
    def attached(self):
        handles = [m.register_forward_hook(self._norm_hook) for m in self.norms]
        handles += [m.register_forward_hook(self._attn_hook) for m in self.attns]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()


__all__ = ["StatSites", "Rect", "StopForward", "STAT_MODES"]
