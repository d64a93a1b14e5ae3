"""EventLog: the JetStream stream that holds every event, and the only code that writes it.

Appends carry the event id as ``Nats-Msg-Id`` (a retried append is stored once) and, for
optimistic concurrency, the thread subject's expected last sequence. Several events can be
appended as one atomic batch (ADR-50, nats-server >= 2.12). Reads follow the stream with an
ordered push consumer, the fastest way nats-py delivers a stream in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final, Self, TypeVar

import msgspec
import nats.errors
from nats.js import api
from uuid_utils import uuid7

from eventlog._connect import open_client, probe
from eventlog._nats import (
    JS_MESSAGE_TOO_LARGE,
    JS_WRONG_LAST_SEQUENCE,
    ApiError,
    NatsErrors,
    PubAck,
    consumer_name,
    server_at_least,
)
from eventlog.connection import ConnectionState
from eventlog.errors import (
    ConvlogError,
    Gap,
    PayloadTooLargeError,
    UnavailableError,
    ValidationError,
)
from eventlog.events import Event, EventCodec
from eventlog.options import ConnectOptions
from eventlog.stream import NAME, StreamSettings, ensure_stream
from eventlog.subjects import Subjects
from eventlog.subscription import (
    Attaching,
    DurableSubscription,
    EventFilter,
    Start,
    Subscription,
    SubscriptionContext,
    delivered,
)

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext

__all__ = [
    "HEADER_ROOM",
    "EventLog",
    "Follower",
    "LogRecord",
]

logger = logging.getLogger(__name__)

_HEARTBEAT: Final = 2.0
"""Seconds between a reader's questions to its consumer when nothing arrives."""

_IDLE_HEARTBEAT: Final = 0.5
"""Seconds between the server's heartbeats to an idle consumer. The client re-creates its
consumer after two go missing: on a cluster the consumer runs on any replica of the stream,
not on the node the client is connected to, and when that replica stops the client learns
it from these alone (within two seconds, rather than eight at two seconds apart)."""

_STALL: Final = 30.0
"""The least time a reader waits for a consumer that holds records but delivers none."""

_RETRY_SCAN: Final = 64
"""Records after the expected sequence searched for a retried event's own id."""

MAX_BATCH: Final = 1000
"""The server's limit of messages in one atomic batch."""

HEADER_ROOM: Final = 512
"""Bytes of the server's max payload kept for headers: an event may use the rest."""


class LogRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One stored message of the stream, before it is decoded into an event."""

    sequence: int
    time: datetime
    subject: str
    data: bytes
    pending: int = 0
    """How many more records the reader had left to receive when this one arrived."""
    delivery: int = 0
    """Its place among what its consumer delivered (1, 2, ...; 1 again from a new
    consumer): with a filter, the one sequence that shows a record lost on the way."""


_PUB_ACK = msgspec.json.Decoder(PubAck)


class _Identified(msgspec.Struct):
    event_id: str = ""


_IDENTIFIED = msgspec.json.Decoder(_Identified)


def _event_id(data: bytes) -> str:
    """The event id in a record's bytes; "" for a record that is not an event."""
    try:
        return _IDENTIFIED.decode(data).event_id
    except msgspec.DecodeError:
        return ""


OnRecord = Callable[[LogRecord], Awaitable[None]]
_T = TypeVar("_T")


