"""The training loop: knows the VAE interface and the loss, nothing about any particular architecture.

Every epoch ends with an atomic checkpoint (weights, optimizer, scheduler, EMA, history, RNG states), so
`train(resume=RUN)` continues exactly where an uninterrupted run would be. The work of one batch is the
shared `TrainStep`; this file decides which batches, when to evaluate, log, checkpoint and stop.
"""
from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from vaelab.core.checkpoint import CHECKPOINT_NAME, save_checkpoint
from vaelab.core.config import Config
from vaelab.core.errors import TrainingError
from vaelab.data import DataBundle
from vaelab.model.vae import VAE
from vaelab.training.distributed import LocalContext, ParallelContext, rank_batches
from vaelab.training.loss_setup import LossSetup
from vaelab.training.precision import get_precision
from vaelab.training.progress import epoch_bar, report_epoch
from vaelab.data.spec import SPEC_KEY
from vaelab.training.runs import LOCATION_KEY, append_metrics
from vaelab.training.step import NonFiniteLoss, TrainStep, condition_of
from vaelab.training.units import UnitStats, collapse_warning, unit_stats

EpochCallback = Callable[[dict[str, Any]], None]


@dataclass
class State:
    epoch: int = 0  # completed epochs
    global_step: int = 0  # batches seen
    history: list[dict[str, Any]] = field(default_factory=list)
    best_val: float = math.inf
    bad_epochs: int = 0
    stopped_early: bool = False


def uses_channels_last(setting: bool | str, model: torch.nn.Module, sample_shape: tuple[int, ...]) -> bool:
    """train.channels_last: a bool as given; auto: on for images (C, H, W) through a model with 2-D convolutions,
    where it measured 1.09-1.14x faster (benchmarks/RESULTS.md); MLPs and 1-D/3-D data gain nothing from it."""
    if setting != "auto":
        return bool(setting)
    return len(sample_shape) == 3 and any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


