"""Subscriptions: typed, filtered, resumable streams of the events the projections fold.

Two kinds, both on JetStream pull consumers, so a slow reader slows the server down
instead of piling messages up in memory (a push consumer's client buffer grows, and
nats-py drops what overflows):

- :class:`Subscription`: an ordered, gap-free, duplicate-free iterator for one reader.
  It resumes from the last sequence it yielded: after a reconnect, after the server lost
  its consumer, or in a new process that passes ``start=<last sequence>``.
- :class:`DurableSubscription`: a named durable consumer with explicit acks, for processors
  that must see every event at least once; several workers on one name share the load.

Tenant and thread filters run on the server (subject filters); execution and type
filters run here, before the caller sees anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, Literal, Self, TypeVar

import nats.errors
import nats.js.errors
from nats.js import api

from eventlog._nats import ack_tokens, consumer_name
from eventlog.errors import (
    ConvlogError,
    MalformedEventError,
    PermissionDeniedError,
    ValidationError,
)
from eventlog.events import StoredEvent

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Collection, Generator
    from types import TracebackType

    from nats.aio.msg import Msg
    from nats.js import JetStreamContext

    from eventlog._nats import NatsErrors
    from eventlog.connection import ConnectionState
    from eventlog.events import AnyEvent, EventCodec
    from eventlog.subjects import Subjects

__all__ = [
    "Attaching",
    "Delivery",
    "DurableSubscription",
    "EventFilter",
    "Start",
    "Subscription",
    "SubscriptionContext",
    "delivered",
    "server_time",
]

logger = logging.getLogger(__name__)

Start = Literal["new", "beginning"] | int | datetime
"""Where a subscription starts: "new" events only (the default), the "beginning", after a
stream sequence (the resume token: the last sequence already seen), or from a time."""

_FETCH_BATCH = 256
_FETCH_WAIT = 1.0
"""Seconds one fetch waits for events; the loop then simply asks again."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EventFilter:
    """Which events a subscriber wants. Tenant and thread filter on the server."""

    tenant_id: str | None = None
    thread_id: str | None = None
    execution_id: str | None = None
    event_types: Collection[str] | None = None

    def subject(self, subjects: Subjects) -> str:
        """The narrowest subject filter the server can apply."""
        return subjects.matching(self.tenant_id, self.thread_id)

    def accepts(self, event: AnyEvent) -> bool:
        """The filters the server cannot apply: execution and event type."""
        if self.execution_id is not None and event.execution_id != self.execution_id:
            return False
        return self.event_types is None or event.event_type in self.event_types


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


_V1_TOKENS = 9
"""``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>``;
the v2 form puts ``<domain>.<account hash>`` after ``ACK`` and may end with one more token."""


