"""What the use commands read: a run folder (with clear errors) and the items to run it on.

Items come from a dataset (the run's own by default, or `NAME[:PATH]`, or a YAML file with a `data:` section)
or from a folder of images, whose files are loaded like the training images and remembered by relative path
so outputs can mirror the folder. Unreadable files are reported and skipped.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor

from vaelab.core.errors import ArgumentError, CheckpointError, ConfigError, DataError
from vaelab.core.exported import is_export_dir
from vaelab.training.runs import Run, load_run

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def open_run(path: str | Path) -> Run:
    """load_run with the errors a user can act on: no folder, no checkpoint, weights of another architecture."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such run folder or checkpoint; give the folder `vaelab train` printed")
    if p.is_dir() and not (p / "checkpoint.pt").is_file() and not is_export_dir(p):
        raise CheckpointError(f"{p} has no checkpoint.pt: not a finished vaelab run folder (train it, or point at the right folder)")
    return load_run(p)


@dataclass
class Items:
    """Inputs for a model: x (N, *shape), labels (N,) or condition vectors or None, and names for outputs."""

    x: Tensor
    y: Tensor | None
    names: list[str]  # relative paths for folder inputs, "item-000012" for dataset items
    value_range: tuple[float, float]
    source: str
    skipped: list[str] = field(default_factory=list)
    first_index: int = 0  # the position of x[0] in its dataset split or folder listing (--offset)

    def __len__(self) -> int:
        return self.x.shape[0]


def parse_data_spec(spec: str, data_path: str | Path | None = None):
    """`NAME`, `NAME:PATH` or a YAML file with a data section -> DataConfig."""
    from pydantic import ValidationError

    from vaelab.core.config import format_validation_error, read_yaml
    from vaelab.data.config import DataConfig

    p = Path(spec)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise DataError(f"--data {spec}: no such YAML file; give NAME, NAME:PATH or an existing YAML file with a data: section")
        raw = read_yaml(p)
        raw = raw.get("data", raw)
        where = f"--data {spec}"
    else:
        name, sep, path = spec.partition(":")
        path = path if sep else data_path
        raw = {"name": name, "path": path} if path else {"name": name}
        where = f"--data {spec!r}"
    try:
        return DataConfig.model_validate(raw)
    except ValidationError as e:
        msg = format_validation_error(e, DataConfig)
        raise ConfigError(f"{where}: {msg.split(': ', 1)[1] if msg.split(': ', 1)[-1].startswith('data.') else msg}") from None


def dataset_items(run: Run, spec: str | None = None, data_path: str | Path | None = None, *, split: str = "test",
                  limit: int | None = None, offset: int = 0) -> Items:
    """A split of the run's dataset (default) or of another one given as NAME[:PATH] or a YAML file: items
    offset, offset+1, ... (at most `limit` of them)."""
    from vaelab.data import load_data

    check_limit(limit)
    check_offset(offset)
    cfg = run.config.data if spec is None else parse_data_spec(spec, data_path)
    if spec is None and data_path is not None:
        cfg = cfg.model_copy(update={"path": Path(data_path)})
    bundle = load_data(cfg, run.config.seed)
    splits = bundle.splits()
    chosen = splits.get(split) or splits.get("test") or splits.get("val") or splits["train"]
    check_offset(offset, len(chosen), f"the {split} split of {cfg.name}")
    end = len(chosen) if limit is None else min(offset + limit, len(chosen))
    x, y = chosen.take(end)
    x, y = x[offset:], None if y is None else y[offset:]
    check_shape(run, x, f"dataset {cfg.name!r}")  # labels of another dataset are used as given; the condition checks them
    return Items(x.float(), y, [f"item-{i:06d}" for i in range(offset, end)], tuple(bundle.value_range), cfg.name,
                 first_index=offset)


def check_limit(limit: int | None, name: str = "--limit") -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ArgumentError(f"{name} must be a whole number >= 1 (how many items to use), got {limit!r}")