class EventLog:
    """A JetStream stream of convlog events: create or validate, append, read, follow."""

    def __init__(
        self,
        nc: Client,
        *,
        url: str,
        stream: StreamSettings,
        options: ConnectOptions,
        connection: ConnectionState,
        supports_atomic: bool,
    ) -> None:
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream(timeout=options.write_timeout)
        self.url = url
        self.stream = stream
        self.subjects = Subjects(stream.subject_prefix)
        self.codec = EventCodec()
        self._options = options
        self.connection = connection
        self.supports_atomic = supports_atomic
        self.replicas = stream.replicas or 1
        """Copies the stream is kept in, as the server reports it once connected."""
        self.nats_errors = NatsErrors(nc, url, connection)
        """Turns this connection's nats-py failures into convlog errors, for every call."""

    @classmethod
    async def connect(
        cls,
        servers: str | Sequence[str] | None = None,
        *,
        stream: StreamSettings | None = None,
        options: ConnectOptions | None = None,
    ) -> Self:
        """Connect, then create the stream or check that the existing one is fit for use.

        Without ``servers``, those of ``options`` (e.g. NATS_URL, through
        :meth:`ConnectOptions.from_env`).
        """
        stream = stream or StreamSettings()
        options = options or ConnectOptions()
        servers = servers or options.servers
        if not servers:
            raise ValidationError(
                "no NATS server to connect to: pass its URL, or options with servers "
                "(ConnectOptions.from_env() reads NATS_URL)"
            )
        urls = [servers] if isinstance(servers, str) else list(servers)
        url = ",".join(urls)
        await probe(urls, url, options.connect_timeout)
        connection = ConnectionState()
        nc = await open_client(urls, url, options, connection)
        try:
            await connection.on_connected()
            log = cls(
                nc,
                url=url,
                stream=stream,
                options=options,
                connection=connection,
                supports_atomic=server_at_least(nc, 2, 12),
            )
            layout = await ensure_stream(
                log.jetstream, stream, log.nats_errors, atomic=log.supports_atomic
            )
            log.subjects, log.supports_atomic = layout.subjects, layout.atomic
            log.replicas = layout.replicas
        except BaseException:
            await nc.close()  # a cancelled connect too: no client left connected behind
            raise
        return log

    @property
    def max_payload(self) -> int:
        """The largest message the server takes, in bytes."""
        return self._nc.max_payload

    @property
    def client(self) -> Client:
        """The NATS connection, for services that answer beside the stream."""
        return self._nc

    @property
    def jetstream(self) -> JetStreamContext:
        """The connection's JetStream context, for buckets kept beside the stream."""
        return self._js

    @property
    def payload_limit(self) -> int:
        """The largest event this log takes: the server's max payload less header room."""
        return self.max_payload - HEADER_ROOM

    @property
    def write_timeout(self) -> float:
        """Seconds an append waits for its ack before raising UnavailableError."""
        return self._options.write_timeout

    @property
    def is_connected(self) -> bool:
        """Whether the client is connected right now (it reconnects on its own)."""
        return self.connection.is_connected

    async def close(self) -> None:
        """Close the connection; pending acks are abandoned."""
        if not self._nc.is_closed:
            with contextlib.suppress(OSError):  # the server went away: nothing left to flush to
                await self._nc.close()

    # --- writing -------------------------------------------------------------------------

    def encode(self, event: Event) -> bytes:
        """Encode ``event`` and check it against the server's max payload."""
        return self.codec.encode(event, limit=self.payload_limit)

    async def append(
        self,
        event: Event,
        *,
        expected_last_subject_sequence: int | None = None,
        payload: bytes | None = None,
    ) -> int:
        """Append one event and return its stream sequence.

        With ``expected_last_subject_sequence`` the append succeeds only if the thread's
        subject still ends at that sequence (0: the subject must be empty); otherwise it
        raises :class:`ConflictError`. Retrying the same event is safe: the server
        recognises its id and stores it once. ``payload`` is the event's bytes from
        :meth:`encode`, for a caller that already has them.
        """
        if payload is None:
            payload = self.encode(event)
        elif len(payload) > self.payload_limit:
            raise PayloadTooLargeError(len(payload), self.payload_limit)
        subject = self.subjects.thread(event.tenant_id, event.thread_id)
        headers: dict[str, str] = {api.Header.MSG_ID: event.event_id}
        if expected_last_subject_sequence is not None:
            headers[api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE] = str(expected_last_subject_sequence)
        ack = await self._request(subject, payload, headers)
        if ack.error is None:
            return ack.seq
        if ack.error.err_code == JS_WRONG_LAST_SEQUENCE:
            stored = await self._already_stored(
                self.subjects.stored(event.tenant_id, event.thread_id),
                event.event_id,
                after=expected_last_subject_sequence or 0,
            )
            if stored is not None:
                return stored
        raise self._refused(
            ack.error, subject, len(payload), expected=expected_last_subject_sequence or 0
        )

    async def append_batch(
        self,
        events: Sequence[Event],
        *,
        expected: Sequence[int | None] | None = None,
        payloads: Sequence[bytes] | None = None,
    ) -> list[int]:
        """Append events atomically (all or none) and return their stream sequences.

        ``expected[i]`` is the expected last sequence of event i's subject; the server
        checks it only for the first event of each subject in the batch. ``payloads`` are
        the events' bytes from :meth:`encode`, for a caller that already has them.
        """
        expected, payloads = self._checked_batch(events, expected, payloads)
        messages: list[tuple[str, bytes, dict[str, str]]] = []
        seen: set[str] = set()
        for event, payload, expect in zip(events, payloads, expected, strict=True):
            subject = self.subjects.thread(event.tenant_id, event.thread_id)
            headers: dict[str, str] = {api.Header.MSG_ID: event.event_id}
            if expect is not None and subject not in seen:
                headers[api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE] = str(expect)
            seen.add(subject)
            messages.append((subject, payload, headers))
        return await self.publish_batch(messages, size=sum(map(len, payloads)))

    async def publish_batch(
        self, messages: Sequence[tuple[str, bytes, dict[str, str]]], *, size: int
    ) -> list[int]:
        """Publish (subject, payload, headers) messages as one atomic batch; their sequences.

        The headers are each message's own (its id, its expectation); the batch's are added
        here. An expectation counts only on its subject's first message in the batch.
        Any stream that allows atomic batches will do: the id claims use it too.
        """
        count = len(messages)
        batch_id = uuid7().hex
        ack = PubAck()
        for index, (subject, payload, headers) in enumerate(messages, start=1):
            headers[api.Header.BATCH_ID] = batch_id
            headers[api.Header.BATCH_SEQUENCE] = str(index)
            if index < count:
                with self.nats_errors.translating(f"send batch {batch_id}", subject=subject):
                    await self._nc.publish(subject, payload, headers=headers)
                continue
            headers[api.Header.BATCH_COMMIT] = "1"
            ack = await self._request(subject, payload, headers)
        if ack.error is not None:
            raise self._refused(ack.error, f"batch {batch_id}", size)
        if ack.count != count:  # the sequences below would then name the wrong events
            raise ConvlogError(f"batch {batch_id} stored {ack.count} of {count} events")
        return list(range(ack.seq - count + 1, ack.seq + 1))

    def _checked_batch(
        self,
        events: Sequence[Event],
        expected: Sequence[int | None] | None,
        payloads: Sequence[bytes] | None,
    ) -> tuple[Sequence[int | None], Sequence[bytes]]:
        """Check a batch, encoding it if need be, before its first publish: all or nothing."""
        count = len(events)
        if not 0 < count <= MAX_BATCH:
            raise ValidationError(f"a batch holds 1 to {MAX_BATCH} events, not {count}")
        if not self.supports_atomic:
            raise ConvlogError(
                f"stream {self.stream.name!r} does not take atomic batches "
                "(needs nats-server 2.12 or newer and allow_atomic)"
            )
        expected = [None] * count if expected is None else expected
        if len(expected) != count:
            raise ValidationError(f"{len(expected)} expectations given for {count} events")
        if payloads is None:
            return expected, [self.encode(event) for event in events]
        if len(payloads) != count or max(map(len, payloads)) > self.payload_limit:
            raise ValidationError("payloads must be the events' own, each within payload_limit")
        return expected, payloads

    async def _request(self, subject: str, payload: bytes, headers: dict[str, str]) -> PubAck:
        """Publish and await the stream's ack."""
        reply = await self._ask(
            subject,
            payload,
            headers,
            forbidden=f"publish to {subject!r}",
            unanswered=f"no ack within {self._options.write_timeout}s; the append may or may "
            "not have been stored: appending the same event again is safe (its id is "
            "deduplicated), and so is repeating a store call (creates and deletes are "
            "idempotent)",
        )
        return _PUB_ACK.decode(reply.data)

    async def _ask(
        self,
        subject: str,
        payload: bytes,
        headers: dict[str, str] | None,
        *,
        forbidden: str,
        unanswered: str,
    ) -> Msg:
        """A request within the write timeout; every way it can fail as a convlog error."""
        with self.nats_errors.translating(forbidden, subject=subject, unanswered=unanswered):
            return await self._nc.request(
                subject, payload, timeout=self._options.write_timeout, headers=headers
            )

    async def _already_stored(self, subject: str, event_id: str, *, after: int) -> int | None:
        """The sequence of ``event_id`` on ``subject`` after ``after``, if stored (a retry).

        The server checks the expected sequence before its duplicate window, so a retry of
        an append that did land comes back as a conflict; the event then sits among the
        first records after the expected one. Looks at up to ``_RETRY_SCAN`` of them, through
        a consumer filtered on the subject: what a tenant's credentials allow.
        """
        reader = self.read(start_sequence=after + 1, subject=subject)
        async with contextlib.aclosing(reader) as records:
            scanned = 0
            async for record in records:
                if _event_id(record.data) == event_id:
                    return record.sequence
                scanned += 1
                if scanned == _RETRY_SCAN:
                    break
        return None

    def _refused(
        self, error: ApiError, where: str, size: int, *, expected: int | None = None
    ) -> ConvlogError:
        """Why the stream refused an append to ``where`` (a subject or a batch) of ``size``."""
        if error.err_code == JS_MESSAGE_TOO_LARGE:
            return PayloadTooLargeError(size, self.max_payload, what=f"a message to {where}")
        return self.nats_errors.refused(error, f"append to {where}", where=where, expected=expected)

    # --- reading -------------------------------------------------------------------------

    async def last_sequence(self) -> int:
        """The stream's last sequence right now (0 when empty)."""
        with self.nats_errors.translating("read stream info"):
            info = await self._js.stream_info(self.stream.name)
        return info.state.last_seq

    async def gaps(self, *, after: int = 0, through: int | None = None) -> list[Gap]:
        """The sequences after ``after`` (up to ``through``) the stream reports it lacks.

        Those before its first sequence, and those its state lists as deleted or lost (a
        truncated or damaged block): the stream denies deletes, so each is lost data that a
        fold would otherwise wait for forever.
        """
        reply = await self._ask(
            f"$JS.API.STREAM.INFO.{self.stream.name}",
            _DELETED_DETAILS,
            None,
            forbidden=f"read the info of stream {self.stream.name!r}",
            unanswered="stream info got no answer",
        )
        info = _STREAM_INFO.decode(reply.data)
        if info.error is not None:
            raise self.nats_errors.refused(
                info.error, f"read the info of stream {self.stream.name!r}"
            )
        state = info.state
        found: list[Gap] = []
        before_first = min(state.first_seq - 1, state.last_seq if through is None else through)
        if after < before_first:
            found.append(
                Gap(
                    after + 1,
                    before_first,
                    f"before the stream's first sequence, {state.first_seq}",
                )
            )
        why = dict.fromkeys(state.deleted or (), "deleted from its store")
        why.update(dict.fromkeys(state.lost.msgs or () if state.lost else (), "damaged, lost"))
        listed = sorted(s for s in why if after < s and (through is None or s <= through))
        return found + _runs(listed, why)

    async def missing(self, first: int, last: int) -> list[Gap]:
        """Why sequences ``first`` to ``last``, which a consumer passed over, cannot be read.

        What the stream reports (:meth:`gaps`) and, for each span it does not, whether a
        direct get returns its first record: if not, the server counts it but cannot load it
        (a damaged block). [] when the server returns them: the client dropped them.
        """
        reported = await self.gaps(after=first - 1, through=last)
        found = list(reported)
        cursor = first
        for gap in [*reported, Gap(last + 1, last + 1, "")]:
            if cursor < gap.first and not await self._readable(cursor):
                found.append(Gap(cursor, gap.first - 1, "unreadable, the server cannot load it"))
            cursor = gap.last + 1
        return sorted(found)

    async def _readable(self, sequence: int) -> bool:
        """Whether a direct get of ``sequence`` returns a record."""
        reply = await self._ask(
            f"$JS.API.DIRECT.GET.{self.stream.name}",
            msgspec.json.encode({"seq": sequence}),
            None,
            forbidden=f"read sequence {sequence}",
            unanswered="direct get got no answer",
        )
        return "Nats-Sequence" in (reply.headers or {})

    async def last_on_subject(self, subject: str) -> tuple[int, str] | None:
        """``(sequence, event id)`` of the last event on ``subject``, or None if it has none.

        ``subject`` in the published or the stored form, wildcards allowed. A direct get
        with the subject in the API subject, which permissions can check.
        """
        reply = await self._ask(
            f"$JS.API.DIRECT.GET.{self.stream.name}.{self.subjects.filter(subject)}",
            b"",
            None,
            forbidden=f"read {subject!r}",
            unanswered="direct get got no answer",
        )
        headers = reply.headers or {}
        if "Nats-Sequence" not in headers:
            return None
        return int(headers["Nats-Sequence"]), headers.get(api.Header.MSG_ID, "")

    def subscribe(
        self,
        *,
        tenant_id: str | None = None,
        thread_id: str | None = None,
        execution_id: str | None = None,
        event_types: Collection[str] | None = None,
        start: Start = "new",
        follow: bool = True,
        buffer: int = 1024,
    ) -> Attaching[Subscription]:
        """An ordered, gap-free iterator of typed events, filtered; await it or ``async with``.

        ``start``: "new" (default), "beginning", the last sequence already seen (resume), or
        a datetime. With ``follow=False`` the iteration ends once it has caught up. At most
        ``buffer`` events wait in this process; beyond that they wait on the server.

        >>> async with log.subscribe(tenant_id="acme", start="beginning") as events:
        ...     async for stored in events:
        ...         print(stored.sequence, stored.event.event_type)
        """
        event_filter = EventFilter(
            tenant_id=tenant_id,
            thread_id=thread_id,
            execution_id=execution_id,
            event_types=event_types,
        )
        return Attaching(
            Subscription(
                self._subscription_context, event_filter, start, buffer=buffer, follow=follow
            )
        )

    def subscribe_durable(
        self,
        name: str,
        *,
        tenant_id: str | None = None,
        thread_id: str | None = None,
        execution_id: str | None = None,
        event_types: Collection[str] | None = None,
        start: Start = "beginning",
        ack_wait: timedelta = timedelta(seconds=30),
        max_ack_pending: int = 1000,
    ) -> Attaching[DurableSubscription]:
        """A named durable consumer with explicit acks: at-least-once, shared by workers."""
        if not NAME.fullmatch(name):
            raise ValidationError(f"durable name {name!r} must be letters, digits, '_' or '-'")
        event_filter = EventFilter(
            tenant_id=tenant_id,
            thread_id=thread_id,
            execution_id=execution_id,
            event_types=event_types,
        )
        return Attaching(
            DurableSubscription(
                self._subscription_context,
                name,
                event_filter,
                start,
                ack_wait=ack_wait,
                max_ack_pending=max_ack_pending,
            )
        )

    @property
    def _subscription_context(self) -> SubscriptionContext:
        return SubscriptionContext(
            self._js,
            stream=self.stream.name,
            subjects=self.subjects,
            codec=self.codec,
            connection=self.connection,
            errors=self.nats_errors,
        )

    async def follow(
        self, on_record: OnRecord, *, start_sequence: int = 1, subject: str | None = None
    ) -> Follower:
        """Deliver every record from ``start_sequence`` on, in order, to ``on_record``.

        ``subject`` filters, in the published or the stored form (:meth:`Subjects.filter`).
        An ordered push consumer with a callback: much faster than pull ``fetch`` loops, and
        re-created by the client after missed heartbeats (a server restart). ``on_record``
        must be quick: records it cannot keep up with pile up in the client, which drops
        them past its limits; a caller that folds (as the projection does) checks that
        sequences follow on. For a reader that may be slow, use :meth:`read`.
        """
        passed = 0  # deliveries of the current consumer before start_sequence

        async def deliver(msg: Msg) -> None:
            nonlocal passed
            sequence, stored, pending, delivery = delivered(msg)
            if delivery == 1:
                passed = 0  # a new consumer counts from 1
            if sequence < start_sequence:
                passed = delivery
                return  # nats-py re-creates an ordered consumer from 1 if nothing came yet
            await on_record(
                LogRecord(
                    sequence=sequence,
                    time=stored,
                    subject=self.subjects.logical(msg.subject),
                    data=msg.data,
                    pending=pending,
                    delivery=delivery - passed,
                )
            )

        with self.nats_errors.translating("create an ordered consumer"):
            subscription = await self._ordered_consumer(
                self.subjects.filter(subject or self.subjects.all), max(1, start_sequence), deliver
            )
        return Follower(subscription, self)

    async def _ordered_consumer(
        self, subject: str, start_sequence: int, deliver: Callable[[Msg], Awaitable[None]]
    ) -> JetStreamContext.PushSubscription:
        """An ordered push consumer, created by name with its filter in the API subject.

        That form (``$JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>``) is the one a
        tenant's permissions can confine to its own subjects. nats-py then runs it as its
        own ordered consumer (flow control, heartbeats, a re-create after a gap). That
        re-create uses the unnamed form, which a tenant may not have; so a store follows
        again by itself after every reconnect, and when the server refuses that re-create.
        """
        config = api.ConsumerConfig(
            name=f"convlog_{uuid7().hex}",
            filter_subject=subject,
            deliver_subject=self._nc.new_inbox(),
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start_sequence,
            ack_policy=api.AckPolicy.NONE,
            max_deliver=1,
            flow_control=True,
            idle_heartbeat=_IDLE_HEARTBEAT,
            inactive_threshold=300.0,
            num_replicas=1,
            mem_storage=True,
        )
        info = await self._js.add_consumer(self.stream.name, config=config)
        return await self._js.subscribe_bind(
            self.stream.name,
            config=config.evolve(name=None),
            consumer=info.name,
            cb=deliver,
            ordered_consumer=True,
        )

    async def read(
        self, *, start_sequence: int = 1, subject: str | None = None
    ) -> AsyncGenerator[LogRecord]:
        """Yield the records stored now, from ``start_sequence`` up to the current end.

        Records the server cannot return are passed over: a reader that needs every
        sequence checks that they follow on (see :meth:`missing`).
        """
        queue: asyncio.Queue[LogRecord] = asyncio.Queue(maxsize=10_000)
        follower = await self.follow(queue.put, start_sequence=start_sequence, subject=subject)
        last = start_sequence - 1
        try:
            if await follower.has_nothing():
                return
            while True:
                record = queue.get_nowait() if queue.qsize() else await _next(queue, follower, last)
                if record is None:
                    return
                yield record
                last = record.sequence
                if record.pending == 0:
                    return
        finally:
            await follower.stop()


