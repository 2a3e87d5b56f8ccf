"""One writer per run folder, and a resume that cannot corrupt a run.

A run folder is claimed before anything is written to it and held until training ends:
- an exclusive `fcntl.flock` on `RUN/.vaelab.lock` (the kernel drops it when the process dies, even on
  kill -9); a second writer is refused with the holder's pid. The lock file stays as the mark of a folder
  vaelab made: `--out` onto a folder that is not empty and has no mark is refused, so vaelab never
  overwrites files it did not write;
- temporary files of an interrupted atomic write (`.checkpoint.pt.*.tmp`) are removed once the lock is held
  (no other writer can be mid-write then).

Resuming, the checkpoint's config is the truth. `RUN/config.yaml` may differ from it only under `train.`, and
`--set` (or such an edit) may change only the keys in `RESUME_SETTABLE`; anything else is refused with the
differing keys listed, before anything is written. Effects on the restored optimizer and lr schedule
(`apply_resume_changes`):
- none of `train.epochs`, `train.lr`, `train.scheduler` changed: optimizer and scheduler states are restored
  exactly, so the run continues as if it had never stopped;
- any of them changed: the optimizer's state (moments, step counts) is kept, and its learning rate follows the
  schedule a run configured with the new values from the start would have, from the epoch reached on. So
  extending a cosine run from 4 to 8 epochs continues at the 8-epoch schedule's epoch-5 rate and anneals to its
  floor by epoch 8 (instead of climbing back to the peak on the old period), and `--set train.lr=X` on a
  constant schedule trains on at X. A plateau scheduler starts afresh at `train.lr`. The KL-weight schedule
  follows the new length too.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from vaelab.core.checkpoint import CHECKPOINT_NAME, load_checkpoint
from vaelab.core.config import Config, load_config
from vaelab.core.errors import CheckpointError, ConfigError, RunFolderBusyError, RunFolderError
from vaelab.training.runs import CONFIG_NAME, default_run_dir

LOCK_NAME = ".vaelab.lock"
_TEMP_PREFIXES = tuple(f".{name}." for name in (CHECKPOINT_NAME, CONFIG_NAME, "metrics.jsonl"))

# What `--set` (or an edit of RUN/config.yaml) may change when resuming, and why it is safe.
RESUME_SETTABLE = {
    "train.epochs": "extends (or ends) the run; the lr schedule is rebuilt for the epochs left",
    "train.lr": "sets the restored optimizer's learning rate; the lr schedule is rebuilt from it",
    "train.scheduler": "a new lr schedule over the epochs left, from the current learning rate",
    "train.device": "where to continue (the checkpoint loads on any device)",
    "train.progress": "display only",
    "train.figures": "display only",
    "train.eval_batch_size": "evaluation batching only",
    "train.max_memory_gb": "the memory limit checked before building",
}
SCHEDULE_KEYS = ("train.epochs", "train.lr", "train.scheduler")
# Also settable while no epoch has been trained (a run made by `vaelab import-diffusers`, say): no optimizer
# step, batch order or gradient state depends on them yet.
FRESH_SETTABLE = ("train.batch_size", "train.grad_accum", "train.precision", "train.compile", "train.early_stopping",
                  "train.log", "train.threads", "train.channels_last")


@dataclass
class RunFolder:
    """A claimed run folder: the config to train, the checkpoint to restore (None for a new run) and the lock."""

    path: Path
    config: Config
    checkpoint: dict[str, Any] | None = None
    changed: list[str] = field(default_factory=list)  # dotted keys that differ from the checkpoint's config
    lock_fd: int | None = None
    created: bool = False  # the folder did not exist before this run claimed it

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is not None and self.created and self.lock_fd is not None:
            # refused before writing anything (e.g. a model too large): leave no folder behind
            if {p.name for p in self.path.iterdir()} <= {LOCK_NAME}:
                (self.path / LOCK_NAME).unlink(missing_ok=True)
                self.path.rmdir()
        self.release()

    def release(self) -> None:
        if self.lock_fd is not None:
            os.close(self.lock_fd)  # closing drops the flock
            self.lock_fd = None


def open_run_folder(config: Config | None, out_dir: str | Path | None = None, *, resume: str | Path | None = None,
                    overrides: list[str] | None = None, dist: Any = None) -> RunFolder:
    """Claim the folder of a new run (`config`, `out_dir`) or of a run to resume; only rank 0 locks under torchrun."""
    is_main = dist is None or dist.is_main
    if resume is not None:
        if config is not None:
            raise ConfigError("give either a config or resume=RUN, not both")
        return _open_resume(Path(resume), overrides or [], is_main)
    if config is None:
        raise ConfigError("give a config or resume=RUN")
    run_dir = Path(out_dir) if out_dir is not None else default_run_dir(config)
    if dist is not None:  # the timestamped default name must be rank 0's
        run_dir = dist.broadcast(run_dir)
    folder = RunFolder(run_dir, config, created=not run_dir.exists())
    try:
        if is_main and run_dir.is_dir() and (run_dir / LOCK_NAME).exists():
            folder.lock_fd = _lock(run_dir, create=False)  # a writer at work here is named first
        _check_new_folder(run_dir)
        if is_main and folder.lock_fd is None:
            folder.lock_fd = _lock(run_dir, create=True)
            _check_new_folder(run_dir)  # again, now that no other writer can be starting here
    except BaseException:
        folder.release()
        raise
    if is_main:
        clean_temporary_files(run_dir)
    return folder


def _check_new_folder(run_dir: Path) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"--out {run_dir} is a file, not a folder; choose a folder name for the run")
    if not run_dir.is_dir():
        return
    if (run_dir / CHECKPOINT_NAME).exists():
        raise RunFolderError(f"--out {run_dir} already holds a run: resume it with --resume {run_dir}, or choose another --out")
    foreign = sorted(p.name for p in run_dir.iterdir() if p.name != LOCK_NAME and not p.name.startswith(_TEMP_PREFIXES))
    if foreign and not (run_dir / LOCK_NAME).exists():
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise RunFolderError(f"--out {run_dir} is not empty and is not a vaelab run folder (it holds {shown}); vaelab "
                             "writes only into new, empty or its own folders: choose another --out")


def _lock(run_dir: Path, *, create: bool) -> int:
    """Take RUN/.vaelab.lock exclusively (non-blocking) and write our pid into it; return its descriptor."""
    try:
        if create:
            run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise RunFolderError(f"cannot write to the run folder {run_dir} ({e.strerror}); choose a folder you can write to") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise RunFolderBusyError(f"{run_dir} is in use by another vaelab process (pid {holder}); wait for it to "
                                     "finish or stop it, or choose another --out") from None
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


@contextlib.contextmanager
def reading(run: str | Path) -> Iterator[None]:
    """Hold RUN/.vaelab.lock in shared mode while a command reads the run (reconstruct, evaluate, ...): refused,
    naming the trainer, while a training writes it; readers do not block each other, and a training cannot start
    until they finish. A folder without a lock file (an export, a copied checkpoint) or one this user cannot open
    is read without a lock."""
    p = Path(run)
    lock = (p if p.is_dir() else p.parent) / LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise RunFolderBusyError(f"{lock.parent} is being written by a training (pid {holder}); wait for it to "
                                     "finish (or stop it), then run this command again") from None
        yield
    finally:
        os.close(fd)  # closing drops the shared lock


def clean_temporary_files(run_dir: Path) -> list[Path]:
    """Remove what an interrupted atomic write left (`.checkpoint.pt.XXXX.tmp`); call only with the lock held."""
    removed = []
    for p in run_dir.iterdir():
        if p.name.startswith(_TEMP_PREFIXES) and p.name.endswith(".tmp") and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


# ------------------------------------------------------------------------------------------------ resume


def _open_resume(run_dir: Path, overrides: list[str], is_main: bool) -> RunFolder:
    if not run_dir.is_dir():
        raise CheckpointError(f"--resume {run_dir}: no such run folder; give the folder `vaelab train` printed")
    if not (run_dir / CHECKPOINT_NAME).is_file():
        again = run_dir if (run_dir / LOCK_NAME).exists() else "NEW"
        hint = (f"start it again with `vaelab train {run_dir / CONFIG_NAME} --out {again}`"
                if (run_dir / CONFIG_NAME).is_file() else "it is not a vaelab run folder")
        raise CheckpointError(f"--resume {run_dir}: no {CHECKPOINT_NAME}, so no epoch finished and there is nothing to "
                              f"resume; {hint}")
    fd = _lock(run_dir, create=False) if is_main else None
    try:
        ckpt = load_checkpoint(run_dir)
        cfg, changed = resume_config(_checkpoint_config(ckpt), run_dir, overrides, fresh=not ckpt.get("epoch"))
    except BaseException:
        if fd is not None:
            os.close(fd)
        raise
    if is_main:
        clean_temporary_files(run_dir)
    return RunFolder(run_dir, cfg, ckpt, changed, fd)


def _checkpoint_config(ckpt: dict[str, Any]) -> dict[str, Any]:
    raw = ckpt.get("config")
    if not isinstance(raw, dict):
        raise CheckpointError(f"{ckpt['path']}: holds no config; it cannot be resumed")
    try:
        return Config.model_validate(raw).to_dict()
    except Exception as e:  # noqa: BLE001  pydantic's ValidationError: a checkpoint of another vaelab version
        raise CheckpointError(f"{ckpt['path']}: its config does not validate ({str(e).splitlines()[0]}); "
                              "it was written by another vaelab version") from None


def resume_config(truth: dict[str, Any], run_dir: Path, overrides: list[str], *,
                  fresh: bool = False) -> tuple[Config, list[str]]:
    """The config to continue with: the checkpoint's, plus the allowed changes (config.yaml edits under train.,
    then `overrides`); raise naming every key that may not change."""
    raw = dict(truth)
    on_disk = run_dir / CONFIG_NAME
    if on_disk.is_file():
        try:
            edited = load_config(on_disk).to_dict()
        except ConfigError as e:
            raise ConfigError(f"{on_disk}: {e}") from None
        outside = [k for k in diff_keys(truth, edited) if not k.startswith("train.")]
        if outside:
            raise ConfigError(f"{on_disk} differs from the checkpoint's config at {', '.join(outside)}; a run's "
                              "config cannot change when it resumes (only train.*): undo the edit, or start a new "
                              "run from the edited file with --out NEW")
        raw = edited
    cfg = load_config(raw, overrides)
    changed = diff_keys(truth, cfg.to_dict())
    settable = tuple(RESUME_SETTABLE) + (FRESH_SETTABLE if fresh else ())
    refused = [k for k in changed if not _under(k, settable)]
    if refused:
        sections: dict[str, list[str]] = {}
        for k in refused:
            sections.setdefault(k.split(".")[0] if not k.startswith("train.") else k, []).append(k)
        what = "; ".join(f"{sec} differs ({', '.join(keys)})" if keys != [sec] else f"{sec} differs"
                         for sec, keys in sections.items())
        raise ConfigError(f"--resume {run_dir}: {what} from the checkpoint's config, by --set or in {CONFIG_NAME}; "
                          "the checkpoint's weights, optimizer state and data split were made with the old values, so "
                          f"only {', '.join(settable)} may change. Start a new run with --out NEW instead")
    return cfg, changed


def diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts (lists compare whole)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b), key=str):
            out += diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def apply_resume_changes(trainer: Any, changed: list[str]) -> None:
    """After `trainer.restore(checkpoint)`: put the restored optimizer on the lr schedule of the changed
    epochs/lr/scheduler, at the epoch reached (see the module doc). Without such changes nothing is touched."""
    if not any(_under(k, SCHEDULE_KEYS) for k in changed):
        return
    from vaelab.training.optim import make_scheduler

    tc, opt, done = trainer.cfg.train, trainer.step.optimizer, trainer.state.epoch
    if tc.epochs <= done:
        return  # nothing left to train
    for group in opt.param_groups:  # the schedule starts from train.lr, as in a run configured so from the start
        group["lr"] = tc.lr
        group.pop("initial_lr", None)
    steps_per_epoch = math.ceil(trainer.batches_per_epoch / tc.grad_accum)
    stepper = make_scheduler(tc.scheduler.name, opt, tc.scheduler.kwargs, epochs=tc.epochs, steps_per_epoch=steps_per_epoch)
    with warnings.catch_warnings():  # stepping before any optimizer.step() is the point here
        warnings.simplefilter("ignore", UserWarning)
        if not stepper.is_plateau:  # plateau has no position; it starts afresh at train.lr
            for _ in range(done if stepper.interval == "epoch" else done * steps_per_epoch):
                stepper.step_epoch() if stepper.interval == "epoch" else stepper.step_batch()
    trainer.step.scheduler = stepper


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)
