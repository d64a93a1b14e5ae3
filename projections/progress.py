"""Progress of a long replay: one self-rewriting line on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Progress"]

_TERMINAL_EVERY = 0.1
"""Seconds between redraws of the line on a terminal."""
_PLAIN_EVERY = 5.0
"""Seconds between lines when the output is a file or a pipe."""


class Progress:
    """Reports ``done`` of ``total`` items with rate and ETA; call :meth:`update` freely.

    On a terminal the line is redrawn in place (a carriage return) at most ten times a
    second; into a file or a pipe a plain line is written every few seconds. :meth:`finish`
    writes the last line either way.
    """

    def __init__(
        self,
        total: int,
        *,
        label: str = "rebuild",
        out: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.label = label
        self._out = out if out is not None else sys.stderr
        self._terminal = self._out.isatty()
        self._every = _TERMINAL_EVERY if self._terminal else _PLAIN_EVERY
        self._clock = clock
        self._start = clock()
        self._next = self._start + self._every
        self.done = 0

    @property
    def elapsed(self) -> float:
        """Seconds since the start."""
        return self._clock() - self._start

    def update(self, done: int) -> None:
        """Record that ``done`` items are done; redraw if it is time."""
        self.done = done
        now = self._clock()
        if now < self._next:
            return
        self._next = now + self._every
        self._write(self._line(now - self._start))

    def finish(self) -> None:
        """Write the final line: how many, how long, how fast."""
        seconds = self.elapsed
        rate = self.done / seconds if seconds > 0 else 0.0
        self._write(f"{self.label}: {self.done:,} events in {seconds:.2f}s ({rate:,.0f} events/s)")
        if self._terminal:
            self._out.write("\n")
        self._out.flush()

    def _line(self, seconds: float) -> str:
        rate = self.done / seconds if seconds > 0 else 0.0
        share = f" ({self.done / self.total:.0%})" if self.total else ""
        left = max(self.total - self.done, 0)
        eta = f", ETA {left / rate:.0f}s" if rate > 0 else ""
        done = f"{self.done:,} / {self.total:,} events{share}"
        return f"{self.label}: {done}, {rate:,.0f} events/s{eta}"

    def _write(self, line: str) -> None:
        if self._terminal:
            self._out.write(f"\r\x1b[K{line}")
        else:
            self._out.write(f"{line}\n")
        self._out.flush()