def delivered(msg: Msg) -> tuple[int, datetime, int, int]:
    """``(stream sequence, server time, records pending, consumer sequence)`` of a message.

    Read from its reply subject in one split: ``msg.metadata`` builds four objects per
    message, which a fold of a million records pays for in seconds. The time is truncated
    to microseconds: nats-py's ``metadata.timestamp`` goes through a float and can round up
    past the stored instant, so a subscription started "from" it would miss the record.
    """
    tokens = ack_tokens(msg.reply)
    at = 5 if len(tokens) == _V1_TOKENS else 7  # the stream sequence
    stored = _EPOCH + timedelta(microseconds=int(tokens[at + 2]) // 1000)
    return int(tokens[at]), stored, int(tokens[at + 3]), int(tokens[at + 1])


def server_time(msg: Msg) -> datetime:
    """When the server stored ``msg``, truncated to microseconds (see :func:`delivered`)."""
    return delivered(msg)[1]


def _deliver_from(start: Start) -> dict[str, Any]:
    """Consumer options for a start position."""
    if start == "new":
        return {"deliver_policy": api.DeliverPolicy.NEW}
    if start == "beginning":
        return {"deliver_policy": api.DeliverPolicy.ALL}
    if isinstance(start, datetime):
        return {"deliver_policy": api.DeliverPolicy.BY_START_TIME, "opt_start_time": start}
    if isinstance(start, int) and start >= 0:
        return {"deliver_policy": api.DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": start + 1}
    raise ValidationError(
        f"start must be 'new', 'beginning', a sequence >= 0 or a datetime: {start!r}"
    )


class SubscriptionContext:
    """What both kinds of subscription need from the log."""

    def __init__(
        self,
        js: JetStreamContext,
        *,
        stream: str,
        subjects: Subjects,
        codec: EventCodec,
        connection: ConnectionState,
        errors: NatsErrors,
    ) -> None:
        self.js = js
        self.stream = stream
        self.subjects = subjects
        self.codec = codec
        self.connection = connection
        self.errors = errors

    async def recover(self) -> None:
        """Wait until the client has reconnected, then a moment for JetStream to be ready."""
        await self.connection.wait()
        await asyncio.sleep(0.25)  # retry backoff: the server may still be recovering streams

    def decode(self, msg: Msg) -> StoredEvent | None:
        """The stored event in ``msg``, or None (logged) when it is not a readable event."""
        meta = msg.metadata
        try:
            event = self.codec.decode(msg.data)
        except MalformedEventError as err:
            logger.warning("subscription skips sequence %d: %s", meta.sequence.stream, err)
            return None
        return StoredEvent(
            sequence=meta.sequence.stream,
            time=server_time(msg),
            subject=self.subjects.logical(msg.subject),
            event=event,
        )


_S = TypeVar("_S", "Subscription", "DurableSubscription")


class Attaching(Generic[_S]):
    """What ``subscribe(...)`` returns: await it, or enter it with ``async with``.

    Either way the consumer exists on the server once it is done, so nothing written after
    that point can be missed; ``async with`` also closes it on the way out.
    """

    def __init__(self, subscription: _S) -> None:
        self._subscription: _S = subscription

    def __await__(self) -> Generator[Any, None, _S]:
        return self._attach().__await__()

    async def _attach(self) -> _S:
        await self._subscription.attach()
        return self._subscription

    async def __aenter__(self) -> _S:
        return await self._attach()

    async def __aexit__(self, *exc: object) -> None:
        await self._subscription.close()


class Subscription:
    """An ordered, gap-free iterator of stored events, for one reader.

    Iterate it; ``last_sequence`` is the resume token. With ``follow=False`` the iteration
    ends once it has caught up with the stream. Closing it (or leaving its ``async with``)
    deletes its consumer on the server.
    """

    def __init__(
        self,
        context: SubscriptionContext,
        event_filter: EventFilter,
        start: Start,
        *,
        buffer: int,
        follow: bool,
    ) -> None:
        self._context = context
        self._filter = event_filter
        self._start = start
        self._buffer = buffer
        self._follow = follow
        self._pull: JetStreamContext.PullSubscription | None = None
        self._consumer_sequence = 0
        self._closed = False
        self.last_sequence = start if isinstance(start, int) else 0
        """The stream sequence of the last event this subscription has passed over."""
        self.skipped = 0
        """Records it could not decode (logged, never yielded)."""

    async def attach(self) -> Self:
        """Create the consumer on the server (done once; later calls return at once)."""
        if self._pull is None:
            await self._create(self._start)
        return self

    async def _create(self, start: Start) -> None:
        config = api.ConsumerConfig(
            ack_policy=api.AckPolicy.NONE,
            inactive_threshold=60.0,
            mem_storage=True,
            num_replicas=1,
            **_deliver_from(start),
        )
        with self._context.errors.translating(f"create a consumer on {self._context.stream!r}"):
            self._pull = await self._context.js.pull_subscribe(
                self._filter.subject(self._context.subjects),
                stream=self._context.stream,
                config=config,
                pending_msgs_limit=self._buffer,
            )
        self._consumer_sequence = 0
        self._reconnects = self._context.connection.reconnects

    def __aiter__(self) -> AsyncIterator[StoredEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[StoredEvent]:
        await self.attach()
        while not self._closed:
            batch = await self._fetch()
            if not self._follow and await self._caught_up(batch):
                self._closed = True
            for msg in batch:
                meta = msg.metadata
                if (
                    self._consumer_sequence
                    and meta.sequence.consumer != self._consumer_sequence + 1
                ):
                    logger.warning("subscription saw a gap after sequence %d", self.last_sequence)
                    await self._delete()  # the next fetch starts over after last_sequence
                    break
                self._consumer_sequence = meta.sequence.consumer
                if meta.sequence.stream <= self.last_sequence:
                    continue  # already passed over: a duplicate after re-attaching
                self.last_sequence = meta.sequence.stream
                stored = self._context.decode(msg)
                if stored is None:
                    self.skipped += 1
                elif self._filter.accepts(stored.event):
                    yield stored

    async def _caught_up(self, batch: list[Msg]) -> bool:
        """Whether ``batch`` ends with nothing more pending for this consumer."""
        if batch:
            return batch[-1].metadata.num_pending == 0
        if self._pull is None:
            return False
        with contextlib.suppress(nats.errors.Error):
            return not (await self._pull.consumer_info()).num_pending
        return False

    async def _fetch(self) -> list[Msg]:
        """The next events; a lost or gapped consumer is re-created after last_sequence."""
        try:
            if self._pull is None:
                await self._create(self.last_sequence)
            assert self._pull is not None  # noqa: S101 - just created
            # Never ask for more than the client buffers: nats-py drops what overflows.
            return await self._pull.fetch(min(_FETCH_BATCH, self._buffer), timeout=_FETCH_WAIT)
        except TimeoutError:
            if self._reconnects != self._context.connection.reconnects:
                await self._delete()  # the server may have restarted and lost the consumer
            return []
        except (PermissionDeniedError, ValidationError):
            raise  # permanent: re-attaching would be refused the same way, for ever
        except (nats.errors.Error, ConvlogError) as err:
            # Server restarted, consumer lost, connection back: pick up where we were.
            logger.info("subscription re-attaches after %r", err)
            await self._delete()
            await self._context.recover()
            return []

    async def close(self) -> None:
        """Stop, and delete the consumer on the server."""
        self._closed = True
        await self._delete()

    async def _delete(self) -> None:
        pull, self._pull = self._pull, None
        if pull is None:
            return
        with contextlib.suppress(nats.errors.Error):
            await pull.unsubscribe()
            await self._context.js.delete_consumer(self._context.stream, consumer_name(pull))

    async def __aenter__(self) -> Self:
        return await self.attach()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


class Delivery:
    """One event from a durable subscription; ack it once handled, or it comes again."""

    def __init__(self, stored: StoredEvent, msg: Msg) -> None:
        self.stored = stored
        self._msg = msg

    @property
    def event(self) -> AnyEvent:
        """The event itself."""
        return self.stored.event

    @property
    def attempts(self) -> int:
        """How many times this event has been delivered (1 the first time)."""
        return self._msg.metadata.num_delivered

    async def ack(self) -> None:
        """Mark the event handled; the durable will not deliver it again."""
        await self._msg.ack()

    async def nak(self, delay: float | None = None) -> None:
        """Ask for the event again, after ``delay`` seconds if given."""
        await self._msg.nak(delay=delay)


class DurableSubscription:
    """A named durable consumer: at-least-once delivery with explicit acks.

    Every worker that opens the same name shares one consumer, and so the load. An event
    not acked within ``ack_wait`` (the worker crashed, or was too slow) is delivered
    again, to whichever worker asks next. Handle events idempotently, keyed by
    ``delivery.event.event_id``. Closing a worker leaves the durable in place;
    :meth:`delete` removes it.
    """

    def __init__(
        self,
        context: SubscriptionContext,
        name: str,
        event_filter: EventFilter,
        start: Start,
        *,
        ack_wait: timedelta,
        max_ack_pending: int,
    ) -> None:
        self._context = context
        self.name = name
        self._filter = event_filter
        self._start = start
        self._ack_wait = ack_wait
        self._max_ack_pending = max_ack_pending
        self._pull: JetStreamContext.PullSubscription | None = None
        self._closed = False
        self.skipped = 0
        """Records it could not decode: terminated on the server and logged."""

    async def attach(self) -> Self:
        """Create the durable if it is new, and bind to it."""
        if self._pull is not None:
            return self
        config = api.ConsumerConfig(
            durable_name=self.name,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self._ack_wait.total_seconds(),
            max_ack_pending=self._max_ack_pending,
            **_deliver_from(self._start),
        )
        with self._context.errors.translating(f"open durable {self.name!r}"):
            self._pull = await self._context.js.pull_subscribe(
                self._filter.subject(self._context.subjects),
                durable=self.name,
                stream=self._context.stream,
                config=config,
            )
        return self

    def __aiter__(self) -> AsyncIterator[Delivery]:
        return self._deliveries()

    async def _deliveries(self) -> AsyncIterator[Delivery]:
        await self.attach()
        while not self._closed:
            for msg in await self._fetch():
                stored = self._context.decode(msg)
                if stored is None:
                    self.skipped += 1
                    await msg.term()
                elif not self._filter.accepts(stored.event):
                    await msg.ack()
                else:
                    yield Delivery(stored, msg)

    async def _fetch(self) -> list[Msg]:
        assert self._pull is not None  # noqa: S101 - attach() ran
        try:
            return await self._pull.fetch(_FETCH_BATCH, timeout=_FETCH_WAIT)
        except TimeoutError:
            return []
        except nats.errors.Error as err:
            logger.info("durable %r waits for the server after %r", self.name, err)
            await self._context.recover()
            return []

    async def close(self) -> None:
        """Stop this worker; the durable and its unacked events stay on the server."""
        self._closed = True
        pull, self._pull = self._pull, None
        if pull is not None:
            with contextlib.suppress(nats.errors.Error):
                await pull.unsubscribe()

    async def delete(self) -> None:
        """Remove the durable from the server: its position is forgotten."""
        await self.close()
        with (
            self._context.errors.translating(f"delete durable {self.name!r}"),
            contextlib.suppress(nats.js.errors.NotFoundError),
        ):
            await self._context.js.delete_consumer(self._context.stream, self.name)

    async def __aenter__(self) -> Self:
        return await self.attach()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
