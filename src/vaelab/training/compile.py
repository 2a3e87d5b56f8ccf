"""`train.compile: true`: torch.compile the training forward; the compile time is measured apart.

Compilation happens on the first call, so `warm_up` runs one forward+backward on a real batch and times it,
then restores the weights, buffers (BatchNorm statistics), gradients and RNG, so the run itself is unchanged.
"""
from __future__ import annotations

import contextlib
import copy
import time
from typing import Callable, ContextManager

import torch
from torch import nn


def compile_model(module: nn.Module, backend: str | None = None) -> nn.Module:
    """torch.compile(module); `backend` as torch.compile takes it (default inductor)."""
    return torch.compile(module, **({"backend": backend} if backend else {}))


def warm_up(step_model: nn.Module, model: nn.Module, x: torch.Tensor, c: torch.Tensor | None, loss_fn,
            autocast: Callable[[], ContextManager] = contextlib.nullcontext) -> float:
    """Seconds the first (compiling) forward+backward of `step_model` takes; `model` is the plain module it wraps."""
    state = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    t0 = time.perf_counter()
    with autocast():
        out = step_model(x, c)
    loss_fn(out, x, 1.0).total.backward()
    if x.is_cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    model.zero_grad(set_to_none=True)
    model.load_state_dict(state)
    torch.set_rng_state(rng)
    if cuda_rng is not None:
        torch.cuda.set_rng_state_all(cuda_rng)
    return seconds


def compile_and_warm_up(trainer) -> float:
    """Compile `trainer.step_model` and time its first step (stored as trainer.compile_seconds, logged with epoch 1)."""
    import sys

    from vaelab.training.trainer import _autocast

    tc = trainer.cfg.train
    trainer.step_model = compile_model(trainer.step_model)
    x, y = next(iter(trainer.bundle.train.batches(tc.batch_size, shuffle=False)))  # no generator consumed
    x = x.to(trainer.device)
    model = trainer.model
    c = model.condition_vector(y.to(trainer.device) if y is not None else None) if model.conditional else None
    seconds = warm_up(trainer.step_model, model, x, c, trainer.loss, lambda: _autocast(trainer.device, tc.precision))
    trainer.compile_seconds = seconds
    if trainer.is_main:
        print(f"torch.compile: first step took {seconds:.1f}s (compile time, not counted in samples/s)",
              file=sys.stderr, flush=True)
    return seconds
