"""Rebuild: replay the stream from sequence 1 into fresh views, and prove they equal the live ones.

:func:`replay` is the one fold over the log that everything else uses: rebuilds, the state
as of a past sequence or time, and the history of a message, a thread or an execution.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from eventlog import ConvlogError
from projections._gc import paused_gc
from projections.views import Projection

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventlog import AnyEvent, EventLog, LogRecord
    from projections.progress import Progress

__all__ = ["RebuildMismatchError", "Rebuilt", "rebuild", "replay"]


class RebuildMismatchError(ConvlogError):
    """Views rebuilt from the log differ from the live views at the same sequence."""

    def __init__(self, sequence: int, live: str, rebuilt: str) -> None:
        self.sequence = sequence
        self.live = live
        self.rebuilt = rebuilt
        super().__init__(
            f"the views rebuilt from the log differ from the live views at sequence {sequence} "
            f"(live digest {live}, rebuilt {rebuilt}); the live views did not come from the "
            "log alone, or the fold is not deterministic: keep both and report it."
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Rebuilt:
    """Fresh views folded from the log, and what it took."""

    projection: Projection
    events: int
    seconds: float
    digest: str

    @property
    def sequence(self) -> int:
        """The last stream sequence folded."""
        return self.projection.sequence

    @property
    def rate(self) -> float:
        """Events folded per second."""
        return self.events / self.seconds if self.seconds > 0 else 0.0


async def replay(
    log: EventLog,
    projection: Projection,
    *,
    subject: str | None = None,
    stop: Callable[[LogRecord], bool] | None = None,
    on_applied: Callable[[LogRecord, AnyEvent | None], None] | None = None,
    progress: Progress | None = None,
) -> int:
    """Fold the records stored now (on ``subject``) into ``projection``; return how many.

    Stops before the first record for which ``stop`` is true. ``on_applied`` sees each
    record after it is folded, with its event (None if it was skipped). The records are
    folded in :meth:`EventLog.follow`'s callback, as they arrive: no queue between the
    client and the fold. The garbage collector is paused meanwhile (see
    :mod:`projections._gc`).
    """
    count = 0
    finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def fold(record: LogRecord) -> None:
        nonlocal count
        if finished.done():
            return  # the client may deliver a few more before the follower stops
        try:
            if stop is not None and stop(record):
                finished.set_result(None)
                return
            applied = projection.apply(record)
            count += 1
            if on_applied is not None:
                on_applied(record, log.codec.decode(record.data) if applied else None)
            if progress is not None:
                progress.update(count)
        except Exception as err:  # noqa: BLE001 - the client would only log it: to the caller
            finished.set_exception(err)
            return
        if record.pending == 0:
            finished.set_result(None)

    with paused_gc(freeze=True):
        follower = await log.follow(fold, start_sequence=projection.sequence + 1, subject=subject)
        try:
            if not await follower.has_nothing():
                await finished
        finally:
            await follower.stop()
    return count


async def rebuild(
    log: EventLog, *, until: int | None = None, progress: Progress | None = None
) -> Rebuilt:
    """Replay the whole stream, up to ``until`` (default: its end now), into fresh views."""
    end = await log.last_sequence() if until is None else until
    if progress is not None:
        progress.total = end
    projection = Projection(log.codec, log.subjects)
    start = time.perf_counter()
    events = await replay(
        log, projection, stop=lambda record: record.sequence > end, progress=progress
    )
    seconds = time.perf_counter() - start
    if progress is not None:
        progress.finish()
    return Rebuilt(
        projection=projection, events=events, seconds=seconds, digest=projection.views.digest()
    )