def check_offset(offset: int, count: int | None = None, what: str = "") -> None:
    """--offset: a whole number >= 0, before the end of the `count` items of `what` when given."""
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ArgumentError(f"--offset must be a whole number >= 0 (the first item to use), got {offset!r}")
    if count is not None and offset >= count:
        raise ArgumentError(f"--offset {offset} is past the end: {what} has {count:,} items (0..{count - 1})")


def check_shape(run: Run, x: Tensor, what: str) -> None:
    want = tuple(run.model.input_shape)
    got = tuple(x.shape[1:])
    if got != want:
        raise DataError(f"{what}: items have shape {got} but the model of {run.path} takes {want}; "
                        "give data of the shape it was trained on")


def _scale(value_range: tuple[float, float]) -> str:
    return "pm1" if value_range[0] < 0 else "01"


def folder_items(run: Run, folder: str | Path, *, warn=None) -> Items:
    """Every image under `folder` (recursively), resized like the training images; unreadable files skipped."""
    from vaelab.data.images import load_image

    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"--input {root}: not a folder")
    shape = tuple(run.model.input_shape)
    if len(shape) != 3 or shape[1] != shape[2]:
        raise DataError(f"--input {root}: the model takes {shape}, not square images; use --data instead")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"--input {root}: no image files ({', '.join(IMAGE_SUFFIXES)}) in it or its subfolders")
    vr = run.data_spec.value_range
    scale = _scale(run.data_spec.raw_range)
    xs, names, skipped = [], [], []
    for f in files:
        try:
            xs.append(load_image(f, size=shape[1], channels=shape[0], scale=scale))
            names.append(str(f.relative_to(root)))
        except DataError as e:
            skipped.append(str(f))
            warn(f"skipped {e}")
    if not xs:
        raise DataError(f"--input {root}: none of the {len(files)} image files could be read")
    x = torch.stack(xs)
    return Items(run.data_spec.to_model_units(x), None, names, vr, str(root), skipped)  # in the model's units


def labels_for(run: Run, items: Items, label: int | None = None) -> Tensor | None:
    """Condition labels for items: --label overrides, else the items' own; an error if the model needs none/some."""
    model = run.model
    if label is not None:
        if not model.conditional:
            raise DataError(f"--label {label}: the model of {run.path} is unconditional; drop --label")
        check_label(run, label)
        return torch.full((len(items),), int(label), dtype=torch.long)
    if model.conditional and items.y is None:
        raise DataError(f"the model of {run.path} is conditional and {items.source} has no labels: give --label K")
    return items.y if model.conditional else None


def check_label(run: Run, label: int) -> None:
    model = run.model
    if not model.conditional:
        raise DataError(f"--label {label}: the model of {run.path} is unconditional; drop --label")
    model.condition.check_label(label, f"the model of {run.path}")


def load_items(run: Run, *, data: str | None = None, data_path: str | Path | None = None, input_folder: str | Path | None = None,
               limit: int | None = None, offset: int = 0) -> Items:
    """--input FOLDER, else --data NAME[:PATH] (or the run's own data), test split; items offset.. (at most limit)."""
    check_limit(limit)
    check_offset(offset)
    if input_folder is not None:
        if data is not None:
            raise DataError("give either --input FOLDER or --data NAME, not both")
        items = folder_items(run, input_folder)
        if limit is not None or offset:
            check_offset(offset, len(items), f"--input {input_folder}")
            end = len(items) if limit is None else offset + limit
            items = replace(items, x=items.x[offset:end], y=None, names=items.names[offset:end], first_index=offset)
        return items
    return dataset_items(run, data, data_path, limit=limit, offset=offset)


__all__ = ["open_run", "Items", "load_items", "dataset_items", "folder_items", "parse_data_spec", "labels_for",
           "check_label", "check_shape", "check_offset"]
