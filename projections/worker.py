"""The projection worker: follows the stream into the views and tells waiters how far it got.

Writers wait on :meth:`ProjectionWorker.wait_for` with the sequence their append returned,
which is how a store reads its own writes. If the fold itself breaks (a bug, not a bad
event: bad events are skipped and counted), the worker stops and every waiter, and every
later caller, gets a :class:`~eventlog.ProjectionError` instead of a silently stale view.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from typing import TYPE_CHECKING

from eventlog import (
    ConvlogError,
    Gap,
    LogRecord,
    MissingRecordsError,
    ProjectionError,
    UnavailableError,
)

if TYPE_CHECKING:
    from eventlog import EventLog
    from eventlog.log import Follower
    from projections.fold import Projection

__all__ = ["ProjectionWorker"]

logger = logging.getLogger(__name__)

_REFOLLOW_TRIES = 120
"""Attempts, 0.25 s apart, to follow the stream again after a reconnect or a gap."""

_ASK_TRIES = 3
"""Times a consumer is asked its position when reconnects keep losing the question."""


class ProjectionWorker:
    """Runs a :class:`Projection` over an :class:`EventLog`, from where the projection stands.

    ``subject`` narrows what it follows (a tenant's subjects); None follows the whole stream.
    """

    def __init__(
        self, log: EventLog, projection: Projection, *, subject: str | None = None
    ) -> None:
        self._log = log
        self.projection = projection
        self._subject = subject
        self._delivered = 0
        """The consumer sequence of the last record the consumer delivered and we took."""
        self._caught_up_to = 0
        """The last record folded that had nothing after it on the server when it came."""
        self._idle = asyncio.Event()
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._tiebreak = itertools.count()
        self._follower: Follower | None = None
        self._refollowing: asyncio.Task[None] | None = None
        self._refollowed_from: int | None = None
        """Where the projection last followed again after a jump."""
        self.failure: ProjectionError | None = None
        self.last_progress = time.monotonic()
        """When the views last moved forward (monotonic seconds)."""

    async def start(self) -> None:
        """Start following the stream after the last sequence already folded.

        Following the whole stream, it first asks which records after that the stream
        reports it lacks: a fold that needs them raises :class:`MissingRecordsError` at once.
        """
        if self._subject is None and (gaps := await self._log.gaps(after=self.projection.sequence)):
            raise MissingRecordsError(self._log.stream.name, gaps)
        self._follower = await self._follow()
        self._log.connection.when_reconnected(self._reconnected)
        self._log.connection.when_denied(self._denied)

    async def _follow(self) -> Follower:
        return await self._log.follow(
            self._on_record, start_sequence=self.projection.sequence + 1, subject=self._subject
        )

    def _denied(self, subject: str) -> None:
        """Follow again (named) when the server refuses nats-py's re-create of our consumer.

        nats-py re-creates an ordered consumer after a gap in the unnamed API form, which a
        tenant's permissions do not allow.
        """
        if subject.startswith("$js.api.consumer.create."):
            self._reconnected()

    def _reconnected(self) -> None:
        """After a reconnect, follow again at once rather than wait for missed heartbeats."""
        if self.failure is None and (self._refollowing is None or self._refollowing.done()):
            self._refollowing = asyncio.create_task(self._restart_follower())

    async def stop(self) -> None:
        """Stop following; waiters still pending, and later writers, get a ProjectionError."""
        if self._refollowing is not None:
            self._refollowing.cancel()
        if self._follower is not None:
            await self._follower.stop()
            self._follower = None
        self.failure = self.failure or ProjectionError("the store was closed")
        self._release(self.failure)

    def fold_own(self, record: LogRecord) -> None:
        """Fold a record this process just appended, if it is the very next one.

        Then a writer need not wait for the stream to deliver its own event back; the
        delivery that follows is recognised by its sequence and skipped. A record with
        others' records before it is left for the stream to deliver in order.
        """
        if self.failure is None and record.sequence == self.projection.sequence + 1:
            self._fold(record)

    async def _on_record(self, record: LogRecord) -> None:
        if self._subject is None and record.sequence > self.projection.sequence + 1:
            # The stream is ours alone and never deletes, so a jump means the client lost
            # records (it drops on overflow), or the server cannot return them.
            self._jumped(record.sequence)
            return
        if self._subject is not None and record.delivery not in (1, self._delivered + 1):
            # Filtered, stream sequences skip others' records; the consumer's own do not.
            self._jumped(record.sequence)
            return
        self._delivered = record.delivery
        self._fold(record)
        if record.pending == 0:
            self._caught_up_to = record.sequence
            self._wake_idle()

    def _wake_idle(self) -> None:
        self._idle.set()
        self._idle = asyncio.Event()

    def _jumped(self, seen: int) -> None:
        if self._refollowing is None or self._refollowing.done():
            self._refollowing = asyncio.create_task(
                self._recover(self.projection.sequence + 1, seen - 1)
            )

    async def _recover(self, first: int, last: int) -> None:
        """Fail, naming them, if the stream cannot return ``first`` to ``last``; else follow again.

        Following again from where the last one jumped as well means the server will not
        deliver them either: that fails too, rather than loop.
        """
        try:
            gaps = await self._log.missing(first, last)
        except ConvlogError as err:  # the server is away: following again retries until back
            logger.info("projection cannot ask which records are missing: %s", err)
            await self._restart_follower()
            return
        if not gaps and self._refollowed_from == first:
            gaps = [Gap(first, last, "passed over by every consumer")]
        if gaps:
            self.failure = MissingRecordsError(self._log.stream.name, gaps)
            self._release(self.failure)
            return
        logger.warning("projection missed sequences %d to %d; following again", first, last)
        self._refollowed_from = first
        await self._restart_follower()

    async def _restart_follower(self) -> None:
        """Follow again from the first record not folded, retrying while JetStream recovers."""
        if self._follower is not None:
            await self._follower.stop()
            self._follower = None
        for _ in range(_REFOLLOW_TRIES):
            try:
                self._follower = await self._follow()
            except ConvlogError as err:
                logger.info("projection cannot follow yet: %s", err)
                await asyncio.sleep(0.25)  # retry backoff while the server recovers its streams
            else:
                return
        self.failure = ProjectionError("could not follow the stream again after a reconnect")
        self._release(self.failure)

    def _fold(self, record: LogRecord) -> None:
        if self.failure is not None:
            return
        try:
            self.projection.apply(record)
        except Exception as err:
            logger.exception("projection failed at stream sequence %d", record.sequence)
            self.failure = ProjectionError(f"folding failed: {err!r}", record.sequence)
            self.failure.__cause__ = err
            self._release(self.failure)
            return
        self.last_progress = time.monotonic()
        self._release()

    def _release(self, error: ProjectionError | None = None) -> None:
        """Resolve every waiter whose sequence is folded (or all of them, with ``error``)."""
        reached = self.projection.sequence
        while self._waiters and (error is not None or self._waiters[0][0] <= reached):
            _, _, future = heapq.heappop(self._waiters)
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
        if error is not None:
            self._wake_idle()

    async def wait_for(self, sequence: int) -> None:
        """Return once the views have folded ``sequence``; raise if the projection failed."""
        if self.failure is not None:
            raise self.failure
        if self.projection.sequence >= sequence:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (sequence, next(self._tiebreak), future))
        await future

    async def caught_up(self) -> None:
        """Return once the views hold every record the server had for us when called.

        Asks the consumer how far it delivered and how much it still has: with a filter
        (a tenant's or a partition's store) the stream's last sequence says nothing about
        our subjects, and the consumer's position passes over others' records too, so the
        last record that is ours is as far as the views can get.
        """
        delivered, pending = await self._position()
        while pending and self._caught_up_to <= delivered:
            idle = self._idle
            await idle.wait()
            if self.failure is not None:
                raise self.failure
        if self._subject is not None:
            ours = await self._log.last_on_subject(self._subject)
            delivered = 0 if ours is None else min(delivered, ours[0])
        await self.wait_for(delivered)

    async def _position(self) -> tuple[int, int]:
        """The consumer's position; asked again after a reconnect lost the question."""
        for _ in range(_ASK_TRIES - 1):
            try:
                return await (await self._current_follower()).position()
            except UnavailableError:
                if self.failure is not None:
                    raise
                await self._log.connection.wait()  # the follower is made again once back
        return await (await self._current_follower()).position()

    async def pending(self) -> int | None:
        """Records the server still has to deliver to us; None while not following."""
        if self._follower is None:
            return None
        return (await self._follower.position())[1]

    async def _current_follower(self) -> Follower:
        while self._follower is None:
            if self.failure is not None:
                raise self.failure
            if self._refollowing is None:
                msg = "the projection is not following the stream"
                raise ProjectionError(msg)
            await asyncio.shield(self._refollowing)
        return self._follower
