"""Shared by the fault and soak tests: repeat a write until a restarted server takes it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, TypeVar

from eventlog import UnavailableError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from eventlog import ConnectionState

T = TypeVar("T")


class Retried:
    """How many calls :func:`until_acknowledged` made in all, and how many of them failed."""

    def __init__(self) -> None:
        self.calls = 0
        self.unavailable = 0


async def until_acknowledged(
    call: Callable[[], Awaitable[T]],
    connection: ConnectionState,
    *,
    seconds: float = 60.0,
    retried: Retried | None = None,
) -> T:
    """Repeat ``call`` until it returns; give up with its last error after ``seconds``.

    Repeating is safe: an append of the same event is stored once (its id is the msg id),
    and a repeated store call is a no-op once the first landed. A restarted server accepts
    connections before JetStream has recovered its streams, so each failure waits for the
    connection to be up and tries again, paced by the call's own write timeout: the way
    the first fault tests did it, with a deadline instead of a count.
    """
    deadline = time.monotonic() + seconds
    counts = retried or Retried()
    while True:
        counts.calls += 1
        try:
            return await call()
        except UnavailableError:
            counts.unavailable += 1
            if time.monotonic() > deadline:
                raise
            await connection.wait()


def report(scenario: str, **counts: int) -> None:
    """One line of counts per scenario, shown with ``pytest -s`` and quoted in run notes."""
    print(f"[{scenario}] " + " ".join(f"{name}={value}" for name, value in counts.items()))  # noqa: T201
