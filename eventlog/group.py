"""Group commit: concurrent appends coalesced into atomic batches, one fsync for many.

With ``sync_interval: always`` every publish waits for its own fsync; an atomic batch of
hundreds (ADR-50) waits for one. Appends queue while a batch is in flight and go together
in the next (:class:`Coalescer`, which the id claims use too). An append is a *unit* of one
or more events that must be stored together (a transaction's), never split. A batch is all
or nothing, so a batch the server refuses (a unit's expected sequence no longer holds, an
event id already stored) is split in halves by unit and each half tried again, down to
single units, which get their own answer: one conflicting write never fails its
neighbours. A batch that gets no answer fails whole with :class:`UnavailableError`; it may
or may not be stored, and appending the same events again is safe (their ids are
deduplicated).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Generic, TypeVar

from eventlog.errors import ConvlogError, UnavailableError
from eventlog.log import MAX_BATCH, LogRecord

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection, Sequence

    from eventlog.events import Event
    from eventlog.log import EventLog

__all__ = ["ATOMIC_FROM", "Coalescer", "GroupCommit", "Pending", "Unit"]

logger = logging.getLogger(__name__)

_IN_FLIGHT: Final = 2
"""Batches awaiting their ack at once: the next one is built while the last is fsynced."""
ATOMIC_FROM: Final = 16
"""Single appends at once from which one atomic batch beats as many sent side by side.

