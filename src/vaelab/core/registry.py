"""One name-to-object registry used for every vocabulary (layers, datasets, optimizers, ...)."""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that is not registered; the message lists the closest valid names."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        self.kind, self.name, self.valid = kind, name, valid
        close = difflib.get_close_matches(name, valid, n=3, cutoff=0.4)
        close += [v for v in valid if v.lower() == name.lower() and v not in close]
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        super().__init__(f"unknown {kind} {name!r}.{hint} Valid: {', '.join(valid)}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Maps names to objects with metadata; `get` suggests close names on a miss."""

    def __init__(self, kind: str, *, case_sensitive: bool = True, populate: str | None = None):
        """`populate` names the module whose import registers the entries (imported on first lookup), so a
        lower layer (the config) can look names up without importing the layer that defines them."""
        self.kind = kind
        self.case_sensitive = case_sensitive
        self._entries: dict[str, Entry[T]] = {}
        self._populate = populate

    def _ensure(self) -> None:
        if self._populate is not None:
            module, self._populate = self._populate, None
            importlib.import_module(module)

    def _key(self, name: str) -> str:
        return name if self.case_sensitive else name.lower()

    def register(self, name: str, obj: T | None = None, **meta: Any) -> Callable[[T], T] | T:
        """Register `obj` under `name`; without `obj`, return a decorator."""

        def add(o: T) -> T:
            key = self._key(name)
            if key in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[key] = Entry(name, o, dict(meta))
            return o

        return add(obj) if obj is not None else add

    def entry(self, name: str) -> Entry[T]:
        self._ensure()
        try:
            return self._entries[self._key(name)]
        except KeyError:
            raise UnknownNameError(self.kind, name, self.names()) from None

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def names(self) -> list[str]:
        self._ensure()
        return [e.name for e in self._entries.values()]

    def entries(self) -> Iterator[Entry[T]]:
        self._ensure()
        return iter(list(self._entries.values()))

    def __contains__(self, name: object) -> bool:
        self._ensure()
        return isinstance(name, str) and self._key(name) in self._entries

    def __len__(self) -> int:
        self._ensure()
        return len(self._entries)
