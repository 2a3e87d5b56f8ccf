"""`train()`: a new run from a config, or `resume=RUN` to continue one; the loop itself is `loop.Trainer`.

The global torch RNG is seeded for the run (the reparameterisation noise draws from it) inside
`torch.random.fork_rng`, so the caller's generator state is the same after `train()` as before.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from vaelab.core.checkpoint import CHECKPOINT_NAME, load_checkpoint
from vaelab.core.config import Config
from vaelab.core.errors import ConfigError
from vaelab.data import DataBundle, load_data
from vaelab.model.build import build_model
from vaelab.training import distributed
from vaelab.training.loop import EpochCallback, Trainer
from vaelab.training.precision import resolve_device
from vaelab.training.runs import data_location, data_meta, default_run_dir, read_run_config, write_config, write_metrics

__all__ = ["train", "Trainer", "build_model", "resolve_device"]


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
    parallel = distributed.from_env(config.train.device if config is not None else "auto")
    try:
        with _own_rng():
            run_dir = _train(config, out_dir, resume, overrides, bundle, on_epoch, parallel)
    except BaseException:
        parallel.close(wait=False)
        raise
    parallel.close()
    return run_dir


def _own_rng():
    """Restore the caller's CPU (and current CUDA device's) RNG state when training ends."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    return torch.random.fork_rng(devices=devices)


def _open_run(config, out_dir, resume, overrides, parallel) -> tuple[Config, Path, dict | None]:
    """The config, the run folder and, when resuming one that finished an epoch, its checkpoint."""
    if resume is not None:
        run_dir = Path(resume)
        old = read_run_config(run_dir)
        cfg = read_run_config(run_dir, overrides)
        for section in ("model", "data", "loss", "seed"):
            if getattr(old, section) != getattr(cfg, section):
                raise ConfigError(f"--resume: {section} differs from the run's config; only train.* may change when resuming")
        ckpt = load_checkpoint(run_dir) if (run_dir / CHECKPOINT_NAME).is_file() else None
        return cfg, run_dir, ckpt
    if config is None:
        raise ConfigError("give a config or resume=RUN")
    run_dir = Path(out_dir) if out_dir is not None else default_run_dir(config)
    run_dir = parallel.broadcast(run_dir)  # under torchrun the timestamped default name must be rank 0's
    if (run_dir / CHECKPOINT_NAME).exists():
        raise ConfigError(f"--out {run_dir} already holds a run: resume it with --resume {run_dir}, or choose another --out")
    return config, run_dir, None


def _train(config, out_dir, resume, overrides, bundle, on_epoch, parallel) -> Path:
    cfg, run_dir, ckpt = _open_run(config, out_dir, resume, overrides, parallel)
    torch.manual_seed(cfg.seed)
    device = parallel.device(resolve_device(cfg.train.device))
    bundle = bundle if bundle is not None else load_data(cfg.data, cfg.seed)
    if cfg.train.batch_size == "auto":
        from vaelab.training.memory import resolve_auto_batch

        cfg = resolve_auto_batch(cfg, bundle, device, parallel)
    bundle = parallel.shard(bundle, cfg.train.batch_size)
    model = build_model(cfg.model, bundle.shape, num_classes=bundle.num_classes, cond_dim=data_meta(bundle)["cond_dim"],
                        value_range=bundle.value_range)
    trainer = Trainer(cfg, run_dir, bundle, model, device, on_epoch, dist=parallel)
    trainer.data_meta.update(data_location(cfg.data.path, run_dir))  # so the run is usable from any directory
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
        if trainer.is_main:  # one message under torchrun, not one per rank
            print(f"interrupted: the run folder holds the last finished epoch; continue with "
                  f"`vaelab train --resume {run_dir}`", file=sys.stderr)
        raise
    if cfg.train.figures and trainer.is_main:
        from vaelab.plots import write_run_figures

        write_run_figures(run_dir, trainer.eval_model, bundle, trainer.state.history, cfg.seed)
    return run_dir
