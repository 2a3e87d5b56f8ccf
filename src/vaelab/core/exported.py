"""Reading an exported model folder (`vaelab export RUN --to DIR`): config.json + model.safetensors + README.md.

The layout follows Hugging Face's: the config beside the weights in safetensors (which holds tensors only, so
loading never executes code). `load_checkpoint` reads such a folder as a checkpoint without optimizer state, so
`load_run(DIR)` and every command that takes a run work on it unchanged.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vaelab.core.errors import CheckpointError

EXPORT_CONFIG = "config.json"
EXPORT_WEIGHTS = "model.safetensors"
EXPORT_FORMAT = "vaelab-export"
EXPORT_VERSION = 1


def is_export_dir(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / EXPORT_CONFIG).is_file() and (p / EXPORT_WEIGHTS).is_file()


def read_export(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """The folder as a checkpoint payload: config (dict), model (state dict), data_spec (or an older export's
    data_meta), history, epoch."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    cfg_path, weights = p / EXPORT_CONFIG, p / EXPORT_WEIGHTS
    try:
        doc = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cfg_path}: not valid JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
        hint = (" (a diffusers model folder: bring it in with `vaelab import-diffusers`)"
                if isinstance(doc, dict) and "_class_name" in doc else "")
        raise CheckpointError(f"{cfg_path}: not a vaelab export (no \"format\": \"{EXPORT_FORMAT}\"){hint}")
    if doc.get("format_version", 0) > EXPORT_VERSION:
        raise CheckpointError(f"{cfg_path}: written by a newer vaelab (export format {doc['format_version']})")
    try:
        state = load_file(str(weights), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights}: not readable safetensors ({str(e).splitlines()[0][:200]})") from None
    return {"format": EXPORT_FORMAT, "config": doc["config"], "model": state, "ema": None,
            "data_spec": doc.get("data_spec"), "data_meta": doc.get("data_meta") or {}, "history": doc.get("history") or [],
            "epoch": doc.get("epoch", 0), "path": str(weights)}


__all__ = ["is_export_dir", "read_export", "EXPORT_CONFIG", "EXPORT_WEIGHTS", "EXPORT_FORMAT", "EXPORT_VERSION"]
