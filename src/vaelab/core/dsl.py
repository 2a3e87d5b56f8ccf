"""Layer strings <-> LayerSpec. Grammar: `[N*]TYPE[_arg]...`, e.g. `2*VAERB_256_256`.

Also accepts seed 003's mapping form `{TYPE: {args: [...], **kwargs}}` (or `{TYPE: null}`).
Argument names and types come from a signature lookup, so this module needs no torch.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

REQUIRED: Any = object()
Value = int | float | str | bool

# Upper bounds, checked before anything is built, so a typo cannot exhaust the machine or stall `vaelab check`
# (each expanded layer is its own module, built and shape-traced one at a time on the meta device, ~1 ms each).
# Above any published VAE: NVAE, among the deepest, has a few hundred layers in all; no layer argument of a real
# model needs more than 2**31 - 1, which is also the largest size many torch kernels index with 32-bit integers.
MAX_REPEAT = 256
MAX_LAYERS = 256  # per list (model.encoder, model.decoder, each head), after repeats
MAX_INT_ARG = 2**31 - 1
_INTEGER = re.compile(r"[+-]?[0-9]+")


class SpecError(ValueError):
    """A layer string or mapping that does not fit its layer's signature."""


@dataclass(frozen=True)
class Param:
    name: str
    type: type = int
    default: Any = REQUIRED
    variadic: bool = False  # takes all remaining values (at least one)
    choices: tuple[str, ...] | None = None
    low: int | None = None  # smallest valid integer (1 for sizes, 0 for paddings); None: any

    def describe(self) -> str:
        if self.variadic:
            return f"{self.name}..."
        return self.name if self.default is REQUIRED else f"{self.name}={self.default}"


Signature = tuple[Param, ...]


