"""What training shows on stderr: a rich progress bar (on a terminal) and one line per epoch."""
from __future__ import annotations

import contextlib
import sys
from typing import Any, Callable, Iterator


class Bar:
    """One bar per epoch, replaced when the next epoch starts; `start` returns the per-batch advance (or None)."""

    def __init__(self, progress, total: int):
        self.progress, self.total, self.task = progress, total, None

    def start(self, label: str) -> Callable[[], None] | None:
        if self.progress is None:
            return None
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(label, total=self.total)
        return lambda: self.progress.advance(self.task)


@contextlib.contextmanager
def progress_bar(enabled: bool, total: int) -> Iterator[Bar]:
    if not (enabled and sys.stderr.isatty()):
        yield Bar(None, total)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as p:
        yield Bar(p, total)


def report_epoch(row: dict[str, Any], epochs: int) -> None:
    val = f"  val {row['val_loss']:.4f}" if "val_loss" in row else ""
    units = f"  active units {row['active_units']}/{len(row['kl_per_dim'])}" if "active_units" in row else ""
    print(f"epoch {row['epoch']}/{epochs}  train {row['train_loss']:.4f} (recon {row['train_recon']:.4f}, "
          f"kl {row['train_kl']:.4f}){val}{units}  {row['seconds']:.1f}s", file=sys.stderr, flush=True)
