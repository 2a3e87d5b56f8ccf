"""Tabular data: `.csv`, `.npy` or `.npz` -> (N, D) float32 samples, optional labels.

CSV header detection never drops a numeric first row (seed 000 lost frame 0 that way): the first row is a
header only if one of its cells does not parse as a number where the second row's cell does.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from vaelab.data.base import ARRAY_READ_ERRORS, DATASETS, ArrayData, Options, Source, require_path
from vaelab.core.errors import DataError


class TableOptions(Options):
    header: Literal["auto", True, False] = Field("auto", description="CSV: is the first row a header?")
    label_column: str | int | None = Field(None, description="column name or index holding labels; null = none")
    delimiter: str = Field(",", min_length=1, max_length=1, description="CSV field separator")
    x_key: str = Field("x", description=".npz key of the samples")
    y_key: str | None = Field("y", description=".npz key of the labels (optional unless set explicitly)")


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def detect_header(rows: list[list[str]]) -> bool:
    """True if the first row is a header: a cell that is not a number where the next row has one."""
    if not rows:
        return False
    first = rows[0]
    if len(rows) == 1:
        return not all(_is_number(c) for c in first)
    second = rows[1]
    return any(not _is_number(a) and _is_number(b) for a, b in zip(first, second)) or not any(
        _is_number(c) for c in first
    )


def _column_index(col: str | int, names: list[str] | None, width: int, path: Path) -> int:
    if isinstance(col, str):
        if names is not None and col in names:
            return names.index(col)
        if col.lstrip("-").isdigit():
            col = int(col)
        else:
            have = f"columns: {', '.join(names)}" if names else "the file has no header"
            raise DataError(f"{path}: label_column {col!r} not found ({have})")
    if not -width <= col < width:
        raise DataError(f"{path}: label_column {col} out of range for {width} columns")
    return col % width


def _labels(raw: np.ndarray) -> tuple[torch.Tensor, list[str] | None, int | None]:
    """Labels from strings: integers -> int64 classes, other numbers -> float (N,1), words -> sorted class ids."""
    if all(_is_number(v) for v in raw):
        vals = raw.astype(np.float64)
        if np.all(np.isfinite(vals)) and np.all(vals == np.round(vals)) and vals.min() >= 0:
            y = torch.from_numpy(vals.astype(np.int64))
            return y, None, int(y.max()) + 1 if len(y) else 0
        return torch.from_numpy(vals.astype(np.float32)).unsqueeze(1), None, None
    names = sorted(set(raw.tolist()))
    lookup = {n: i for i, n in enumerate(names)}
    return torch.tensor([lookup[v] for v in raw], dtype=torch.long), names, len(names)


def _check_finite(x: np.ndarray, path: Path, first_line: int | None = None) -> None:
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        where = f" (line {i + first_line})" if first_line is not None else ""
        raise DataError(f"{path}: row {i}{where} holds NaN, inf or an empty cell; {int(bad.sum())} bad rows in all")


def read_csv(path: Path, opts: TableOptions) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    """(x (N, D) float64, raw label strings or None, header names or None)."""
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f, delimiter=opts.delimiter) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read CSV ({e})") from None
    has_header = detect_header(rows) if opts.header == "auto" else bool(opts.header)
    names = [c.strip() for c in rows[0]] if has_header and rows else None
    body = rows[1:] if has_header else rows
    if not body:
        raise DataError(f"{path}: no data rows")
    width = len(body[0])
    for i, r in enumerate(body):
        if len(r) != width:
            raise DataError(f"{path}: row {i} has {len(r)} fields, row 0 has {width}")
    cells = np.array(body, dtype=object)
    lab = None
    if opts.label_column is not None:
        j = _column_index(opts.label_column, names, width, path)
        lab = np.array([c.strip() for c in cells[:, j]])
        cells = np.delete(cells, j, axis=1)
    x = np.empty(cells.shape, dtype=np.float64)
    for i, r in enumerate(cells):
        try:
            x[i] = [float(c) if c.strip() else math.nan for c in r]
        except ValueError as e:
            raise DataError(f"{path}: row {i} (line {i + 1 + has_header}): {e}") from None
    _check_finite(x, path, 1 + has_header)
    return x, lab, names


def _read_npz(path: Path, opts: TableOptions) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
            if opts.x_key not in keys:
                raise DataError(f"{path}: no key {opts.x_key!r} (option x_key); keys present: {', '.join(keys) or 'none'}")
            x = z[opts.x_key]
            y = None
            if opts.y_key is not None and opts.y_key in keys:
                y = z[opts.y_key]
            elif "y_key" in opts.model_fields_set and opts.y_key is not None:
                raise DataError(f"{path}: no key {opts.y_key!r} (option y_key); keys present: {', '.join(keys)}")
    except ARRAY_READ_ERRORS as e:
        raise DataError(f"{path}: cannot read .npz ({type(e).__name__}: {e})") from None
    return x, y


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except ARRAY_READ_ERRORS as e:
        raise DataError(f"{path}: cannot read .npy ({type(e).__name__}: {e})") from None


def load_table(path: Path | None, options: TableOptions) -> Source:
    path = require_path(path, "table", "a .csv, .npy or .npz file")
    kind = path.suffix.lower()
    names: list[str] | None = None
    if kind == ".csv":
        x, lab, _ = read_csv(path, options)
    elif kind in (".npy", ".npz"):
        x, lab = (_read_npy(path), None) if kind == ".npy" else _read_npz(path, options)
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise DataError(f"{path}: samples have dtype {x.dtype}, expected real numbers")
        if x.ndim == 0:
            raise DataError(f"{path}: holds a single number (a 0-d array), expected rows of samples (N, D)")
        if len(x) == 0:
            raise DataError(f"{path}: no rows")
        x = x.reshape(-1, 1) if x.ndim == 1 else x
        if lab is None and options.label_column is not None:
            if x.ndim != 2:
                raise DataError(f"{path}: label_column needs a 2-D array, got shape {x.shape}")
            j = _column_index(options.label_column, None, x.shape[1], path)
            lab, x = x[:, j], np.delete(x, j, axis=1)
        _check_finite(x.astype(np.float64), path)
    else:
        raise DataError(f"{path}: unsupported table file {kind!r}; use .csv, .npy or .npz")
    if len(x) == 0:
        raise DataError(f"{path}: no rows")
    y, num_classes = None, None
    if lab is not None and len(lab) != len(x):
        raise DataError(f"{path}: {len(x)} rows but {len(lab)} labels")
    if lab is not None and np.ndim(lab) > 1:  # (N, K) targets
        y = torch.from_numpy(np.asarray(lab, dtype=np.float32).reshape(len(lab), -1))
    elif lab is not None:
        y, names, num_classes = _labels(np.asarray(lab).astype(str))
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    lo, hi = float(xt.min()), float(xt.max())
    value_range = (0.0, 1.0) if lo >= 0.0 and hi <= 1.0 else (lo, hi)
    return Source({"all": ArrayData(xt, y)}, value_range, num_classes, names)


DATASETS.register(
    "table",
    load_table,
    options=TableOptions,
    doc="a .csv (header auto-detected), .npy or .npz (keys x, y) of numeric rows; value range observed",
)
