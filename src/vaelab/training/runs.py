"""Run folders: everything a trained model needs to be used again, and nothing outside it.

Layout: config.yaml (resolved config), checkpoint.pt, metrics.jsonl (one line per epoch), figures (*.png).
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vaelab.core.checkpoint import CHECKPOINT_NAME, atomic_write_text, load_checkpoint
from vaelab.core.config import Config, load_config
from vaelab.core.errors import CheckpointError
from vaelab.data.spec import LEGACY_KEY, SPEC_KEY, DataSpec

CONFIG_NAME = "config.yaml"
LOCATION_KEY = "data_location"  # checkpoint key: where the data lies as seen from the run folder
METRICS_NAME = "metrics.jsonl"


def default_run_dir(cfg: Config, root: Path = Path("runs")) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", cfg.name).strip("-") or "vae"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = root / f"{slug}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = root / f"{slug}-{stamp}-{n}"
    return path


def write_config(run_dir: Path, cfg: Config) -> None:
    atomic_write_text(run_dir / CONFIG_NAME, cfg.to_yaml())


def read_run_config(run_dir: Path, overrides: list[str] | None = None) -> Config:
    p = Path(run_dir) / CONFIG_NAME
    if not p.is_file():
        raise CheckpointError(f"{run_dir} has no {CONFIG_NAME}: it is not a vaelab run folder")
    return load_config(p, overrides)


def write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite the whole log (used on resume, so it always agrees with the checkpoint)."""
    atomic_write_text(Path(run_dir) / METRICS_NAME, "".join(json.dumps(h) + "\n" for h in history))


def append_metrics(run_dir: Path, row: dict[str, Any]) -> None:
    with open(Path(run_dir) / METRICS_NAME, "a") as f:
        f.write(json.dumps(row) + "\n")


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    p = Path(run_dir) / METRICS_NAME
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


@dataclass
class Run:
    """A trained model with what it was trained on; see `load_run`."""

    path: Path
    config: Config
    model: torch.nn.Module
    checkpoint: dict[str, Any]
    data_spec: DataSpec  # the data the model was built for (from the checkpoint, else from model.input_shape)

    @property
    def history(self) -> list[dict[str, Any]]:
        return list(self.checkpoint.get("history", []))


def data_location(data_path: str | Path | None, run_dir: Path) -> dict[str, str]:
    """Where the run's data lies as seen from the run folder, stored in its checkpoint, so the run can be
    evaluated from any working directory (a relative data.path is relative to where training ran)."""
    if data_path is None:
        return {}
    return {"path_from_run": os.path.relpath(Path(data_path).resolve(), Path(run_dir).resolve())}


def stored_location(ckpt: dict[str, Any]) -> dict[str, str]:
    """The checkpoint's data_location (older checkpoints kept it inside their data_meta dict)."""
    return ckpt.get(LOCATION_KEY) or {k: v for k, v in (ckpt.get(LEGACY_KEY) or {}).items() if k == "path_from_run"}


def relocate_data(cfg: Config, run_dir: Path, location: dict[str, Any]) -> Config:
    """The config with data.path usable from here: as written when it exists from the working directory,
    else found from the run folder (data_location); unchanged when neither exists (the loader then names it)."""
    path, rel = cfg.data.path, location.get("path_from_run")
    if path is None or rel is None or Path(path).is_absolute() or Path(path).exists():
        return cfg
    found = Path(run_dir) / rel
    if not found.exists():
        return cfg
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"path": Path(os.path.normpath(found.absolute()))})})


def load_run(path: str | Path, *, device: str | torch.device = "cpu", use_ema: bool = True) -> Run:
    """Rebuild the model of a run folder (or a checkpoint file) and load its weights; EMA weights when present."""
    from vaelab.model.build import build_model

    p = Path(path)
    ckpt = load_checkpoint(p, map_location=device)
    cfg, spec = checked_contents(ckpt)
    model = build_model(cfg.model, spec)
    state = ckpt.get("ema") if use_ema and ckpt.get("ema") else ckpt["model"]
    state = {k.removeprefix("module."): v for k, v in state.items() if k != "n_averaged"}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{ckpt['path']}: weights do not fit the architecture in its config: {str(e).splitlines()[0]}") from None
    model.to(device).eval()
    run_dir = p if p.is_dir() else p.parent
    return Run(run_dir, relocate_data(cfg, run_dir, stored_location(ckpt)), model, ckpt, spec)


def checked_contents(ckpt: dict[str, Any]) -> tuple[Config, DataSpec]:
    """The config and data spec of a loaded checkpoint, checked before a model is built from them: a
    config that does not validate, or one whose model has more parameters than the file holds values (which
    would allocate them only to fail), is a CheckpointError."""
    from pydantic import ValidationError

    from vaelab.core.config import format_validation_error
    from vaelab.model.build import resolve_spec
    from vaelab.model.footprint import estimate

    where = ckpt.get("path", "checkpoint")
    try:
        cfg = Config.model_validate(ckpt.get("config"))
    except ValidationError as e:
        raise CheckpointError(f"{where}: its config does not validate ({format_validation_error(e)})") from None
    stored = ckpt.get(SPEC_KEY) or ckpt.get(LEGACY_KEY) or {}
    if not isinstance(stored, dict) or not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(f"{where}: no model weights or data description; not a vaelab training checkpoint")
    spec = resolve_spec(cfg.model, DataSpec.from_checkpoint(ckpt))  # current (data_spec) and older (data_meta) files
    fp = estimate(cfg.model, spec)
    held = sum(v.numel() for v in ckpt["model"].values() if isinstance(v, torch.Tensor))
    if fp.parameters > held:
        raise CheckpointError(f"{where}: weights do not fit the architecture in its config: the config describes "
                              f"{fp.parameters:,} parameters but the file holds {held:,} values")
    return cfg, spec


__all__ = ["Run", "load_run", "data_location", "relocate_data", "default_run_dir", "read_run_config", "write_config", "write_metrics", "append_metrics",
           "read_metrics", "CONFIG_NAME", "METRICS_NAME", "CHECKPOINT_NAME"]
