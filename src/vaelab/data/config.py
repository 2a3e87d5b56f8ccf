"""The seeded split (DataConfig lives in vaelab.core.data_config): native test stays test, val is carved out of train."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from vaelab.core.data_config import DataConfig
from vaelab.core.vocab import DATASETS, dataset_options
from vaelab.data.base import ArrayData, ArraySplit, DataBundle
from vaelab.core.errors import DataError


def _count(n: int, fraction: float) -> int:
    return 0 if fraction <= 0 or n == 0 else max(1, round(n * fraction))


def _carve(data, k: int, g: torch.Generator, what: str, name: str):
    """(rest, held_out or None): `k` seeded random samples of `data` held out, both kept in original order."""
    n = len(data)
    if k and n - k < 1:
        raise DataError(f"dataset {name!r} has {n} samples, too few to hold out {k} for {what}")
    perm = torch.randperm(n, generator=g)
    held = data.subset(perm[:k].sort().values) if k else None
    return data.subset(perm[k:].sort().values), held


def load_data(cfg: DataConfig, seed: int) -> DataBundle:
    """Load `cfg.name` and split it reproducibly with `cfg.split_seed` (or `seed`)."""
    opts = dataset_options(cfg.name, cfg.options)
    source = DATASETS.get(cfg.name)(cfg.path, opts)
    splits = dict(source.splits)
    if cfg.limit is not None:
        splits = {k: v.head(cfg.limit) for k, v in splits.items()}
    g = torch.Generator().manual_seed(cfg.split_seed if cfg.split_seed is not None else seed)
    if "train" in splits and "test" in splits:
        pool, test = splits["train"], splits["test"]
        n_val = _count(len(pool), cfg.val_fraction)  # val is a share of native train
    else:  # "all", or a lone native split: carve test out of it
        if len(splits) != 1:
            raise DataError(f"dataset {cfg.name!r} returned splits {sorted(splits)}; expected train+test or one split")
        whole = next(iter(splits.values()))
        n = len(whole)  # fractions are of the whole: 0.1/0.1 of 1000 -> 800/100/100
        pool, test = _carve(whole, _count(n, cfg.test_fraction), g, "test", cfg.name)
        n_val = _count(n, cfg.val_fraction)
    train, val = _carve(pool, n_val, g, "validation", cfg.name)
    if len(train) == 0:
        raise DataError(f"dataset {cfg.name!r} ({cfg.path or 'built in'}) has no samples to train on")
    for split_name, split in (("train", train), ("validation", val), ("test", test)):
        check_labels(split, source.num_classes, f"dataset {cfg.name!r}, {split_name} split")
    value_range = (float(source.value_range[0]), float(source.value_range[1]))
    normalization = None
    if getattr(opts, "standardize", False):
        train, val, test, normalization, value_range = _standardize(cfg.name, train, val, test, value_range)
    return DataBundle(
        train=train.to_split(),
        val=None if val is None else val.to_split(),
        test=None if test is None or len(test) == 0 else test.to_split(),
        shape=tuple(source.shape),
        value_range=value_range,
        num_classes=source.num_classes,
        name=cfg.name,
        class_names=source.class_names,
        normalization=normalization,
    )


def _standardize(name: str, train, val, test, raw_range):
    """Fit on train, apply to every split; the value range becomes the standardised training data's range."""
    from vaelab.data.normalize import fit_standardizer

    parts = [p for p in (train, val, test) if p is not None]
    if not all(isinstance(p, ArrayData) for p in parts):
        raise DataError(f"data.options.standardize: dataset {name!r} is streamed, not held in memory; "
                        "set data.options.stream: false or drop standardize")
    s = fit_standardizer(train.x, raw_range)
    train, val, test = (None if p is None else ArrayData(s.apply(p.x), p.y) for p in (train, val, test))
    return train, val, test, s, (float(train.x.min()), float(train.x.max()))


def check_labels(data, num_classes: int | None, where: str) -> None:
    """Class labels must lie in 0..num_classes-1, checked once before training (not mid-epoch)."""
    y = getattr(data, "y", None) if data is not None else None
    if y is None or num_classes is None or y.is_floating_point() or y.ndim != 1 or not len(y):
        return
    bad = (y < 0) | (y >= num_classes)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise DataError(f"{where}: label {int(y[i])} at item {i} is outside the {num_classes} classes "
                        f"0..{num_classes - 1} ({int(bad.sum())} such labels); fix the labels or the class count")


def _label_counts(y: torch.Tensor | None, names: list[str] | None) -> dict[str, int] | None:
    if y is None or y.is_floating_point() or y.ndim != 1:
        return None
    ids, counts = torch.unique(y, return_counts=True)
    key = (lambda i: names[i] if names and 0 <= i < len(names) else str(i))
    return {key(int(i)): int(c) for i, c in zip(ids, counts)}


def describe(bundle: DataBundle) -> dict[str, Any]:
    """Sizes, shape, dtype, value range and label counts per split (for `vaelab data describe`)."""
    out: dict[str, Any] = {
        "name": bundle.name,
        "shape": list(bundle.shape),
        "dtype": "float32",
        "value_range": list(bundle.value_range),
        "standardized": bundle.normalization is not None,
        "num_classes": bundle.num_classes,
        "class_names": bundle.class_names,
        "splits": {},
    }
    for key, split in bundle.splits().items():
        labels = split.labels() if hasattr(split, "labels") else None
        info: dict[str, Any] = {"size": len(split), "label_counts": _label_counts(labels, bundle.class_names)}
        if isinstance(split, ArraySplit) and len(split):
            info["observed_min"], info["observed_max"] = float(split.x.min()), float(split.x.max())
        out["splits"][key] = info
    return out