class Follower:
    """A running :meth:`EventLog.follow`; stop it to release the server-side consumer."""

    def __init__(self, subscription: JetStreamContext.PushSubscription, log: EventLog) -> None:
        self._subscription = subscription
        self._url = log.url
        self._js = log.jetstream
        self._stream = log.stream.name
        self._timeout = log.write_timeout
        self._errors = log.nats_errors

    async def position(self) -> tuple[int, int]:
        """``(last stream sequence delivered, records still to deliver)``, from the server."""
        info = await self._info()
        return (info.delivered.stream_seq if info.delivered else 0), info.num_pending or 0

    async def has_nothing(self) -> bool:
        """True when the consumer had nothing to deliver and delivered nothing."""
        info = await self._info()
        delivered = info.delivered.consumer_seq if info.delivered else 0
        return not info.num_pending and not delivered

    async def until_done(self, done: asyncio.Future[_T], last: Callable[[], int]) -> bool:
        """Wait for ``done``; False instead once the consumer has nothing after ``last()``.

        A record's pending count includes records the server counts but cannot load (a
        damaged block), so waiting for it to reach 0 could wait forever. Each heartbeat
        interval without ``done`` this asks the consumer itself. A server that is slow to
        answer (just restarted, or loaded) is asked again; one that delivers nothing for
        ``stall`` seconds (ten write timeouts, at least 30 s) raises UnavailableError.
        """
        stall = max(_STALL, 10 * self._timeout)
        seen, since = last(), time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(done), _HEARTBEAT)
            if done.done():
                return True
            if last() != seen:
                seen, since = last(), time.monotonic()
            stalled = time.monotonic() - since > stall
            try:
                delivered, pending = await self.position()
            except UnavailableError:
                if stalled:
                    raise
                continue  # no answer this time: the records may still be on their way
            if not pending and delivered <= last():
                return False
            if stalled:
                raise UnavailableError(
                    self._url,
                    f"stream {self._stream!r} has {pending} record(s) after sequence {delivered} "
                    f"for this reader, but delivered none within {stall:.0f}s; check the "
                    "server's log for a damaged store",
                )

    async def _info(self) -> api.ConsumerInfo:
        with self._errors.translating("ask the consumer"):  # a restart lost it, say
            return await self._subscription.consumer_info()

    async def stop(self) -> None:
        """Unsubscribe and delete the consumer rather than leave it to time out."""
        with contextlib.suppress(nats.errors.Error):
            await self._subscription.unsubscribe()
        with contextlib.suppress(nats.errors.Error):
            await self._js.delete_consumer(self._stream, consumer_name(self._subscription))


