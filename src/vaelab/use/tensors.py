"""Tensor in, tensor out: encode, decode, sample and reconstruct for notebooks (nothing is written to disk).

Each takes a `Run` or the path of a run / exported folder, accepts torch tensors or numpy arrays, moves them
to the model's device, and works for every model family: MLP, conv, spatial latents (latents keep their
(C, H, W) shape) and conditional models (give `labels`; `sample` without them draws n per label).
Latents are in scaled units (times `model.latent_scale`), as `vaelab encode` writes them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from vaelab.core.errors import DataError
from vaelab.training.runs import Run, load_run

RunLike = Run | str | Path
Labels = Tensor | Sequence[int] | int | None


def as_run(run: RunLike) -> Run:
    return run if isinstance(run, Run) else load_run(run)


def _tensor(a: Any, device: torch.device) -> Tensor:
    t = a if isinstance(a, Tensor) else torch.as_tensor(a)
    return t.to(device=device, dtype=torch.float32)


def _labels(run: Run, labels: Labels, n: int, device: torch.device) -> Tensor | None:
    """Labels (N,) or condition vectors (N, K) for a conditional model; None for an unconditional one."""
    model = run.model
    if not model.conditional:
        if labels is not None:
            raise DataError(f"labels given, but the model of {run.path} is unconditional; leave them out")
        return None
    if labels is None:
        raise DataError(f"the model of {run.path} is conditional: give labels (one per item, or one int for all)")
    if isinstance(labels, int):
        return torch.full((n,), labels, dtype=torch.long, device=device)
    t = torch.as_tensor(labels, device=device)
    if t.shape[0] != n:
        raise DataError(f"{t.shape[0]} labels for {n} items; give one per item")
    return t


def _device(run: Run) -> torch.device:
    return next(run.model.parameters()).device


@torch.no_grad()
def encode(run: RunLike, x: Any, labels: Labels = None, *, sample: bool = False, seed: int | None = None,
           batch_size: int = 256) -> Tensor:
    """Latents (N, *latent_shape) of inputs (N, *input_shape): the posterior mean, or a draw with `sample`."""
    from vaelab.use.codec import encode_tensor

    r = as_run(run)
    dev = _device(r)
    x = _tensor(x, dev)
    g = torch.Generator(device=dev).manual_seed(seed) if seed is not None else None
    z, _, _ = encode_tensor(r, x, _labels(r, labels, x.shape[0], dev), sample=sample, generator=g, batch_size=batch_size)
    return z


@torch.no_grad()
def decode(run: RunLike, z: Any, labels: Labels = None, *, batch_size: int = 256) -> Tensor:
    """Outputs (N, *input_shape), in the data's range, of latents (N, *latent_shape) in scaled units."""
    from vaelab.use.codec import decode_tensor

    r = as_run(run)
    dev = _device(r)
    z = _tensor(z, dev)
    return decode_tensor(r, z, _labels(r, labels, z.shape[0], dev), batch_size=batch_size)


@torch.no_grad()
def reconstruct(run: RunLike, x: Any, labels: Labels = None, *, batch_size: int = 256) -> Tensor:
    """decode(encode(x)) with the posterior mean: (N, *input_shape), deterministic."""
    from vaelab.use.reconstruct import reconstruct_tensor

    r = as_run(run)
    dev = _device(r)
    x = _tensor(x, dev)
    return reconstruct_tensor(r, x, _labels(r, labels, x.shape[0], dev), batch_size=batch_size)


@torch.no_grad()
def sample(run: RunLike, n: int = 16, labels: Labels = None, *, temperature: float = 1.0, seed: int = 0) -> Tensor:
    """n draws from the prior, decoded: (n, *input_shape). A conditional model draws n of each given label
    (`labels` an int or a sequence), or n of every label in order when `labels` is None (n * classes rows)."""
    from vaelab.use.sampling import sample_tensor

    r = as_run(run)
    model = r.model
    if not model.conditional or labels is None:
        x, _ = sample_tensor(r, n, temperature=temperature, seed=seed)
        return x
    if not model.condition.takes_labels:
        raise DataError(f"the model of {r.path} takes condition vectors; decode latents with them instead of sampling")
    wanted = [labels] if isinstance(labels, int) else [int(v) for v in torch.as_tensor(labels).view(-1)]
    return torch.cat([sample_tensor(r, n, label=k, temperature=temperature, seed=seed + i)[0] for i, k in enumerate(wanted)])


__all__ = ["encode", "decode", "reconstruct", "sample", "as_run"]
