"""Rebuild: replay the stream from sequence 1 into fresh views, and prove they equal the live ones.

:func:`replay` is the one fold over the log that everything else uses: rebuilds, the state
as of a past sequence or time, and the history of a message, a thread or an execution.
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from eventlog import Gap, MissingRecordsError, UnavailableError
from projections._gc import paused_gc
from projections.fold import Projection

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventlog import AnyEvent, EventLog, LogRecord

__all__ = ["Rebuilt", "rebuild", "replay"]


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
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Fold the records stored now (on ``subject``) into ``projection``; return how many.

    Stops before the first record for which ``stop`` is true. ``on_applied`` sees each
    record after it is folded, with its event (None if it was skipped). ``on_progress(done,
    total)`` is called after each record (keep it cheap), ``total`` being ``done`` plus what
    the server still holds on ``subject``: without a ``stop``, the last call has them equal.
    The records are
    folded in :meth:`EventLog.follow`'s callback, as they arrive: no queue between the
    client and the fold. The garbage collector is paused meanwhile (see
    :mod:`projections._gc`). Over the whole stream, a record that does not follow on from
    the last raises :class:`MissingRecordsError` naming the records the stream cannot return.
    """
    count = 0
    finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def fold(record: LogRecord) -> None:
        nonlocal count
        if finished.done():
            return  # the client may deliver a few more before the follower stops
        try:
            if subject is None:
                await _follows_on(log, projection.sequence, record.sequence)
            if stop is not None and stop(record):
                finished.set_result(None)
                return
            applied = projection.apply(record)
            count += 1
            if on_applied is not None:
                on_applied(record, log.codec.decode(record.data) if applied else None)
            if on_progress is not None:
                on_progress(count, count + record.pending)
        except Exception as err:  # noqa: BLE001 - the client would only log it: to the caller
            finished.set_exception(err)
            return
        if record.pending == 0:
            finished.set_result(None)

    with paused_gc(freeze=True):
        follower = await log.follow(fold, start_sequence=projection.sequence + 1, subject=subject)
        try:
            if not await follower.has_nothing():
                await follower.until_done(finished, lambda: projection.sequence)
        finally:
            await follower.stop()
    return count


async def _follows_on(log: EventLog, folded: int, sequence: int) -> None:
    """Raise, naming them, if records between ``folded`` and ``sequence`` were passed over."""
    if sequence <= folded + 1:
        return
    first, last = folded + 1, sequence - 1
    if gaps := await log.missing(first, last):
        raise MissingRecordsError(log.stream.name, gaps)
    raise UnavailableError(
        log.url, f"records {first} to {last} did not arrive, though the server has them; run again"
    )


async def rebuild(
    log: EventLog,
    *,
    until: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Rebuilt:
    """Replay the whole stream, up to ``until`` (default: its end now), into fresh views.

    ``on_progress(done, total)`` is called before the first record and after each, with
    ``total`` the records to fold. Raises :class:`MissingRecordsError` if the stream cannot
    return a record up to there.
    """
    end = await log.last_sequence()
    end = end if until is None else min(until, end)
    report = None
    if on_progress is not None:
        on_progress(0, end)
        report = functools.partial(_of_total, on_progress, end)
    projection = Projection(log.codec, log.subjects)
    start = time.perf_counter()
    events = await replay(
        log, projection, stop=lambda record: record.sequence > end, on_progress=report
    )
    seconds = time.perf_counter() - start
    if projection.sequence < end:  # a tail the stream records but did not deliver
        gaps = await log.gaps(after=projection.sequence, through=end)
        tail = Gap(projection.sequence + 1, end, "recorded by the stream, not delivered")
        raise MissingRecordsError(log.stream.name, gaps or [tail])
    return Rebuilt(
        projection=projection, events=events, seconds=seconds, digest=projection.views.digest()
    )


def _of_total(on_progress: Callable[[int, int], None], total: int, done: int, _: int) -> None:
    """Report ``done`` of the ``total`` a rebuild knows exactly, not the server's estimate."""
    on_progress(done, total)