async def _next(queue: asyncio.Queue[LogRecord], follower: Follower, last: int) -> LogRecord | None:
    """The next record from ``queue``; None once the consumer has nothing after ``last``."""
    getting = asyncio.ensure_future(queue.get())
    try:
        if await follower.until_done(getting, lambda: last) or getting.done():
            return getting.result()
        return None
    finally:
        getting.cancel()


def _runs(sequences: Sequence[int], why: dict[int, str]) -> list[Gap]:
    """Sorted ``sequences`` as spans of consecutive ones with the same reason."""
    runs: list[Gap] = []
    for sequence in sequences:
        if runs and runs[-1].last == sequence - 1 and runs[-1].reason == why[sequence]:
            runs[-1] = runs[-1]._replace(last=sequence)
        else:
            runs.append(Gap(sequence, sequence, why[sequence]))
    return runs


class _Lost(msgspec.Struct):
    msgs: list[int] | None = None


class _StreamState(msgspec.Struct):
    first_seq: int = 0
    last_seq: int = 0
    deleted: list[int] | None = None
    lost: _Lost | None = None


class _StreamInfo(msgspec.Struct):
    state: _StreamState = msgspec.field(default_factory=_StreamState)
    error: ApiError | None = None


_STREAM_INFO = msgspec.json.Decoder(_StreamInfo)
_DELETED_DETAILS: Final = msgspec.json.encode({"deleted_details": True})
