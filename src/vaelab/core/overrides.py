"""Reading a config file and applying `--set dotted.key=value` overrides to the raw mapping; pydantic errors as
one line naming the dotted field (the typed tree itself is in vaelab.core.config)."""
from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from vaelab.core.errors import ConfigError


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"config file {str(p)!r} is a folder; give the YAML file inside it, e.g. {p / 'config.yaml'}")
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        raw = yaml.safe_load(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError, ValueError, RecursionError) as e:  # ValueError: ints over 4300 digits
        raise ConfigError(f"{p}: not valid YAML: {' '.join(str(e).split())[:300]}") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read ({e.strerror})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of sections (model, data, loss, train), got {type(raw).__name__}")
    return raw


_EXPONENT_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply one `dotted.key=value` in place; the value is parsed as YAML (so `false`, `[1, 2]`, `3e-4` work)."""
    key, sep, text = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {assignment!r}: expected dotted.key=value, e.g. train.lr=3e-4")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except (yaml.YAMLError, ValueError, RecursionError):
        value = text
    if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads 3e-4 (an exponent without a dot) as a string
    parts = key.split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            node = node[_list_index(part, node, where)]
        else:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"--set {key}: {where} is a value ({_short(node)}), not a section or list; "
                              f"set it whole, e.g. --set {where}=...")
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(last, node, key)] = value
    else:
        node[last] = value


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _list_index(part: str, node: list, where: str) -> int:
    try:
        i = int(part)
    except ValueError:
        raise ConfigError(f"--set {where}: a list index must be an integer") from None
    if not -len(node) <= i < len(node):
        raise ConfigError(f"--set {where}: index {i} is out of range (the list has {len(node)} items)")
    return i


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith("function-") or str(part) in ("str", "dict[str,any]"):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Valid keys of the section that holds the unknown key at `loc`."""
    current: Any = model
    for part in loc[:-1]:
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return []
        ann = fields[part].annotation
        current = next((a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def format_errors(err: ValidationError, model: type[BaseModel]) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        where = _dotted(loc) or "config"
        if e["type"] == "extra_forbidden":
            valid = _field_names(model, loc)
            close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
            hint = f"; did you mean {'.'.join([*map(str, loc[:-1]), close[0]])!r}?" if close else ""
            lines.append(f"{where}: unknown key{hint} Valid keys here: {', '.join(valid)}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {msg}" if not msg.startswith(where) else msg)
    return "; ".join(lines)
