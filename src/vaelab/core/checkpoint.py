"""Checkpoints: one file with config, weights, optimizer, scheduler, history and RNG state.

Written atomically (temporary file, fsync, rename), so an interrupted write never corrupts the last good one.
Read with `torch.load(weights_only=True)`: loading never executes code from the file.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from vaelab.core.errors import CheckpointError

FORMAT = "vaelab-checkpoint"
VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")  # in torch's weights_only refusal: the global a pickle asked for


def process_umask() -> int:
    """The process umask, read without changing it (Linux: /proc; elsewhere set and restored at once)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Call write(file_object) on a temporary file beside `path`, then rename it over `path`.

    The file gets the mode a plain `open(path, "w")` would (0666 less the umask), not mkstemp's 0600, so
    teammates can read a shared runs folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~process_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    payload = {"format": FORMAT, "version": VERSION, **state}
    if isinstance(payload.get("config"), dict):
        payload["config"] = json.dumps(payload["config"])
    atomic_write_bytes(Path(path), lambda f: torch.save(payload, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint file, the one in a run folder, or an exported folder; the config comes back as a dict."""
    p = Path(path)
    if p.is_dir() and not (p / CHECKPOINT_NAME).is_file():
        from vaelab.core.exported import is_export_dir, read_export

        if is_export_dir(p):
            return read_export(p, map_location)
    if p.is_dir():
        p = p / CHECKPOINT_NAME
        if not p.is_file():
            raise CheckpointError(f"{p.parent} has no {CHECKPOINT_NAME}: it is not a finished or resumable vaelab run folder")
    if not p.is_file():
        raise CheckpointError(f"checkpoint {str(p)!r} does not exist")
    try:
        payload = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt zip, pickle with code, truncated file
        refused = _REFUSED_GLOBAL.search(str(e))
        if refused:  # torch's own message would suggest weights_only=False, i.e. running the file's code
            raise CheckpointError(f"{p}: not a readable vaelab checkpoint: refused, loading it would import "
                                  f"{refused.group(1)}, which no vaelab checkpoint needs and which could run code; it "
                                  "was not loaded. Use checkpoints from sources you trust") from None
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(f"{p}: not a readable vaelab checkpoint ({type(e).__name__}: {first})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not a vaelab checkpoint (no {FORMAT!r} marker)")
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(f"{p}: written by a newer vaelab (format version {payload['version']})")
    payload["config"] = json.loads(payload["config"]) if isinstance(payload.get("config"), str) else payload.get("config")
    payload["path"] = str(p)
    return payload