nats-server stages an R1 atomic batch on disk before it commits it, a fixed cost of about
ten single fsyncs (measured on 2.15.1): a batch of a few would wait longer than its
appends made side by side, each answered on its own."""

T = TypeVar("T")
R = TypeVar("R")


@dataclass(slots=True)
class Pending(Generic[T, R]):
    """One submitted item and the future its submitter waits on."""

    item: T
    done: asyncio.Future[R]

    def settle(self, result: R | None = None, error: BaseException | None = None) -> None:
        """Resolve it, unless its submitter gave up (cancelled) meanwhile."""
        if self.done.done():
            return
        if error is not None:
            self.done.set_exception(error)
        else:
            self.done.set_result(result)  # type: ignore[arg-type] # R given when no error


class Coalescer(Generic[T, R]):
    """Items submitted while a batch is in flight go together in the next one.

    ``commit`` settles every item of the batch it is given. A batch holds queued items in
    order, no two sharing one of their ``keys`` (the subjects a server checks only once per
    batch), up to ``limit`` in total ``size``; an item that must wait keeps its place. An
    item submitted when nothing is queued or in flight is committed at once in its
    caller's task: no task, no hop.
    """

    def __init__(
        self,
        commit: Callable[[list[Pending[T, R]]], Awaitable[None]],
        *,
        keys: Callable[[T], Collection[str]],
        size: Callable[[T], int] = lambda _: 1,
        limit: int = MAX_BATCH,
    ) -> None:
        self._commit = commit
        self._keys = keys
        self._size = size
        self._limit = limit
        self._queue: collections.deque[Pending[T, R]] = collections.deque()
        self._draining = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def idle(self) -> bool:
        """Nothing queued and no batch in flight."""
        return not self._queue and self._draining == 0

    async def submit(self, item: T) -> R:
        """Commit ``item`` with whatever comes meanwhile; what its commit settled it with."""
        pending: Pending[T, R] = Pending(item, asyncio.get_running_loop().create_future())
        if self._draining == 0 and not self._queue:
            self._draining += 1
            try:
                await self._committed([pending])
            finally:
                self._draining -= 1
            return await pending.done
        self._queue.append(pending)
        if self._draining < _IN_FLIGHT:
            self._draining += 1
            task = asyncio.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await pending.done

    async def _drain(self) -> None:
        """Commit what is queued, batch after batch, until the queue is empty."""
        batch: list[Pending[T, R]] = []
        try:
            while self._queue:
                batch = self._take()
                await self._committed(batch)
        except asyncio.CancelledError:  # the loop is closing: nobody may wait forever
            for pending in [*batch, *self._queue]:
                pending.done.cancel()
            raise
        finally:
            self._draining -= 1  # at once, not in a done callback: no item may go unseen

    def _take(self) -> list[Pending[T, R]]:
        """The next batch from the queue; what cannot go in it stays queued, in order."""
        queue = self._queue
        batch: list[Pending[T, R]] = []
        taken: set[str] = set()
        skipped: list[Pending[T, R]] = []
        total = 0
        while queue and total < self._limit:
            pending = queue.popleft()
            size = self._size(pending.item)
            if total + size > self._limit:
                queue.appendleft(pending)
                break
            keys = self._keys(pending.item)
            clear = taken.isdisjoint(keys)
            taken.update(keys)  # a skipped item's keys too: nothing after it may overtake it
            if not clear:
                skipped.append(pending)
                continue
            batch.append(pending)
            total += size
        queue.extendleft(reversed(skipped))
        return batch

    async def _committed(self, batch: list[Pending[T, R]]) -> None:
        try:
            await self._commit(batch)
        except Exception as err:  # a bug: these submitters get it, later ones go on
            logger.exception("a commit of %d items failed", len(batch))
            for pending in batch:
                pending.settle(error=err)


@dataclass(slots=True)
class Unit:
    """Events stored together or not at all, and what each expects of its subject."""

    events: Sequence[Event]
    payloads: Sequence[bytes]
    subjects: Sequence[str]
    expected: Sequence[int | None]
    """Per event: its subject's expected last sequence (None: not checked)."""


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
        self._units: Coalescer[Unit, list[int]] = Coalescer(
            self._commit,
            keys=lambda unit: unit.subjects,
            size=lambda unit: len(unit.events),
            limit=max_batch,
        )
        self.batches = 0
        """Batches of more than one unit committed (a measure of how much was grouped)."""

    @property
    def idle(self) -> bool:
        """Nothing queued and no batch in flight: it has not wedged."""
        return self._units.idle

    async def append(self, event: Event, *, expected: int | None, payload: bytes) -> int:
        """Append ``event`` (its bytes ``payload``) in the next batch; return its sequence.

        Raises what :meth:`EventLog.append` raises for this event alone.
        """
        subject = self._log.subjects.thread(event.tenant_id, event.thread_id)
        (sequence,) = await self._units.submit(Unit((event,), (payload,), (subject,), (expected,)))
        return sequence

    async def append_unit(
        self, events: Sequence[Event], *, expected: Sequence[int | None], payloads: Sequence[bytes]
    ) -> list[int]:
        """Append ``events`` together, all or none, in the next batch; their sequences.

        ``expected[i]`` is checked only for the first event of each subject. A refusal
        (a conflict, say) is raised for the unit as a whole.
        """
        if not 0 < len(events) <= self._max_batch:
            raise ConvlogError(f"a unit holds 1 to {self._max_batch} events, not {len(events)}")
        subjects = [self._log.subjects.thread(e.tenant_id, e.thread_id) for e in events]
        return await self._units.submit(Unit(events, payloads, subjects, expected))

    async def _commit(self, batch: list[Pending[Unit, list[int]]]) -> None:
        if 1 < len(batch) < ATOMIC_FROM and all(len(p.item.events) == 1 for p in batch):
            # A few single appends go side by side: a small atomic batch waits longer.
            await asyncio.gather(*(self._commit([pending]) for pending in batch))
            return
        events = [event for pending in batch for event in pending.item.events]
        try:
            if len(events) == 1:
                unit = batch[0].item
                sequences = [
                    await self._log.append(
                        unit.events[0],
                        expected_last_subject_sequence=unit.expected[0],
                        payload=unit.payloads[0],
                    )
                ]
            else:
                sequences = await self._log.append_batch(
                    events,
                    expected=[e for pending in batch for e in pending.item.expected],
                    payloads=[p for pending in batch for p in pending.item.payloads],
                )
        except UnavailableError as err:
            for pending in batch:
                pending.settle(error=err)
            return
        except ConvlogError as err:
            if len(batch) == 1:
                batch[0].settle(error=err)
                return
            half = len(batch) // 2
            await self._commit(batch[:half])
            await self._commit(batch[half:])
            return
        if len(batch) > 1:
            self.batches += 1
        self._stored(batch, sequences)

    def _stored(self, batch: Sequence[Pending[Unit, list[int]]], sequences: Sequence[int]) -> None:
        start = 0
        records: list[LogRecord] = []
        for pending in batch:
            unit = pending.item
            mine = sequences[start : start + len(unit.events)]
            start += len(unit.events)
            records.extend(
                LogRecord(sequence=sequence, time=event.occurred_at, subject=subject, data=data)
                for sequence, event, subject, data in zip(
                    mine, unit.events, unit.subjects, unit.payloads, strict=True
                )
            )
        if self._on_stored is not None:
            self._on_stored(records)
        start = 0
        for pending in batch:
            count = len(pending.item.events)
            pending.settle(list(sequences[start : start + count]))
            start += count