class Trainer:
    """Fits one model to one data bundle and writes the run folder."""

    def __init__(self, cfg: Config, run_dir: Path, bundle: DataBundle, model: VAE, device: torch.device,
                 on_epoch: EpochCallback | None = None, dist: ParallelContext | None = None):
        self.cfg, self.run_dir, self.bundle, self.device = cfg, Path(run_dir), bundle, device
        tc = cfg.train
        get_precision(tc.precision, device)  # refuse e.g. fp16 on a CPU before any work
        self.model = model.to(device)
        self.channels_last = uses_channels_last(tc.channels_last, model, bundle.spec.shape)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)  # conv weights; 4-D batches follow in _batch_to_device
        self.data_spec = bundle.spec  # fixed for the run (computed once per bundle); stored in every checkpoint
        self.data_location: dict[str, str] = {}  # runs.data_location: where the data lies from the run folder
        self.parallel = dist if dist is not None else LocalContext()  # DistContext under torchrun
        self.is_main = self.parallel.is_main
        self.compile_seconds: float | None = None
        self.loss = LossSetup.from_config(cfg, model, bundle.value_range)
        self.batches_per_epoch = max(1, math.ceil(len(bundle.train) / tc.batch_size))
        self.total_steps = tc.epochs * self.batches_per_epoch
        self.step = TrainStep.from_config(cfg, model, self.loss, device, parallel=self.parallel,
                                          steps_per_epoch=math.ceil(self.batches_per_epoch / tc.grad_accum))
        self.data_gen = torch.Generator().manual_seed(cfg.seed)
        self.state = State()
        self.on_epoch = on_epoch
        self._collapse_warned = False
        self.threads = None  # a vaelab.training.threads.ThreadGovernor when train() runs it

    @property
    def eval_model(self) -> VAE:
        """The weights evaluation, figures and later commands use: the EMA average with train.ema."""
        return self.step.average.model

    # ------------------------------------------------------------------ state
    def checkpoint_state(self) -> dict[str, Any]:
        s = self.state
        return {
            "config": self.cfg.to_dict(), "epoch": s.epoch, "global_step": s.global_step,
            "model": self.model.state_dict(), **self.step.state_dict(), "history": s.history,
            "rng": {"torch": torch.get_rng_state(), "data": self.data_gen.get_state()},
            "early_stopping": {"best_val": s.best_val, "bad_epochs": s.bad_epochs, "stopped": s.stopped_early},
            SPEC_KEY: self.data_spec.to_dict(), LOCATION_KEY: self.data_location,
        }

    def restore(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.step.load_state_dict(ckpt)
        torch.set_rng_state(ckpt["rng"]["torch"])
        self.data_gen.set_state(ckpt["rng"]["data"])
        es = ckpt.get("early_stopping") or {}
        self.state = State(ckpt["epoch"], ckpt["global_step"], list(ckpt["history"]), es.get("best_val", math.inf),
                           es.get("bad_epochs", 0), False)

    # ------------------------------------------------------------------- loop
    def _train_epoch(self, progress) -> dict[str, float]:
        tc, step, s = self.cfg.train, self.step, self.state
        self.model.train()
        names = list(self.loss.weights)  # the terms switched on, as the loss reports them
        # total, each term's batch mean, each term's weighted share of the total (sample-weighted sums)
        sums = torch.zeros(1 + 2 * len(names), dtype=torch.float64)
        n_seen, kl_scale = 0, 0.0
        self.parallel.seed_epoch(self.cfg.seed, s.epoch)
        batches = self.bundle.train.batches(tc.batch_size, shuffle=True, generator=self.data_gen)
        step.zero_grad()
        for i, (x, y) in enumerate(batches):
            if self.threads is not None:
                self.threads.poll()
            x = self._batch_to_device(x)
            c = condition_of(self.model, y, self.device)
            kl_scale = self.loss.schedule(s.global_step, self.total_steps)
            ends_step = (i + 1) % tc.grad_accum == 0 or i + 1 == self.batches_per_epoch
            try:
                terms = step(x, c, kl_scale, apply=ends_step)
            except NonFiniteLoss as e:
                raise TrainingError(
                    f"non-finite loss ({e.value}) at epoch {s.epoch + 1}, batch {i + 1} (global step "
                    f"{s.global_step + 1}); "
                    + (f"the last good checkpoint {self.run_dir / CHECKPOINT_NAME} is intact" if s.epoch
                       else "no epoch finished, so there is no checkpoint")
                    + ". Lower train.lr or set train.grad_clip."
                ) from None
            n = x.shape[0]
            n_seen += n
            sums += torch.cat([torch.stack([terms.total.detach().float(), *(v.detach().float() for v in terms.terms.values())]),
                               self.loss.shares(terms, kl_scale)]).double() * n
            s.global_step += 1
            if progress is not None:
                progress()
        both = self.parallel.all_reduce_sum(torch.cat([sums, torch.tensor([float(n_seen)], dtype=torch.float64)]))
        avg = (both[:-1] / max(int(both[-1]), 1)).tolist()  # epoch averages over all ranks' samples
        k = len(names)
        return {"loss": avg[0], **dict(zip(names, avg[1:1 + k])),
                **{f"weighted_{name}": v for name, v in zip(names, avg[1 + k:])}, "kl_scale": kl_scale}

    def _batch_to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    @torch.no_grad()
    def evaluate(self, split) -> dict[str, float]:
        """Loss terms on a split with the KL weight fully on (schedule value 1)."""
        model = self.eval_model
        model.eval()
        tc = self.cfg.train
        sums = torch.zeros(3, dtype=torch.float64)
        n_seen = 0
        # under torchrun each rank evaluates every world_size-th batch; the sums are added up below
        for x, y in rank_batches(split.batches(tc.eval_batch_size or tc.batch_size, shuffle=False), self.parallel):
            x = self._batch_to_device(x)
            c = condition_of(model, y, self.device)
            with self.step.precision.autocast(self.device):
                out = model(x, c)
            terms = self.loss(out, x, 1.0)
            sums += torch.stack([terms.total.double(), terms.recon.double(), terms.kl.double()]) * x.shape[0]
            n_seen += x.shape[0]
        model.train()
        both = self.parallel.all_reduce_sum(torch.cat([sums, torch.tensor([float(n_seen)], dtype=torch.float64)]))
        avg = (both[:-1] / max(int(both[-1]), 1)).tolist()
        return {"loss": avg[0], "recon": avg[1], "kl": avg[2]}

    def fit(self) -> Path:
        tc, s = self.cfg.train, self.state
        if s.epoch >= tc.epochs:
            return self.run_dir
        from vaelab.training.loggers import EpochLoggers  # train.log beyond metrics.jsonl (TensorBoard)

        self.loggers = EpochLoggers(tc.log if self.is_main else [], self.run_dir, self.cfg, self.bundle, start_epoch=s.epoch)
        with contextlib.closing(self.loggers):
            while s.epoch < tc.epochs and not s.stopped_early:
                t0 = time.perf_counter()
                with epoch_bar(f"epoch {s.epoch + 1}/{tc.epochs}", self.batches_per_epoch, tc.progress and self.is_main) as bar:
                    train_terms = self._train_epoch(bar.advance)
                seconds = time.perf_counter() - t0
                val = self.bundle.val if self.bundle.val is not None and len(self.bundle.val) else None
                val_terms = self.evaluate(val) if val is not None else {}
                val_terms = self.parallel.broadcast(val_terms)  # rank 0's numbers drive scheduler and stopping
                units = self._units(val)
                s.epoch += 1
                row = {"epoch": s.epoch, "step": s.global_step, "lr": self.step.optimizer.param_groups[0]["lr"],
                       **{f"train_{k}": v for k, v in train_terms.items()}, **{f"val_{k}": v for k, v in val_terms.items()},
                       "active_units": units.active, "kl_per_dim": units.kl_per_dim,
                       "seconds": round(seconds, 4), "samples_per_s": round(len(self.bundle.train) / max(seconds, 1e-9), 1),
                       "threads": torch.get_num_threads()}  # results depend on it (CPU kernels' reduction order)
                self._end_epoch(row, val_terms.get("loss", train_terms["loss"]), val_terms.get("loss"))
                self._warn_collapse(units, train_terms["kl_scale"], "validation" if val is not None else "training")
        return self.run_dir

    def _units(self, val) -> UnitStats:
        """Active units and KL per latent dimension on <= 1000 validation samples (the first training ones
        without a validation split)."""
        tc = self.cfg.train
        return unit_stats(self.eval_model, val if val is not None else self.bundle.train, self.device,
                          self.step.precision, batch_size=tc.eval_batch_size or tc.batch_size)

    def _warn_collapse(self, units: UnitStats, kl_scale: float, split_name: str) -> None:
        """One stderr line per run when no unit is active although the KL weight has finished its warm-up."""
        schedule, total = self.loss.schedule, self.total_steps
        kl_on = self.loss.weights.get("kl", 0.0) * kl_scale > 0 and kl_scale >= schedule(total - 1, total) - 1e-9
        if units.active or not units.units or not kl_on or self._collapse_warned or not self.is_main:
            return
        self._collapse_warned = True
        print(collapse_warning(units, self.state.epoch, split_name), file=sys.stderr, flush=True)

    def _end_epoch(self, row: dict[str, Any], monitored: float, val_loss: float | None) -> None:
        """Scheduler, early stopping, compile time; then (rank 0) checkpoint, metrics line, report, callback."""
        s = self.state
        self.step.scheduler.step_epoch(monitored)
        self._early_stopping(val_loss)
        if s.stopped_early:
            row["stopped_early"] = True
        if self.compile_seconds is not None:
            row["compile_seconds"], self.compile_seconds = round(self.compile_seconds, 4), None
        s.history.append(row)
        if self.is_main:  # under torchrun only rank 0 writes
            save_checkpoint(self.run_dir / CHECKPOINT_NAME, self.checkpoint_state())
            append_metrics(self.run_dir, row)
            if self.cfg.train.progress:  # false: quiet, no epoch lines either
                report_epoch(row, self.cfg.train.epochs)
            if self.on_epoch:
                self.on_epoch(row)
            if getattr(self, "loggers", None) is not None:
                self.loggers.log_epoch(row, self.eval_model)

    def _early_stopping(self, val_loss: float | None) -> None:
        es, s = self.cfg.train.early_stopping, self.state
        if es is None or val_loss is None:
            return
        if val_loss < s.best_val - es.min_delta:
            s.best_val, s.bad_epochs = val_loss, 0
        else:
            s.bad_epochs += 1
            if s.bad_epochs >= es.patience:
                s.stopped_early = True
