"""`train()`: a new run from a config, or `resume=RUN` to continue one; the loop itself is `loop.Trainer`.

The global torch RNG is seeded for the run (the reparameterisation noise draws from it) inside
`torch.random.fork_rng`, so the caller's generator state is the same after `train()` as before.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from vaelab.core.config import Config
from vaelab.data import DataBundle, load_data
from vaelab.model.build import build_model
from vaelab.training import distributed
from vaelab.training.loop import EpochCallback, Trainer
from vaelab.training.precision import resolve_device
from vaelab.training.runs import data_location, relocate_data, stored_location, write_config, write_metrics

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
    from vaelab.training.threads import ThreadGovernor, local_processes

    parallel = distributed.from_env(config.train.device if config is not None else "auto")
    try:  # the thread count is chosen once the config is known (_train_in) and restored when training ends
        with _own_rng(), ThreadGovernor(report=lambda msg: print(msg, file=sys.stderr), share=local_processes()) as threads:
            run_dir = _train(config, out_dir, resume, overrides, bundle, on_epoch, parallel, threads)
    except BaseException:
        parallel.close(wait=False)
        raise
    parallel.close()
    return run_dir


def _own_rng():
    """Restore the caller's CPU (and current CUDA device's) RNG state when training ends."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    return torch.random.fork_rng(devices=devices)


def _train(config, out_dir, resume, overrides, bundle, on_epoch, parallel, threads) -> Path:
    from vaelab.training.run_folder import open_run_folder

    # validated (a resume against its checkpoint's config) and locked before anything is written
    with open_run_folder(config, out_dir, resume=resume, overrides=overrides, dist=parallel) as folder:
        return _train_in(folder, bundle, on_epoch, parallel, threads)


def _train_in(folder, bundle, on_epoch, parallel, threads) -> Path:
    cfg, run_dir, ckpt = folder.config, folder.path, folder.checkpoint
    threads.configure(cfg.train.threads)
    torch.manual_seed(cfg.seed)
    device = parallel.device(resolve_device(cfg.train.device))
    # a resumed run's data is found from the run folder when its relative data.path does not exist from here (the
    # config keeps the path as written, so the checkpoint's config does not change); data.path as given wins
    found = relocate_data(cfg, run_dir, stored_location(ckpt)) if ckpt is not None else cfg
    bundle = bundle if bundle is not None else load_data(found.data, cfg.seed)
    from vaelab.training.preflight import preflight

    preflight(cfg, bundle.spec, device, train_size=len(bundle.train))  # before anything is built
    if cfg.train.batch_size == "auto":
        from vaelab.training.memory import resolve_auto_batch

        cfg = resolve_auto_batch(cfg, bundle, device, parallel)
    bundle = parallel.shard(bundle, cfg.train.batch_size)
    model = build_model(cfg.model, bundle.spec)
    trainer = Trainer(cfg, run_dir, bundle, model, device, on_epoch, dist=parallel)
    trainer.threads = threads
    trainer.data_location = data_location(found.data.path, run_dir)  # so the run is usable from any directory
    if trainer.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(run_dir, cfg)
    if ckpt is not None:
        from vaelab.training.run_folder import apply_resume_changes

        trainer.restore(ckpt)
        apply_resume_changes(trainer, folder.changed)
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

        write_run_figures(run_dir, trainer.eval_model, bundle, trainer.state.history, cfg.seed, unit=trainer.loss.units)
    return run_dir
