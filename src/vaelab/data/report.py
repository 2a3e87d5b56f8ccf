"""What `vaelab data describe` reports: a dataset by NAME and PATH, or the data section of a config."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from vaelab.core.errors import ConfigError


def _parse_options(items: list[str]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--option {item!r}: expected key=value, e.g. --option size=32")
        out[key.strip()] = yaml.safe_load(text) if text.strip() else None
    return out


def describe_dataset(
    target: str | Path, path: str | Path | None = None, *, overrides: list[str] | None = None,
    options: list[str] | None = None, seed: int = 0,
) -> dict[str, Any]:
    """Sizes per split, shape, dtype, value range and label counts.

    target: a dataset name (then `path` is its data.path) or a YAML config (then its data section and seed are used,
    with `overrides` as `--set` assignments).
    """
    from pydantic import ValidationError

    from vaelab.core.config import load_config
    from vaelab.data import DATASETS, DataConfig, describe, load_data

    target_s = str(target)
    is_config = target_s.endswith((".yaml", ".yml")) or (Path(target_s).is_file() and target_s not in DATASETS)
    if is_config:
        if path is not None or options:
            raise ConfigError(f"{target_s} is a config: give its data settings with --set data.KEY=VALUE, not PATH/--option")
        cfg = load_config(target_s, overrides)
        data_cfg, seed = cfg.data, cfg.seed
    else:
        if overrides:
            raise ConfigError("--set applies to a CONFIG; with NAME PATH use --option KEY=VALUE for dataset options")
        try:
            data_cfg = DataConfig(name=target_s, path=None if path is None else Path(path), options=_parse_options(options or []))
        except ValidationError as e:  # pydantic wraps the ConfigError raised by DataConfig's validators
            raise ConfigError("; ".join(err["msg"].removeprefix("Value error, ") for err in e.errors())) from None
    info = describe(load_data(data_cfg, seed))
    info["path"] = None if data_cfg.path is None else str(data_cfg.path)
    return info


def format_description(info: dict[str, Any]) -> str:
    """The report as aligned text lines."""
    lo, hi = info["value_range"]
    lines = [
        f"dataset      {info['name']}" + (f"  ({info['path']})" if info.get("path") else ""),
        f"shape        {tuple(info['shape'])} per sample, {info['dtype']}",
        f"value range  [{lo:.4g}, {hi:.4g}] " + ("(standardized per feature on train; observed there)"
                                                 if info.get("standardized") else "(declared)"),
        f"classes      {info['num_classes'] if info['num_classes'] else 'none (no labels)'}",
    ]
    for key, split in info["splits"].items():
        seen = ""
        if "observed_min" in split:
            seen = f"  observed [{split['observed_min']:.4g}, {split['observed_max']:.4g}]"
        lines.append(f"{key:<6s} {split['size']:>8,d} samples{seen}")
        counts = split.get("label_counts")
        if counts:
            lines.append("       labels: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    return "\n".join(lines)
