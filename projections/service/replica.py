"""A replica: the partitions one ``convlog serve`` folds, each answering its endpoints.

Each partition is a :class:`~projections.store.JetStreamMessageStore` confined to it, all
on one connection. A partition registers its micro service only once its views have caught
up with the stream, so no half-built view answers; replicas that hold the same partition
share its requests through the queue group. Writes are decided here, by a replica that
holds the thread's partition, with the store's rules, optimistic concurrency and group
commit (see the README's "As a service").
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import msgspec
import nats.errors
from nats.micro import add_service

from eventlog import (
    ConvlogError,
    EventLog,
    Message,
    NotFoundError,
    Thread,
    UnavailableError,
    ValidationError,
)
from eventlog.wire import MessageData, ThreadData
from projections.commands import utc_now
from projections.service import protocol
from projections.service.protocol import (
    ERROR_HEADER,
    PARTITION_HEADER,
    RANKS_HEADER,
    SEQUENCE_HEADER,
    SERVICE_NAME,
    ServiceSubjects,
    error_reply,
)
from projections.store import JetStreamMessageStore

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
    from datetime import datetime

    from nats.micro.request import Request
    from nats.micro.service import Service

    from projections.audit import AuditEntry, ExecutionTrail
    from projections.health import Health
    from projections.snapshot import SnapshotPolicy

    _Answer: TypeAlias = Callable[[Any], Awaitable[bytes | tuple[bytes, dict[str, str]]]]

__all__ = ["Replica", "parse_partitions"]

logger = logging.getLogger(__name__)

_WRITE_AT: contextvars.ContextVar[datetime | None] = contextvars.ContextVar(
    "convlog_write_at", default=None
)
"""The time the request being decided gave, if any: the clock of a write task."""

_MAX_IN_FLIGHT: Final = 4096
"""Requests a replica works on at once; more wait in the client library's buffer."""

_OPENING: Final = 4
"""Partitions that catch up at once when a replica starts."""

_VERSION: Final = "0.1.0"

_SEVERITY: Final = {"ok": 0, "degraded": 1, "failed": 2}

_THREAD = msgspec.json.Decoder(ThreadData)
_MESSAGE = msgspec.json.Decoder(MessageData)
_ENCODER = msgspec.json.Encoder(enc_hook=str)  # ids are str subclasses: their text


def _request_clock() -> datetime:
    """The write's own time when its request gave one, else now."""
    return _WRITE_AT.get() or utc_now()


def parse_partitions(text: str, partitions: int) -> list[int]:
    """``0-15,32`` as a sorted list of partitions of a stream of ``partitions``."""
    chosen: set[int] = set()
    for piece in text.split(","):
        first, _, last = piece.strip().partition("-")
        try:
            span = range(int(first), int(last or first) + 1)
        except ValueError:
            raise ValidationError(
                f"partitions {text!r}: {piece!r} is not a number or a range like 0-15"
            ) from None
        if not span or span.start < 0 or span.stop > partitions:
            raise ValidationError(
                f"partitions {text!r}: {piece!r} is not within 0-{partitions - 1}, "
                f"the partitions of the stream"
            )
        chosen.update(span)
    return sorted(chosen)


