"""`train.compile: true`: torch.compile the training forward; the compile time is measured apart.

Compilation happens on the first call, so `warm_up` runs the trainer's own step once (forward, loss, backward,
no optimizer step) on a real batch and times it, then restores the weights, buffers (BatchNorm statistics),
gradients and RNG, so the run itself is unchanged.
"""
from __future__ import annotations

import copy
import sys
import time

import torch
from torch import nn

from vaelab.training.step import TrainStep, condition_of


def compile_model(module: nn.Module, backend: str | None = None) -> nn.Module:
    """torch.compile(module); `backend` as torch.compile takes it (default inductor)."""
    return torch.compile(module, **({"backend": backend} if backend else {}))


def warm_up(step: TrainStep, x: torch.Tensor, c: torch.Tensor | None) -> float:
    """Seconds the first (compiling) forward+backward of `step` takes; leaves no trace on the model or the RNG."""
    model = step.model
    state = copy.deepcopy(model.state_dict())
    devices = [x.device] if x.is_cuda else []
    with torch.random.fork_rng(devices=devices):
        t0 = time.perf_counter()
        step(x, c, 1.0, apply=False)
        if x.is_cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    step.zero_grad()
    model.load_state_dict(state)
    return seconds


def compile_and_warm_up(trainer) -> float:
    """Compile the trainer's step forward and time its first step (trainer.compile_seconds, logged with epoch 1)."""
    tc, step = trainer.cfg.train, trainer.step
    step.forward_model = compile_model(step.forward_model)
    x, y = next(iter(trainer.bundle.train.batches(tc.batch_size, shuffle=False)))  # no generator consumed
    x = x.to(trainer.device)
    seconds = warm_up(step, x, condition_of(step.model, y, trainer.device))
    trainer.compile_seconds = seconds
    if trainer.is_main:
        print(f"torch.compile: first step took {seconds:.1f}s (compile time, not counted in samples/s)",
              file=sys.stderr, flush=True)
    return seconds
