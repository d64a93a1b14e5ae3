"""Progress of a long fold or import on stderr: a rich bar on a terminal, a last line always.

Library code reports progress as ``on_progress(done, total)``; this turns those calls into
a bar with rate and ETA (redrawn by rich, gone when done) and then one line that stays:
``LABEL: N events in S s (R events/s)``. Into a file or a pipe only that line is written.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from projections.cli.render import console

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from rich.progress import Task

__all__ = ["progress_on_stderr"]


class _Rate(ProgressColumn):
    """Events per second, as rich measures the task's speed."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0:,.0f} events/s")


@contextlib.contextmanager
def progress_on_stderr(label: str) -> Iterator[Callable[[int, int], None]]:
    """Yield an ``on_progress(done, total)`` that draws on stderr; write the last line after."""
    err = console("auto", stderr=True)
    bar = Progress(
        TextColumn(f"{label}:"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        _Rate(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    task = bar.add_task(label, total=None)
    done = 0

    def on_progress(now_done: int, total: int) -> None:
        nonlocal done
        done = now_done
        bar.update(task, completed=now_done, total=total)

    start = time.monotonic()
    with bar:
        yield on_progress
    seconds = time.monotonic() - start
    rate = done / seconds if seconds > 0 else 0.0
    err.print(f"{label}: {done:,} events in {seconds:.2f}s ({rate:,.0f} events/s)")