class _Partition:
    """One partition's store and micro service, and the handlers of its endpoints."""

    def __init__(self, replica: Replica, number: int, store: JetStreamMessageStore) -> None:
        self.replica = replica
        self.number = number
        self.store = store
        self.service: Service | None = None

    async def register(self, log: EventLog, subjects: ServiceSubjects) -> None:
        """Register this partition's endpoints: from now on it answers requests."""
        service = await add_service(
            log.client,
            name=SERVICE_NAME,
            version=_VERSION,
            description=f"convlog queries of stream {subjects.stream}, partition {self.number}",
            metadata={
                "stream": subjects.stream,
                "partition": str(self.number),
                "partitions": str(subjects.partitions),
            },
        )
        for name in (*protocol.READS, *protocol.WRITES):
            await service.add_endpoint(
                name=name,
                subject=subjects.endpoint(self.number, name),
                handler=self._handler(name),
                metadata={"partition": str(self.number)},
            )
        self.service = service

    def _handler(self, name: str) -> Callable[[Request], Awaitable[None]]:
        kind = protocol.READS.get(name) or protocol.WRITES[name]
        decoder = msgspec.json.Decoder(kind)
        answer: _Answer = getattr(self, f"_{name}")

        async def handle(request: Request) -> None:
            try:
                params = decoder.decode(request.data or b"{}")
            except (msgspec.DecodeError, msgspec.ValidationError) as err:
                await self._fail(request, ValidationError(f"{name}: bad request: {err}"))
                return
            if name in protocol.WRITES or self.store.sequence < params.min_sequence:
                if not self.replica.spawn(lambda: self._answer(request, name, params, answer)):
                    await self._fail(request, self.replica.busy())
            else:
                await self._answer(request, name, params, answer)

        return handle

    async def _answer(
        self, request: Request, name: str, params: protocol.ServiceRequest, answer: _Answer
    ) -> None:
        try:
            await self.replica.folded(self, params.min_sequence)
            if isinstance(params, protocol.Write):
                _WRITE_AT.set(params.at)
            reply = await answer(params)
        except ConvlogError as err:
            await self._fail(request, err)
        except Exception as err:
            logger.exception("%s on partition %d failed", name, self.number)
            await self._fail(request, ConvlogError(f"{name} failed: {type(err).__name__}: {err}"))
        else:
            data, extra = reply if isinstance(reply, tuple) else (reply, {})
            await self._send(request.respond(data, headers={**self._headers(), **extra}))

    async def _fail(self, request: Request, err: ConvlogError) -> None:
        reply = error_reply(err)
        headers = {**self._headers(), ERROR_HEADER: reply.name}
        await self._send(
            request.respond_error(
                str(reply.code),
                reply.description,
                data=_ENCODER.encode(reply.fields),
                headers=headers,
            )
        )

    async def _send(self, reply: Awaitable[None]) -> None:
        with contextlib.suppress(nats.errors.Error):  # the connection is going: nobody hears
            await reply

    def _headers(self) -> dict[str, str]:
        return {SEQUENCE_HEADER: str(self.store.sequence), PARTITION_HEADER: str(self.number)}

    # --- reads ---------------------------------------------------------------------------

    async def _get_thread(self, params: protocol.ByThread) -> bytes:
        self.store.check_holds(params.thread_id)
        thread = self.store.views.thread_json(params.thread_id)
        if thread is None:
            raise NotFoundError("thread", params.thread_id, "check the id")
        return thread

    async def _list_threads(self, params: protocol.ListThreads) -> tuple[bytes, dict[str, str]]:
        ranked = self.store.views.ranked_threads(
            params.tenant_id, params.user_id, params.limit, params.offset
        )
        ranks = ",".join(str(sequence) for sequence, _ in ranked)
        return _json_list(thread.model_dump_json() for _, thread in ranked), {RANKS_HEADER: ranks}

    async def _get_message(self, params: protocol.ByMessage) -> bytes:
        message = self.store.views.message_json(params.message_id)
        if message is None:
            raise NotFoundError("message", params.message_id, "check the id")
        return message

    async def _list_messages(self, params: protocol.ListMessages) -> bytes:
        self.store.check_holds(params.thread_id)
        return self.store.views.messages_json(
            params.thread_id, include_deleted=params.include_deleted
        )

    async def _get_messages_by_execution(self, params: protocol.ByExecution) -> bytes:
        return self.store.views.messages_by_execution_json(params.execution_id)

    async def _count_messages(self, params: protocol.ByThread) -> bytes:
        self.store.check_holds(params.thread_id)
        return _ENCODER.encode(await self.store.count_messages(params.thread_id))

    async def _history(self, params: protocol.ByMessage) -> bytes:
        return _entries_json(await self.store.history(params.message_id))

    async def _execution_trail(self, params: protocol.ByExecution) -> bytes:
        trail: ExecutionTrail = await self.store.execution_trail(params.execution_id)
        return b'{"execution_id":%s,"entries":%s}' % (
            _ENCODER.encode(trail.execution_id),
            _entries_json(trail.entries),
        )

    async def _health(self, params: protocol.NoParameters) -> bytes:  # noqa: ARG002 - none
        health = await self.store.health_check()
        return _ENCODER.encode({"partition": self.number, **msgspec.to_builtins(health)})

    async def _digest(self, params: protocol.NoParameters) -> bytes:  # noqa: ARG002 - none
        views = self.store.views
        return _ENCODER.encode(
            protocol.Digest(
                partition=self.number, sequence=self.store.sequence, digest=views.digest()
            )
        )

    # --- writes --------------------------------------------------------------------------

    async def _create_thread(self, params: protocol.WriteThread) -> bytes:
        await self.store.create_thread(_thread(params.thread))
        return self._written()

    async def _update_thread(self, params: protocol.WriteThread) -> bytes:
        await self.store.update_thread(_thread(params.thread))
        return self._written()

    async def _delete_thread(self, params: protocol.DeleteThread) -> bytes:
        await self.store.delete_thread(params.thread_id)
        return self._written()

    async def _create_message(self, params: protocol.WriteMessage) -> bytes:
        await self.store.create_message(_message(params.message))
        return self._written()

    async def _update_message(self, params: protocol.WriteMessage) -> bytes:
        message = _message(params.message)
        await self.store.update_message(message, expected_version=params.expected_version)
        return self._written()

    async def _delete_message(self, params: protocol.DeleteMessage) -> bytes:
        await self.store.delete_message(params.message_id)
        return self._written()

    def _written(self) -> bytes:
        """The reply to a write: the sequence this partition's views hold it at (or after)."""
        return _ENCODER.encode(protocol.Written(sequence=self.store.sequence))


