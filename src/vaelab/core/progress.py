"""Progress of long work on stderr, one helper for every command.

On a terminal: a rich bar per stage with the count, items per second, elapsed time and ETA. Otherwise (piped,
CI logs): one line per stage when it ends, with the count, seconds and rate. Stages nest: a stage opened
inside another adds a row to the same display (one rich live display at a time), and a quiet stage keeps
every stage inside it quiet (`train.progress: false` silences a search's trainings too).

Deep code reports work with `advance(n)`, which moves the innermost open stage and does nothing when none is
open, so a library function needs no progress argument. The open stage is held in a ContextVar that each
`stage` resets on exit (no state outlives the call).
"""
from __future__ import annotations

import contextlib
import sys
import time
from contextvars import ContextVar
from typing import Any, Iterable, Iterator, TextIO, TypeVar

T = TypeVar("T")

_OPEN: ContextVar["Stage | None"] = ContextVar("vaelab_progress_stage", default=None)


class Stage:
    """One piece of long work: `advance(n)` as items finish; the line it prints when not on a terminal."""

    def __init__(self, label: str, total: int | None, unit: str, *, quiet: bool, live: Any = None):
        self.label, self.total, self.unit, self.quiet, self.live = label, total, unit, quiet, live
        self.done = 0
        self.t0 = time.perf_counter()
        self.task = None if live is None else live.add_task(label, total=total, unit=unit)

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.live is not None:
            self.live.advance(self.task, n)

    def line(self) -> str:
        """`label: 1,797 items in 12.3 s (146.1 items/s)`: what the stage did (its total when nothing advanced it)."""
        seconds = time.perf_counter() - self.t0
        count = self.done or self.total
        if not count:
            return f"{self.label}: done in {seconds:.1f} s"
        rate = f" ({count / seconds:,.1f} {self.unit}/s)" if seconds > 0 else ""
        return f"{self.label}: {count:,} {self.unit} in {seconds:.1f} s{rate}"


def _rich_progress(stream: TextIO):
    """A rich Progress on `stream`: description, bar, M/N, items/s, elapsed, ETA (count and ETA only where the
    stage knows its total)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.text import Text

    class Count(ProgressColumn):
        def render(self, task) -> Text:
            return Text("" if task.total is None else f"{int(task.completed):,}/{int(task.total):,}", style="green")

    class Rate(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:,.1f} {task.fields.get('unit', 'items')}/s", style="cyan")

    class Eta(ProgressColumn):
        remaining = TimeRemainingColumn()

        def render(self, task) -> Text:
            return Text("") if task.total is None else Text("ETA ") + self.remaining.render(task)

    return Progress(TextColumn("{task.description}"), BarColumn(), Count(), Rate(), TimeElapsedColumn(), Eta(),
                    console=Console(file=stream), transient=False)


def is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


@contextlib.contextmanager
def stage(label: str, total: int | None = None, *, unit: str = "items", enabled: bool = True, summary: bool = True,
          stream: TextIO | None = None) -> Iterator[Stage]:
    """Show `label`'s progress while the block runs (see the module doc).

    enabled: False for quiet (this stage and every one opened inside it).
    summary: False to print no line off a terminal (the caller prints its own, e.g. the epoch line); on a
        terminal such a stage's row is removed when it ends.
    """
    parent = _OPEN.get()
    quiet = not enabled or (parent is not None and parent.quiet)
    out = stream if stream is not None else sys.stderr
    with contextlib.ExitStack() as stack:
        live = None
        if not quiet and parent is not None and parent.live is not None:
            live = parent.live  # a row in the open display
        elif not quiet and is_terminal(out):
            live = stack.enter_context(_rich_progress(out))
        nested = parent is not None and live is not None and live is parent.live
        st = Stage(label, total, unit, quiet=quiet, live=live)
        token = _OPEN.set(st)
        try:
            yield st
        finally:
            _OPEN.reset(token)
            if live is not None and (nested or not summary):
                live.remove_task(st.task)  # nested rows and per-epoch bars go when done; a top-level row stays
        if live is not None and summary and not nested and st.total is not None and st.done == 0:
            live.update(st.task, completed=st.total)  # finished without advancing (e.g. a cached result)
        elif live is None and not quiet and summary:
            print(st.line(), file=out, flush=True)


def advance(n: int = 1) -> None:
    """Move the innermost open stage by n items (nothing when no stage is open)."""
    st = _OPEN.get()
    if st is not None:
        st.advance(n)


def track(items: Iterable[T], label: str, *, total: int | None = None, unit: str = "items",
          enabled: bool = True) -> Iterator[T]:
    """Iterate over `items` inside a stage, advancing it by one per item."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with stage(label, total, unit=unit, enabled=enabled) as st:
        for item in items:
            yield item
            st.advance()


__all__ = ["Stage", "stage", "advance", "track", "is_terminal"]