@dataclass(frozen=True)
class LayerSpec:
    type: str
    args: tuple[Value, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    repeat: int = 1

    def format(self) -> str | dict[str, Any]:
        """The string form, or seed 003's mapping form when keyword arguments are present."""
        if self.kwargs:
            body: dict[str, Any] = {"args": list(self.args), **dict(self.kwargs)}
            if self.repeat != 1:
                body["repeat"] = self.repeat
            return {self.type: body}
        text = "_".join([self.type, *(_format_value(a) for a in self.args)])
        return f"{self.repeat}*{text}" if self.repeat != 1 else text

    def __str__(self) -> str:
        f = self.format()
        return f if isinstance(f, str) else repr(f)

    def expand(self) -> list["LayerSpec"]:
        one = LayerSpec(self.type, self.args, self.kwargs, 1)
        return [one] * self.repeat


def _format_value(v: Value) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _coerce(raw: Any, p: Param, token: str, type_name: str) -> Value:
    where = f"{type_name} argument {p.name!r}"
    if p.type is bool:
        if isinstance(raw, bool):
            return raw
        s = str(raw).lower()
        if s in ("true", "1", "yes"):
            return True
        if s in ("false", "0", "no"):
            return False
        raise SpecError(f"{token!r}: {where} must be true or false, got {_show(raw)}")
    if p.type is int:
        if isinstance(raw, bool):
            raise SpecError(f"{token!r}: {where} must be an integer, got {raw!r}")
        if isinstance(raw, int):
            value = raw
        else:
            text = str(raw).strip()
            if _INTEGER.fullmatch(text) and len(text) > 12:
                raise SpecError(f"{token!r}: {where} is too large ({len(text)} digits); at most {MAX_INT_ARG:,}")
            try:
                value = int(text)
            except ValueError:
                kind = "a float" if _is_float(text) else _show(raw)
                raise SpecError(f"{token!r}: {where} must be an integer, got {kind} ({text if len(text) <= 60 else text[:57] + '...'})") from None
        if p.low is not None and value < p.low:
            raise SpecError(f"{token!r}: {where} must be >= {p.low}, got {value}")
        if abs(value) > MAX_INT_ARG:
            shown = f"{value:,}" if value.bit_length() <= 64 else f"about 10**{int(value.bit_length() * 0.30103)}"
            raise SpecError(f"{token!r}: {where} is {shown}, above the limit of {MAX_INT_ARG:,} "
                            "(no real layer is this large; larger sizes overflow 32-bit indexing)")
        return value
    if p.type is float:
        try:
            value = float(raw)
        except (TypeError, ValueError, OverflowError):
            raise SpecError(f"{token!r}: {where} must be a number, got {_show(raw)}") from None
        if not math.isfinite(value):
            raise SpecError(f"{token!r}: {where} must be finite, got {_show(raw)}")
        return value
    s = str(raw)
    if p.choices is not None and s not in p.choices:
        raise SpecError(f"{token!r}: {where} must be one of {', '.join(p.choices)}, got {s!r}")
    return s


def _show(v: Any, limit: int = 60) -> str:
    """repr(v), shortened: messages quote user values, which may be huge (a 5000-digit int has no repr)."""
    try:
        text = repr(v)
    except ValueError:
        return "<a number too large to print>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def bind(type_name: str, raw_args: Sequence[Any], sig: Signature, token: str) -> tuple[Value, ...]:
    """Check arity and coerce each raw argument to its parameter's type."""
    required = [p for p in sig if p.default is REQUIRED and not p.variadic]
    variadic = sig[-1] if sig and sig[-1].variadic else None
    fixed = sig[:-1] if variadic else sig
    names = ", ".join(p.describe() for p in sig) or "no arguments"
    too_few = len(raw_args) < len(required) + (1 if variadic else 0)
    too_many = variadic is None and len(raw_args) > len(fixed)
    if too_few or too_many:
        raise SpecError(
            f"{token!r}: {type_name} takes ({names}), got {len(raw_args)} value"
            f"{'' if len(raw_args) == 1 else 's'}"
        )
    out: list[Value] = []
    for i, raw in enumerate(raw_args):
        p = fixed[i] if i < len(fixed) else variadic
        assert p is not None
        out.append(_coerce(raw, p, token, type_name))
    return tuple(out)


def _check_repeat(repeat: int, token: str) -> None:
    if repeat <= 0:
        raise SpecError(f"{token!r}: repeat count must be >= 1, got {repeat}")
    if repeat > MAX_REPEAT:
        raise SpecError(f"{token!r}: repeat count must be <= {MAX_REPEAT} (each repeat is a separate layer; "
                        "no published VAE stacks more)")


def parse_token(token: str, signature_of: Callable[[str], Signature]) -> LayerSpec:
    """Parse one layer string such as `2*VAERB_256_256` or `Drop_0.1`."""
    if not isinstance(token, str) or not token.strip():
        raise SpecError(f"{token!r}: a layer string must be a non-empty string like 'C2d_3_16_3_1_1'")
    text = token.strip()
    repeat = 1
    if "*" in text:
        count, _, text = text.partition("*")
        count = count.strip()
        if not _INTEGER.fullmatch(count):
            raise SpecError(f"{token!r}: repeat count {count!r} must be a positive integer")
        _check_repeat(int(count) if len(count) <= 12 else MAX_REPEAT + 1, token)
        repeat = int(count)
    type_name, *raw = text.split("_")
    if not type_name:
        raise SpecError(f"{token!r}: missing layer type before '_'")
    if any(r == "" for r in raw):
        raise SpecError(f"{token!r}: empty argument (two '_' in a row or a trailing '_')")
    sig = signature_of(type_name)
    return LayerSpec(type_name, bind(type_name, raw, sig, token), {}, repeat)


def parse_mapping(item: Mapping[str, Any], signature_of: Callable[[str], Signature]) -> LayerSpec:
    """Parse seed 003's `{Conv2d: {args: [1, 16, 4], stride: 2}}` form."""
    if len(item) != 1:
        raise SpecError(f"{dict(item)!r}: a layer mapping has exactly one key, the layer type")
    (type_name, body), = item.items()
    body = {} if body is None else body
    if not isinstance(body, Mapping):
        raise SpecError(f"{type_name}: expected a mapping with 'args' and keyword arguments, got {_show(body)}")
    body = dict(body)
    args = body.pop("args", None) or []
    repeat = body.pop("repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat <= 0:
        raise SpecError(f"{type_name}: 'repeat' must be a positive integer, got {_show(repeat)}")
    _check_repeat(repeat, f"{type_name}(repeat={repeat})")
    if not isinstance(args, (list, tuple)):
        raise SpecError(f"{type_name}: 'args' must be a list, got {_show(args)}")
    sig = signature_of(type_name)
    token = f"{type_name}({', '.join(_show(a, 20) for a in args)})"
    known = {p.name for p in sig}
    unknown = [k for k in body if k not in known]
    if unknown:
        raise SpecError(f"{token}: unknown keyword {unknown[0]!r}; {type_name} takes ({', '.join(p.describe() for p in sig)})")
    # keyword arguments fill the positions after the positional ones, when they form a prefix
    positional = list(args)
    kwargs = dict(body)
    for p in sig[len(positional):]:
        if p.name in kwargs and not p.variadic:
            positional.append(kwargs.pop(p.name))
        else:
            break
    kw_bound = {k: _coerce(v, next(p for p in sig if p.name == k), token, type_name) for k, v in kwargs.items()}
    required_left = [p for p in sig[len(positional):] if p.default is REQUIRED and p.name not in kw_bound]
    if required_left:
        raise SpecError(f"{token}: {type_name} is missing {', '.join(p.name for p in required_left)}")
    pos_bound = bind(type_name, positional, sig[: len(positional)] if kwargs else sig, token) if positional else ()
    return LayerSpec(type_name, pos_bound, kw_bound, repeat)


def parse_item(item: Any, signature_of: Callable[[str], Signature]) -> LayerSpec:
    if isinstance(item, LayerSpec):
        return item
    if isinstance(item, Mapping):
        return parse_mapping(item, signature_of)
    return parse_token(item, signature_of)


def parse_list(items: Sequence[Any], signature_of: Callable[[str], Signature], where: str) -> list[LayerSpec]:
    """Parse a list of layer strings or mappings; errors name `where[i]`."""
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise SpecError(f"{where}: expected a list of layer strings, got {_show(items)}")
    if not items:
        raise SpecError(f"{where}: the list is empty; give at least one layer string (e.g. Identity)")
    out: list[LayerSpec] = []
    layers = 0
    for i, item in enumerate(items):
        try:
            out.append(parse_item(item, signature_of))
        except SpecError as e:
            raise SpecError(f"{where}[{i}] {e}") from None
        except KeyError as e:  # unknown layer type, from the registry
            msg = e.args[0] if e.args else str(e)
            raise SpecError(f"{where}[{i}] {item!r}: {msg}") from None
        layers += out[-1].repeat
        if layers > MAX_LAYERS:
            raise SpecError(f"{where}: more than {MAX_LAYERS} layers after repeats (at item {i}); each is a separate "
                            "module built and traced one by one, and no published VAE is this deep")
    return out


def expand(specs: Sequence[LayerSpec]) -> list[LayerSpec]:
    return [s for spec in specs for s in spec.expand()]