class Replica:
    """The partitions this process folds and serves; start it, then :meth:`close` it."""

    def __init__(self, log: EventLog, partitions: dict[int, _Partition]) -> None:
        self.log = log
        self.partitions = partitions
        self.subjects = ServiceSubjects(log.stream.name, log.subjects.partitions)
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def start(
        cls,
        log: EventLog,
        partitions: Sequence[int] | None = None,
        *,
        snapshots: SnapshotPolicy | None = None,
    ) -> Replica:
        """Fold ``partitions`` (default: all) on ``log``; register them once all caught up.

        A few partitions catch up at a time: 64 consumers pushing their backlogs at once
        into one connection outrun the client, and the server cuts it off as a slow
        consumer. None answers before all have caught up.
        """
        chosen = list(range(log.subjects.partitions)) if partitions is None else list(partitions)
        replica = cls(log, {})
        opening = asyncio.Semaphore(_OPENING)
        try:
            await asyncio.gather(*(replica._open(n, snapshots, opening) for n in chosen))
            for partition in replica.partitions.values():
                await partition.register(log, replica.subjects)
        except BaseException:
            await replica.close()
            raise
        return replica

    async def _open(
        self, number: int, snapshots: SnapshotPolicy | None, opening: asyncio.Semaphore
    ) -> None:
        async with opening:
            store = await JetStreamMessageStore.open(
                self.log,
                clock=_request_clock,
                snapshots=snapshots,
                partition=number if self.log.subjects.partitioned else None,
            )
        self.partitions[number] = _Partition(self, number, store)

    async def health(self) -> Health:
        """The partitions' health as one: the worst status, the furthest sequence."""
        healths = [await p.store.health_check() for p in self.partitions.values()]
        worst = max(healths, key=lambda h: _SEVERITY[h.status])
        if self.log.client.is_closed:  # nats-py gave up for good: nothing will come back
            worst = msgspec.structs.replace(
                worst, status="failed", detail=f"the connection to {self.log.url} is closed"
            )
        return msgspec.structs.replace(
            worst,
            applied_sequence=max(h.applied_sequence for h in healths),
            skipped=tuple(s for h in healths for s in h.skipped),
        )

    async def routes_by_thread(self) -> bool:
        """Whether the server maps :meth:`ServiceSubjects.routed` subjects to partitions.

        A request for a thread this replica holds must reach that thread's partition.
        """
        number = next(iter(self.partitions))
        probe = next(
            f"probe-{i}"
            for i in itertools.count()
            if self.log.subjects.partition_of(f"probe-{i}") == number
        )
        try:
            reply = await self.log.client.request(
                self.subjects.routed("health", probe), b"{}", timeout=self.log.write_timeout
            )
        except nats.errors.Error:
            return False
        return (reply.headers or {}).get(PARTITION_HEADER) == str(number)

    def spawn(self, work: Callable[[], Coroutine[Any, Any, None]]) -> bool:
        """Run a request's answer as its own task; False when ``_MAX_IN_FLIGHT`` already run.

        A write waits for its batch and its fold, so it must not hold up the requests
        behind it; past the limit a request is refused at once (503), not queued until its
        client has given up on it.
        """
        if len(self._tasks) >= _MAX_IN_FLIGHT:
            return False
        task = asyncio.create_task(work())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    def busy(self) -> UnavailableError:
        """The error of a request refused because this replica has enough in flight."""
        return UnavailableError(
            self.log.url,
            f"this replica has {_MAX_IN_FLIGHT} requests in flight; ask again, or start "
            "another replica",
        )

    async def folded(self, partition: _Partition, sequence: int) -> None:
        """Return once ``partition`` has folded its records up to stream ``sequence``.

        Its own last record may come before ``sequence`` (the writer wrote elsewhere):
        then that record is as far as it needs to be. 503 after the write timeout.
        """
        store = partition.store
        if store.sequence >= sequence:
            return
        scope = self.log.subjects.partition(partition.number)
        last = await self.log.last_on_subject(scope) if self.log.subjects.partitioned else None
        target = sequence if last is None else min(sequence, last[0])
        try:
            await asyncio.wait_for(store.wait_for(target), self.log.write_timeout)
        except TimeoutError:
            raise UnavailableError(
                self.log.url,
                f"partition {partition.number}'s views stand at sequence {store.sequence}, "
                f"not yet at {target}, after {self.log.write_timeout}s; ask again",
            ) from None

    async def close(self) -> None:
        """Stop taking requests, finish those in flight (within the write timeout), stop folding.

        A write cut off halfway would leave its client unsure whether it was stored.
        """
        for partition in self.partitions.values():
            if partition.service is not None:
                with contextlib.suppress(nats.errors.Error):
                    await partition.service.stop()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2 * self.log.write_timeout)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for partition in self.partitions.values():
            await partition.store.close()


def _thread(raw: msgspec.Raw) -> Thread:
    try:
        return _THREAD.decode(raw).model()
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as err:
        raise ValidationError(f"thread: {err}") from err


def _message(raw: msgspec.Raw) -> Message:
    try:
        return _MESSAGE.decode(raw).model()
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as err:
        raise ValidationError(f"message: {err}") from err


def _json_list(items: Iterable[str]) -> bytes:
    return ("[" + ",".join(items) + "]").encode()


def _entries_json(entries: Iterable[AuditEntry]) -> bytes:
    """Audit entries as JSON: each event's stored bytes as they are, and its state after."""
    return b"[%s]" % b",".join(
        b'{"sequence":%d,"time":%s,"event":%s,"state":%s}'
        % (
            entry.sequence,
            _ENCODER.encode(entry.time),
            entry.data,
            b"null" if entry.state is None else entry.state.model_dump_json().encode(),
        )
        for entry in entries
    )
