"""Group commit: concurrent appends coalesced into atomic batches, one fsync for many.

With ``sync_interval: always`` every publish waits for its own fsync; an atomic batch of
hundreds (ADR-50) waits for one. Appends queue while a batch is in flight and go together
in the next. A batch is all or nothing, so a batch the server refuses (an append's
expected sequence no longer holds, an event id already stored) is split in halves and
each half tried again, down to single appends, which take the plain path and get their
own answer: one conflicting write never fails its neighbours. A batch that gets no answer
fails whole with :class:`UnavailableError`; it may or may not be stored, and appending the
same events again is safe (their ids are deduplicated).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from eventlog.errors import ConvlogError, UnavailableError
from eventlog.log import MAX_BATCH, LogRecord

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from eventlog.events import Event
    from eventlog.log import EventLog

__all__ = ["GroupCommit"]

logger = logging.getLogger(__name__)

_IN_FLIGHT: Final = 2
"""Batches awaiting their ack at once: the next one is built while the last is fsynced."""


@dataclass(slots=True)
class _Append:
    event: Event
    payload: bytes
    subject: str
    expected: int | None
    done: asyncio.Future[int]


class GroupCommit:
    """Appends to an :class:`EventLog`, gathered into atomic batches when they come together.

    ``on_stored`` gets the records of each committed batch in stream order, at once: a
    store folds them into its views without waiting for the stream to deliver them back.
    """

    def __init__(
        self,
        log: EventLog,
        *,
        on_stored: Callable[[Sequence[LogRecord]], None] | None = None,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._log = log
        self._on_stored = on_stored
        self._max_batch = max_batch
        self._queue: collections.deque[_Append] = collections.deque()
        self._draining = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0
        """Batches of more than one append committed (a measure of how much was grouped)."""

    async def append(self, event: Event, *, expected: int | None, payload: bytes) -> int:
        """Append ``event`` (its bytes ``payload``) in the next batch; return its sequence.

        Raises what :meth:`EventLog.append` raises for this event alone.
        """
        subject = self._log.subjects.thread(event.tenant_id, event.thread_id)
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        pending = _Append(event, payload, subject, expected, done)
        if self._draining == 0 and not self._queue:
            # Alone: nothing to group with, so append right here, sparing a task and its
            # hops; writers that come meanwhile queue up and form the next batch.
            self._draining += 1
            try:
                await self._commit_one(pending)
            finally:
                self._draining -= 1
            return await done
        self._queue.append(pending)
        if self._draining < _IN_FLIGHT:
            self._draining += 1
            task = asyncio.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await done

    async def _drain(self) -> None:
        """Commit what is queued, batch after batch, until the queue is empty."""
        batch: list[_Append] = []
        try:
            while self._queue:
                batch = self._take()
                try:
                    await self._commit(batch)
                except Exception as err:  # a bug: these writers get it, later ones go on
                    logger.exception("group commit of %d appends failed", len(batch))
                    for pending in batch:
                        _settle(pending.done, error=err)
        except asyncio.CancelledError:  # the loop is closing: nobody may wait forever
            for pending in [*batch, *self._queue]:
                pending.done.cancel()
            raise
        finally:
            self._draining -= 1  # at once, not in a done callback: no append may go unseen

    def _take(self) -> list[_Append]:
        """The next batch: queued appends in order, one per subject.

        The server checks an expected sequence only on a subject's first message in a batch.
        """
        batch: list[_Append] = []
        subjects: set[str] = set()
        skipped: list[_Append] = []
        while self._queue and len(batch) < self._max_batch:
            pending = self._queue.popleft()
            if pending.subject in subjects:
                skipped.append(pending)
                continue
            subjects.add(pending.subject)
            batch.append(pending)
        self._queue.extendleft(reversed(skipped))
        return batch

    async def _commit(self, batch: list[_Append]) -> None:
        if len(batch) == 1:
            await self._commit_one(batch[0])
            return
        try:
            sequences = await self._log.append_batch(
                [pending.event for pending in batch],
                expected=[pending.expected for pending in batch],
                payloads=[pending.payload for pending in batch],
            )
        except UnavailableError as err:
            for pending in batch:
                _settle(pending.done, error=err)
            return
        except ConvlogError:
            half = len(batch) // 2
            await self._commit(batch[:half])
            await self._commit(batch[half:])
            return
        self.batches += 1
        self._stored(batch, sequences)

    async def _commit_one(self, pending: _Append) -> None:
        try:
            sequence = await self._log.append(
                pending.event,
                expected_last_subject_sequence=pending.expected,
                payload=pending.payload,
            )
        except ConvlogError as err:
            _settle(pending.done, error=err)
            return
        self._stored([pending], [sequence])

    def _stored(self, batch: Sequence[_Append], sequences: Sequence[int]) -> None:
        if self._on_stored is not None:
            self._on_stored(
                [
                    LogRecord(
                        sequence=sequence,
                        time=pending.event.occurred_at,
                        subject=pending.subject,
                        data=pending.payload,
                    )
                    for pending, sequence in zip(batch, sequences, strict=True)
                ]
            )
        for pending, sequence in zip(batch, sequences, strict=True):
            _settle(pending.done, result=sequence)


def _settle(
    future: asyncio.Future[int], *, result: int = 0, error: BaseException | None = None
) -> None:
    """Resolve a waiting append, unless its caller gave up (cancelled) meanwhile."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
