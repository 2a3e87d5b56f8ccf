"""Data-parallel training on PyTorch's own engine: `torchrun --nproc_per_node N -m vaelab train CONFIG`.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; `from_env` joins the process group (nccl on CUDA, gloo on CPU).
Every rank draws the same global batch order from the same seeded generator and trains on its own contiguous
slice of each global batch (what DistributedSampler does, on the in-memory index order), DistributedDataParallel
averages the gradients, and only rank 0 writes the run folder. `train.batch_size` is the global batch.

A single process gets a `LocalContext` with the same methods as `DistContext` (each one trivial), so the trainer
and the step never ask which one they hold.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass
from typing import Any, ContextManager, Iterator

import torch
import torch.distributed as dist

from vaelab.core.errors import ConfigError


class LocalContext:
    """One process: nothing to share, wrap, seed or shard."""

    rank, world_size, is_main = 0, 1, True

    def broadcast(self, obj: Any) -> Any:
        return obj

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def barrier(self) -> None:
        pass

    def close(self, *, wait: bool = True) -> None:
        pass

    def device(self, device: torch.device) -> torch.device:
        return device

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        return model

    def no_sync(self, module: torch.nn.Module) -> ContextManager:
        return contextlib.nullcontext()

    def seed_epoch(self, seed: int, epoch: int) -> None:
        pass  # the reparameterisation noise continues the run's own generator state

    def shard(self, bundle, batch_size: int):
        return bundle


@dataclass
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """This rank's device: its own GPU under CUDA, the CPU otherwise."""
        return torch.device("cuda", self.local_rank) if device.type == "cuda" else device

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model, device_ids=[self.local_rank] if device.type == "cuda" else None)

    def no_sync(self, module: torch.nn.Module) -> ContextManager:
        """Skip the gradient all-reduce for a micro-batch that does not end an optimizer step."""
        return module.no_sync()

    def seed_epoch(self, seed: int, epoch: int) -> None:
        """Each rank its own reparameterisation noise, reproducible per epoch (so resuming matches)."""
        torch.manual_seed(seed * 1_000_003 + epoch * self.world_size + self.rank)

    def shard(self, bundle, batch_size: int):
        """The bundle with this rank's slice of every global training batch."""
        check_split(len(bundle.train), batch_size, self.world_size)
        return dataclasses.replace(bundle, train=ShardedSplit(bundle.train, self.rank, self.world_size))

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        out = t.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    def barrier(self) -> None:
        dist.barrier()

    def close(self, *, wait: bool = True) -> None:
        """Leave the group together: a rank tearing down gloo while another still writes its checkpoint
        makes the other abort at exit ("terminate called without an active exception")."""
        if dist.is_initialized():
            try:
                if wait:  # not after an error: the other ranks may never arrive
                    dist.barrier()
            finally:
                dist.destroy_process_group()


ParallelContext = LocalContext | DistContext


def from_env(device_name: str = "auto") -> ParallelContext:
    """Join the process group torchrun describes in the environment; a LocalContext for a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return LocalContext()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
    use_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return DistContext(rank, world, local, backend)


def check_split(n_train: int, batch_size: int, world: int) -> None:
    """Raise when `world` processes cannot share the data: the global batch and the training set must split."""
    if batch_size % world:
        lower, upper = batch_size - batch_size % world, batch_size + world - batch_size % world
        raise ConfigError(f"train.batch_size {batch_size} (the global batch) does not split over {world} processes: "
                          f"use a multiple of {world}, e.g. {lower or upper} or {upper}")
    if n_train < world:
        raise ConfigError(f"the training set has {n_train} samples, fewer than the {world} processes: "
                          f"use --nproc_per_node {max(1, n_train)} or more data")


class ShardedSplit:
    """This rank's contiguous slice of every global batch of `inner`; a batch tail that does not split evenly
    over the ranks is dropped (at most world-1 samples per epoch) so every rank takes the same number of steps."""

    def __init__(self, inner, rank: int, world_size: int):
        self.inner, self.rank, self.world = inner, rank, world_size

    def __len__(self) -> int:  # global samples used per epoch
        n = len(self.inner)
        return n - n % self.world if n % self.world else n

    def batches(self, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None,
                drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        for x, y in self.inner.batches(batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last):
            per = len(x) // self.world
            if per == 0:
                continue
            sl = slice(self.rank * per, (self.rank + 1) * per)
            yield x[sl], (None if y is None else y[sl])

    def take(self, n: int):
        return self.inner.take(n)

    def __getattr__(self, name: str):  # labels(), x, y ... of the inner split
        return getattr(self.inner, name)



def rank_batches(batches, ctx):
    """This rank's share of an evaluation pass: every world_size-th batch starting at its rank, so the ranks
    together see each item exactly once (sum their totals with all_reduce_sum); all batches in one process."""
    for i, batch in enumerate(batches):
        if ctx is None or i % ctx.world_size == ctx.rank:
            yield batch
