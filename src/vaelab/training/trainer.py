"""The training loop: knows the VAE interface and the loss, nothing about any particular architecture.

Every epoch ends with an atomic checkpoint (weights, optimizer, scheduler, EMA, history, RNG states), so
`train(resume=RUN)` continues exactly where an uninterrupted run would be.
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
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from vaelab.model.build import build_model
from vaelab.core.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from vaelab.core.config import Config
from vaelab.data import DataBundle, load_data
from vaelab.core.errors import ConfigError, TrainingError
from vaelab.training.losses import LossWeights, vae_loss
from vaelab.model.vae import VAE
from vaelab.training.optim import make_optimizer, make_scheduler
from vaelab.training.runs import append_metrics, default_run_dir, read_run_config, write_config, write_metrics
from vaelab.training.schedules import make_schedule

EpochCallback = Callable[[dict[str, Any]], None]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {name!r} but no CUDA device is available; use train.device: cpu or auto")
    return dev


def data_meta(bundle: DataBundle) -> dict[str, Any]:
    _, y = bundle.train.take(1)
    cond_dim = int(y.shape[1]) if y is not None and y.dim() == 2 else None
    return {"shape": list(bundle.shape), "value_range": [float(v) for v in bundle.value_range],
            "num_classes": bundle.num_classes, "cond_dim": cond_dim, "name": bundle.name}


@dataclass
class LossSetup:
    """Everything the loss needs besides the batch, fixed for a run."""

    weights: LossWeights
    recon_kind: str
    logits: bool
    reduction: str
    free_bits: float
    data_range: float
    schedule: Callable[[int, int], float]

    @classmethod
    def from_config(cls, cfg: Config, model: VAE, value_range: tuple[float, float]) -> "LossSetup":
        lc = cfg.loss
        lo, hi = value_range
        kind = lc.recon if lc.recon != "auto" else ("bce" if lo >= 0 and hi <= 1 else "mse")
        if kind == "bce" and (lo < 0 or hi > 1):
            raise ConfigError(f"loss.recon: bce needs data in [0, 1] but this data spans [{lo:g}, {hi:g}]; use loss.recon: mse")
        weights = LossWeights(alpha=lc.alpha, kl_weight=lc.kl_weight, ssim=lc.ssim, beta=lc.beta, sparse=lc.sparse, lambd=lc.lambd)
        if lc.ssim and len(model.input_shape) < 3:
            raise ConfigError("loss.ssim needs image data (C, H, W) or volumes; this data is "
                              f"{tuple(model.input_shape)} per sample: set loss.ssim: false")
        return cls(weights, kind, kind == "bce" and model.output_activation == "sigmoid", lc.reduction, lc.free_bits,
                   lc.data_range or (hi - lo) or 1.0, make_schedule(lc.kl_schedule.kind, **lc.kl_schedule.params()))

    def __call__(self, out, x, kl_scale: float):
        return vae_loss(out, x, self.weights, recon_kind=self.recon_kind, logits=self.logits, reduction=self.reduction,
                        kl_scale=kl_scale, free_bits=self.free_bits, data_range=self.data_range)


@dataclass
class State:
    epoch: int = 0  # completed epochs
    global_step: int = 0  # batches seen
    history: list[dict[str, Any]] = field(default_factory=list)
    best_val: float = math.inf
    bad_epochs: int = 0
    stopped_early: bool = False


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


class Trainer:
    """Fits one model to one data bundle and writes the run folder."""

    def __init__(self, cfg: Config, run_dir: Path, bundle: DataBundle, model: VAE, device: torch.device,
                 on_epoch: EpochCallback | None = None, dist=None):
        self.cfg, self.run_dir, self.bundle, self.device = cfg, Path(run_dir), bundle, device
        tc = cfg.train
        if tc.precision == "fp16" and device.type != "cuda":
            raise ConfigError("train.precision: fp16 needs a CUDA device (CPUs lack fast fp16 and gradient scaling); use bf16 on CPU")
        self.model = model.to(device)
        self.data_meta = data_meta(bundle)  # fixed for the run; stored in every checkpoint
        self.dist = dist  # vaelab.training.distributed.DistContext under torchrun, else None
        self.is_main = dist is None or dist.is_main
        self.step_model = model  # what the training forward calls: DDP- and/or torch.compile-wrapped
        if dist is not None:
            from vaelab.training.distributed import wrap_model

            self.step_model = wrap_model(model, dist, device)
        self.compile_seconds: float | None = None
        self.loss = LossSetup.from_config(cfg, model, bundle.value_range)
        self.batches_per_epoch = max(1, math.ceil(len(bundle.train) / tc.batch_size))
        self.total_steps = tc.epochs * self.batches_per_epoch
        self.optimizer = make_optimizer(tc.optimizer.name, model.parameters(), lr=tc.lr,
                                        weight_decay=tc.optimizer.weight_decay, kwargs=tc.optimizer.kwargs)
        self.scheduler = make_scheduler(tc.scheduler.name, self.optimizer, tc.scheduler.kwargs, epochs=tc.epochs,
                                        steps_per_epoch=math.ceil(self.batches_per_epoch / tc.grad_accum))
        self.scaler = torch.amp.GradScaler("cuda") if tc.precision == "fp16" else None
        self.ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(tc.ema), use_buffers=True) if tc.ema else None
        self.data_gen = torch.Generator().manual_seed(cfg.seed)
        self.state = State()
        self.on_epoch = on_epoch

    # ------------------------------------------------------------------ state
    def checkpoint_state(self) -> dict[str, Any]:
        s = self.state
        return {
            "config": self.cfg.to_dict(), "epoch": s.epoch, "global_step": s.global_step,
            "model": self.model.state_dict(), "ema": self.ema.state_dict() if self.ema else None,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None, "history": s.history,
            "rng": {"torch": torch.get_rng_state(), "data": self.data_gen.get_state()},
            "early_stopping": {"best_val": s.best_val, "bad_epochs": s.bad_epochs, "stopped": s.stopped_early},
            "data_meta": self.data_meta,
        }

    def restore(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        if self.ema and ckpt.get("ema"):
            self.ema.load_state_dict(ckpt["ema"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.scaler and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        self.data_gen.set_state(ckpt["rng"]["data"])
        es = ckpt.get("early_stopping") or {}
        self.state = State(ckpt["epoch"], ckpt["global_step"], list(ckpt["history"]), es.get("best_val", math.inf),
                           es.get("bad_epochs", 0), False)

    # ------------------------------------------------------------------- loop
    def _train_epoch(self, progress) -> dict[str, float]:
        tc, model, opt = self.cfg.train, self.model, self.optimizer
        model.train()
        sums = torch.zeros(5, dtype=torch.float64)  # total, recon, kl, ssim, sparse (sample-weighted)
        n_seen, accum = 0, tc.grad_accum
        kl_scale = 0.0
        if self.dist is not None:  # each rank its own reparameterisation noise, reproducible per epoch (resume)
            torch.manual_seed(self.cfg.seed * 1_000_003 + self.state.epoch * self.dist.world_size + self.dist.rank)
        batches = self.bundle.train.batches(tc.batch_size, shuffle=True, generator=self.data_gen)
        opt.zero_grad(set_to_none=True)
        for i, (x, y) in enumerate(batches):
            x = x.to(self.device, non_blocking=True)
            c = model.condition_vector(y.to(self.device) if y is not None else None) if model.conditional else None
            kl_scale = self.loss.schedule(self.state.global_step, self.total_steps)
            with _autocast(self.device, tc.precision):
                out = self.step_model(x, c)
            terms = self.loss(out, x, kl_scale)
            if not torch.isfinite(terms.total):
                raise TrainingError(
                    f"non-finite loss ({float(terms.total.detach())}) at epoch {self.state.epoch + 1}, batch {i + 1} "
                    f"(global step {self.state.global_step + 1}); the last good checkpoint "
                    f"{self.run_dir / CHECKPOINT_NAME} is intact. Lower train.lr or set train.grad_clip."
                )
            loss = terms.total / accum
            (self.scaler.scale(loss) if self.scaler else loss).backward()
            last = i + 1 == self.batches_per_epoch
            if (i + 1) % accum == 0 or last:
                self._step()
            n = x.shape[0]
            n_seen += n
            sums += torch.stack([t.detach().double() if t is not None else torch.zeros((), dtype=torch.float64)
                                 for t in (terms.total, terms.recon, terms.kl, terms.ssim, terms.sparse)]) * n
            self.state.global_step += 1
            if progress is not None:
                progress()
        if self.dist is not None:  # epoch averages over all ranks' samples
            both = self.dist.all_reduce_sum(torch.cat([sums, torch.tensor([float(n_seen)], dtype=torch.float64)]))
            sums, n_seen = both[:5], int(both[5])
        avg = (sums / max(n_seen, 1)).tolist()
        out = {"loss": avg[0], "recon": avg[1], "kl": avg[2], "kl_scale": kl_scale}
        if self.loss.weights.ssim:
            out["ssim"] = avg[3]
        if self.loss.weights.sparse:
            out["sparse"] = avg[4]
        return out

    def _step(self) -> None:
        tc, opt = self.cfg.train, self.optimizer
        if self.scaler:
            self.scaler.unscale_(opt)
        if tc.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
        if self.scaler:
            self.scaler.step(opt)
            self.scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)
        self.scheduler.step_batch()
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    @torch.no_grad()
    def evaluate(self, split) -> dict[str, float]:
        """Loss terms on a split with the KL weight fully on (schedule value 1)."""
        model = self.ema.module if self.ema is not None else self.model
        model.eval()
        tc = self.cfg.train
        sums = torch.zeros(3, dtype=torch.float64)
        n_seen = 0
        for x, y in split.batches(tc.eval_batch_size or tc.batch_size, shuffle=False):
            x = x.to(self.device)
            c = model.condition_vector(y.to(self.device) if y is not None else None) if model.conditional else None
            with _autocast(self.device, tc.precision):
                out = model(x, c)
            terms = self.loss(out, x, 1.0)
            sums += torch.stack([terms.total.double(), terms.recon.double(), terms.kl.double()]) * x.shape[0]
            n_seen += x.shape[0]
        model.train()
        avg = (sums / max(n_seen, 1)).tolist()
        return {"loss": avg[0], "recon": avg[1], "kl": avg[2]}

    def fit(self) -> Path:
        tc = self.cfg.train
        s = self.state
        if s.epoch >= tc.epochs:
            return self.run_dir
        with _progress(tc.progress, self.batches_per_epoch) as bar:
            while s.epoch < tc.epochs and not s.stopped_early:
                t0 = time.perf_counter()
                train_terms = self._train_epoch(bar.start(f"epoch {s.epoch + 1}/{tc.epochs}"))
                seconds = time.perf_counter() - t0
                val_terms = self.evaluate(self.bundle.val) if self.bundle.val is not None and len(self.bundle.val) else {}
                if self.dist is not None:  # rank 0's numbers drive the scheduler and early stopping everywhere
                    val_terms = self.dist.broadcast(val_terms)
                s.epoch += 1
                row = {"epoch": s.epoch, "step": s.global_step, "lr": self.optimizer.param_groups[0]["lr"],
                       **{f"train_{k}": v for k, v in train_terms.items()}, **{f"val_{k}": v for k, v in val_terms.items()},
                       "seconds": round(seconds, 4), "samples_per_s": round(len(self.bundle.train) / max(seconds, 1e-9), 1)}
                self.scheduler.step_epoch(val_terms.get("loss", train_terms["loss"]))
                self._early_stopping(val_terms.get("loss"))
                if s.stopped_early:
                    row["stopped_early"] = True
                if self.compile_seconds is not None:
                    row["compile_seconds"], self.compile_seconds = round(self.compile_seconds, 4), None
                s.history.append(row)
                if self.is_main:  # under torchrun only rank 0 writes
                    save_checkpoint(self.run_dir / CHECKPOINT_NAME, self.checkpoint_state())
                    append_metrics(self.run_dir, row)
                    _report(row, tc.epochs)
                    if self.on_epoch:
                        self.on_epoch(row)
        return self.run_dir

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


# ------------------------------------------------------------------ progress
class _Bar:
    def __init__(self, progress, total: int):
        self.progress, self.total, self.task = progress, total, None

    def start(self, label: str):
        if self.progress is None:
            return None
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(label, total=self.total)
        return lambda: self.progress.advance(self.task)


@contextlib.contextmanager
def _progress(enabled: bool, total: int):
    if not (enabled and sys.stderr.isatty()):
        yield _Bar(None, total)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as p:
        yield _Bar(p, total)


def _report(row: dict[str, Any], epochs: int) -> None:
    val = f"  val {row['val_loss']:.4f}" if "val_loss" in row else ""
    print(f"epoch {row['epoch']}/{epochs}  train {row['train_loss']:.4f} (recon {row['train_recon']:.4f}, "
          f"kl {row['train_kl']:.4f}){val}  {row['seconds']:.1f}s", file=sys.stderr, flush=True)


# ------------------------------------------------------------------- entry
def train(
    config: Config | None = None,
    out_dir: str | Path | None = None,
    *,
    resume: str | Path | None = None,
    overrides: list[str] | None = None,
    bundle: DataBundle | None = None,
    on_epoch: EpochCallback | None = None,
) -> Path:
    """Train a config into a new run folder, or resume RUN (overrides may change train.*, e.g. train.epochs)."""
    from vaelab.training import distributed

    dist = distributed.from_env(config.train.device if config is not None else "auto")
    try:
        run_dir = _train(config, out_dir, resume, overrides, bundle, on_epoch, dist)
    except BaseException:
        if dist is not None:
            dist.close(wait=False)
        raise
    if dist is not None:
        dist.close()
    return run_dir


def _train(config, out_dir, resume, overrides, bundle, on_epoch, dist) -> Path:
    ckpt = None
    if resume is not None:
        run_dir = Path(resume)
        old = read_run_config(run_dir)
        cfg = read_run_config(run_dir, overrides)
        for section in ("model", "data", "loss", "seed"):
            if getattr(old, section) != getattr(cfg, section):
                raise ConfigError(f"--resume: {section} differs from the run's config; only train.* may change when resuming")
        if (run_dir / CHECKPOINT_NAME).is_file():
            ckpt = load_checkpoint(run_dir)
    else:
        if config is None:
            raise ConfigError("give a config or resume=RUN")
        cfg = config
        run_dir = Path(out_dir) if out_dir is not None else default_run_dir(cfg)
        if dist is not None:  # the timestamped default name must be rank 0's
            run_dir = dist.broadcast(run_dir)
        if (run_dir / CHECKPOINT_NAME).exists():
            raise ConfigError(f"--out {run_dir} already holds a run: resume it with --resume {run_dir}, or choose another --out")
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.train.device)
    if dist is not None:
        from vaelab.training.distributed import rank_device

        device = rank_device(dist, device)
    bundle = bundle if bundle is not None else load_data(cfg.data, cfg.seed)
    if cfg.train.batch_size == "auto":
        from vaelab.training.memory import resolve_auto_batch

        cfg = resolve_auto_batch(cfg, bundle, device, dist)
    if dist is not None:
        import dataclasses

        from vaelab.training.distributed import ShardedSplit, check_split

        check_split(len(bundle.train), cfg.train.batch_size, dist.world_size)
        bundle = dataclasses.replace(bundle, train=ShardedSplit(bundle.train, dist.rank, dist.world_size))
    model = build_model(cfg.model, bundle.shape, num_classes=bundle.num_classes, cond_dim=data_meta(bundle)["cond_dim"],
                        value_range=bundle.value_range)
    trainer = Trainer(cfg, run_dir, bundle, model, device, on_epoch, dist=dist)
    if trainer.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(run_dir, cfg)
    if ckpt is not None:
        trainer.restore(ckpt)
    if trainer.is_main:
        write_metrics(run_dir, trainer.state.history if ckpt is not None else [])
    if cfg.train.compile:
        from vaelab.training.compile import compile_and_warm_up

        compile_and_warm_up(trainer)
    try:
        trainer.fit()
    except KeyboardInterrupt:
        print(f"interrupted: the run folder holds the last finished epoch; continue with "
              f"`vaelab train --resume {run_dir}`", file=sys.stderr)
        raise
    if cfg.train.figures and trainer.is_main:
        from vaelab.plots import write_run_figures

        write_run_figures(run_dir, trainer.ema.module if trainer.ema else trainer.model, bundle, trainer.state.history, cfg.seed)
    return run_dir
