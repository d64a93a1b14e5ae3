"""RemoteMessageStore: the MessageStore contract, answered by ``convlog serve`` replicas.

Nothing is folded here. A call about a thread goes to the partition that holds it; one
that names only a tenant, a message or an execution asks every partition and merges the
answers as one view of them all would give them. Writes are decided by a replica that holds
the thread's partition, under the same rules and optimistic concurrency as an embedded
store: the rules need the thread's current state, which only the partition's views hold.
Each write's reply gives the sequence it was stored at, and every later request to that
partition carries it as ``min_sequence``: this client reads its own writes through any
replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from typing import TYPE_CHECKING, Any, Final, Literal, Self

import msgspec
import nats.errors

from eventlog import (
    AlreadyExistsError,
    ConflictError,
    ConnectOptions,
    ConvlogError,
    DeletedError,
    Message,
    MessageId,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    TenantId,
    Thread,
    ThreadId,
    UnavailableError,
    UserId,
    ValidationError,
)
from eventlog._connect import open_client, probe
from eventlog.connection import ConnectionState
from eventlog.subjects import Subjects
from eventlog.wire import MessageData, ThreadData, parse_utc
from projections.commands import utc_now
from projections.health import Health
from projections.queries import check_count
from projections.service.protocol import (
    ERROR_HEADER,
    MAX_LIMIT,
    RANKS_HEADER,
    SERVICE_NAME,
    ServiceSubjects,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime
    from types import TracebackType

    from nats.aio.client import Client
    from nats.aio.msg import Msg

    from projections.commands import Clock

__all__ = ["RemoteMessageStore"]

_ERRORS: Final[dict[str, type[ConvlogError]]] = {
    kind.__name__: kind
    for kind in (
        AlreadyExistsError,
        ConflictError,
        DeletedError,
        NotFoundError,
        PayloadTooLargeError,
        PermissionDeniedError,
        UnavailableError,
        ValidationError,
    )
}
_ENCODER = msgspec.json.Encoder(enc_hook=str)  # ids are str subclasses: their text
_THREAD = msgspec.json.Decoder(ThreadData)
_THREADS = msgspec.json.Decoder(list[ThreadData])
_MESSAGE = msgspec.json.Decoder(MessageData)
_MESSAGES = msgspec.json.Decoder(list[MessageData])


class _Info(msgspec.Struct):
    metadata: dict[str, str] = {}


class _Written(msgspec.Struct):
    sequence: int


class _Health(msgspec.Struct):
    status: Literal["ok", "degraded", "failed"]
    applied_sequence: int
    detail: str = ""


class _RepliedError(ConvlogError):
    """A partition's error reply, before it is raised as the error it names."""

    def __init__(self, code: str, name: str, description: str, fields: bytes) -> None:
        super().__init__(description)
        self.code, self.name, self.description = code, name, description
        self.fields = fields

    def error(self) -> ConvlogError:
        """The error the replica raised, with its message and its fields."""
        kind = _ERRORS.get(self.name, ConvlogError)
        error = kind.__new__(kind)
        Exception.__init__(error, self.description)
        with contextlib.suppress(msgspec.DecodeError):
            vars(error).update(msgspec.json.decode(self.fields or b"{}", type=dict[str, Any]))
        return error


class RemoteMessageStore:
    """The MessageStore protocol over the ``convlog`` micro service of one stream."""

    def __init__(
        self,
        nc: Client,
        *,
        url: str,
        subjects: ServiceSubjects,
        clock: Clock,
        timeout: float,
    ) -> None:
        self._nc = nc
        self.url = url
        self.subjects = subjects
        self._threads = Subjects(partitions=subjects.partitions)
        self._clock = clock
        self._timeout = timeout
        self._written: dict[int, int] = {}
        """Per partition, the last sequence this client wrote at: what its reads wait for."""

    @classmethod
    async def connect(
        cls,
        servers: str | Sequence[str] | None = None,
        *,
        stream: str = "CONVLOG",
        options: ConnectOptions | None = None,
        clock: Clock = utc_now,
        request_timeout: float = 5.0,
    ) -> Self:
        """Connect, and find the service of ``stream`` (and its partition count) on it.

        Waits up to ``request_timeout`` for a replica to answer ``$SRV.INFO``;
        UnavailableError if none does. Each later request waits as long for its answer.
        """
        options = options or ConnectOptions()
        servers = servers or options.servers
        if not servers:
            raise ValidationError("no NATS server to connect to: pass its URL")
        urls = [servers] if isinstance(servers, str) else list(servers)
        url = ",".join(urls)
        await probe(urls, url, options.connect_timeout)
        connection = ConnectionState()
        nc = await open_client(urls, url, options, connection)
        try:
            partitions = await _partitions_served(nc, url, stream, request_timeout)
        except BaseException:
            await nc.close()
            raise
        return cls(
            nc,
            url=url,
            subjects=ServiceSubjects(stream, partitions),
            clock=clock,
            timeout=request_timeout,
        )

    async def close(self) -> None:
        """Close the connection."""
        if not self._nc.is_closed:
            with contextlib.suppress(OSError):
                await self._nc.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def name(self) -> str:
        """A short name of the implementation."""
        return "remote-message-store"

    @property
    def writes(self) -> dict[int, int]:
        """Per partition, the sequence of this client's last write there.

        Hand it to another client's :meth:`observe` (another process, a web request that
        follows) and that client reads these writes too, through any replica.
        """
        return dict(self._written)

    def observe(self, writes: Mapping[int, int]) -> None:
        """Read at least as far as ``writes`` (another client's :attr:`writes`) from now on."""
        for partition, sequence in writes.items():
            self._written[partition] = max(self._written.get(partition, 0), sequence)

    @property
    def requires_network(self) -> bool:
        """It talks to replicas over NATS."""
        return True

    # --- requests ------------------------------------------------------------------------

    def _partition(self, thread_id: str) -> int:
        return self._threads.partition_of(thread_id)

    async def _call(
        self, partition: int, endpoint: str, params: dict[str, Any], *, tries: int = 1
    ) -> Msg:
        """One request to one partition; its error reply raised as the error it names.

        A request that gets no answer is sent ``tries`` times in all: its replica may have
        died with it, and the queue group gives the next one to a replica that lives.
        """
        body = _ENCODER.encode({**params, "min_sequence": self._written.get(partition, 0)})
        subject = self.subjects.endpoint(partition, endpoint)
        try:
            for attempt in range(1, tries + 1):
                try:
                    reply = await self._nc.request(subject, body, timeout=self._timeout)
                    break
                except nats.errors.TimeoutError:
                    if attempt == tries:
                        raise
        except nats.errors.NoRespondersError:
            raise UnavailableError(
                self.url,
                f"no replica serves partition {partition} of stream {self.subjects.stream!r} "
                f"({subject}); start one with `convlog serve --partitions {partition}`",
            ) from None
        except nats.errors.TimeoutError:
            raise UnavailableError(
                self.url, f"{endpoint} on partition {partition} got no answer in {self._timeout}s"
            ) from None
        _raise_error(reply)
        return reply

    async def _read(self, partition: int, endpoint: str, params: dict[str, Any]) -> Msg | None:
        """A read, asked again once if unanswered; None for a 404 (no such id there)."""
        try:
            return await self._call(partition, endpoint, params, tries=2)
        except _RepliedError as failed:
            if failed.code == "404":
                return None
            raise failed.error() from None

    async def _everywhere(self, endpoint: str, params: dict[str, Any]) -> list[Msg | None]:
        """The same read of every partition, in partition order."""
        return list(
            await asyncio.gather(
                *(self._read(p, endpoint, params) for p in range(self.subjects.partitions))
            )
        )

    async def _write(self, partition: int, endpoint: str, params: dict[str, Any]) -> None:
        try:
            reply = await self._call(partition, endpoint, {**params, "at": self._clock()})
        except _RepliedError as failed:
            raise failed.error() from None
        sequence = msgspec.json.decode(reply.data, type=_Written).sequence
        self._written[partition] = max(self._written.get(partition, 0), sequence)

    # --- reads ---------------------------------------------------------------------------

    async def health_check(self) -> Health:
        """Whether every partition answers, and answers ok; which ones do not, otherwise."""
        try:
            replies = await self._everywhere("health", {})
        except UnavailableError as err:
            return Health(status="degraded", applied_sequence=0, connected=True, detail=str(err))
        healths = [msgspec.json.decode(r.data, type=_Health) for r in replies if r is not None]
        unwell = [(n, h) for n, h in enumerate(healths) if h.status != "ok"]
        status = "ok" if not unwell else max(h.status for _, h in unwell)
        return Health(
            status="failed" if status == "failed" else "degraded" if unwell else "ok",
            applied_sequence=max((h.applied_sequence for h in healths), default=0),
            connected=self._nc.is_connected,
            detail="; ".join(f"partition {n}: {h.detail}" for n, h in unwell),
        )

    async def get_thread(self, thread_id: str) -> Thread | None:
        """The thread, deleted or not, or None."""
        reply = await self._read(self._partition(thread_id), "get_thread", {"thread_id": thread_id})
        return None if reply is None else _THREAD.decode(reply.data).model()

    async def list_threads(
        self, tenant_id: str, user_id: str, limit: int, offset: int
    ) -> list[Thread]:
        """A user's live threads, newest first: each partition's first pages, merged."""
        check_count("limit", limit)
        check_count("offset", offset)
        owner = {"tenant_id": tenant_id, "user_id": user_id}
        pages = await asyncio.gather(
            *(self._newest(p, owner, limit + offset) for p in range(self.subjects.partitions))
        )
        merged = list(heapq.merge(*pages, key=lambda ranked: ranked[0], reverse=True))
        return [thread.model() for _, thread in merged[offset : offset + limit]]

    async def _newest(
        self, partition: int, owner: dict[str, str], count: int
    ) -> list[tuple[tuple[datetime, int], ThreadData]]:
        """The first ``count`` of a user's threads in one partition, page by page."""
        found: list[tuple[tuple[datetime, int], ThreadData]] = []
        while len(found) < count:
            limit = min(count - len(found), MAX_LIMIT)
            params = {**owner, "limit": limit, "offset": len(found)}
            reply = await self._read(partition, "list_threads", params)
            page = [] if reply is None else _ranked(reply)
            found += page
            if len(page) < limit:
                break
        return found

    async def get_message(self, message_id: str) -> Message | None:
        """The message, deleted or not, or None: the first partition that holds it."""
        replies = await self._everywhere("get_message", {"message_id": message_id})
        found = next((reply for reply in replies if reply is not None), None)
        return None if found is None else _MESSAGE.decode(found.data).model()

    async def list_messages(self, thread_id: str, include_deleted: bool = False) -> list[Message]:  # noqa: FBT001, FBT002 - the seed's signature
        """A thread's messages in log order."""
        reply = await self._read(
            self._partition(thread_id),
            "list_messages",
            {"thread_id": thread_id, "include_deleted": include_deleted},
        )
        return [] if reply is None else [m.model() for m in _MESSAGES.decode(reply.data)]

    async def get_messages_by_execution(self, execution_id: str) -> list[Message]:
        """Every message of one agent execution: each partition's, merged by creation time."""
        replies = await self._everywhere(
            "get_messages_by_execution", {"execution_id": execution_id}
        )
        lists = [_MESSAGES.decode(reply.data) for reply in replies if reply is not None]
        merged = heapq.merge(*lists, key=lambda message: parse_utc(message.created_at))
        return [message.model() for message in merged]

    async def count_messages(self, thread_id: str) -> int:
        """How many live messages a thread has."""
        reply = await self._read(
            self._partition(thread_id), "count_messages", {"thread_id": thread_id}
        )
        return 0 if reply is None else msgspec.json.decode(reply.data, type=int)

    # --- writes --------------------------------------------------------------------------

    async def create_thread(self, thread: Thread) -> ThreadId:
        """Create a thread; AlreadyExistsError if its id holds another thread."""
        await self._write(
            self._partition(thread.id), "create_thread", {"thread": _raw(thread.model_dump_json())}
        )
        return thread.id

    async def update_thread(self, thread: Thread) -> None:
        """Change a thread's title; NotFoundError or DeletedError when it cannot."""
        await self._write(
            self._partition(thread.id), "update_thread", {"thread": _raw(thread.model_dump_json())}
        )

    async def delete_thread(self, thread_id: str) -> None:
        """Soft-delete a thread; NotFoundError for an unknown id; repeat is a no-op."""
        await self._write(self._partition(thread_id), "delete_thread", {"thread_id": thread_id})

    async def create_message(self, message: Message) -> MessageId:
        """Add a message to a live thread."""
        await self._write(
            self._partition(message.thread_id),
            "create_message",
            {"message": _raw(message.model_dump_json())},
        )
        return message.id

    async def update_message(
        self, message: Message, *, expected_version: int | None = None
    ) -> None:
        """Replace a message's content, parts, metadata and parent.

        Sent to the partition of ``message.thread_id``; if the message is not there (the
        update would move it, which is refused), to the partition that holds it.
        """
        params = {"message": _raw(message.model_dump_json()), "expected_version": expected_version}
        partition = self._partition(message.thread_id)
        try:
            await self._write(partition, "update_message", params)
        except NotFoundError:
            current = await self.get_message(message.id)
            if current is None or self._partition(current.thread_id) == partition:
                raise
            await self._write(self._partition(current.thread_id), "update_message", params)

    async def delete_message(self, message_id: str) -> None:
        """Soft-delete a message; repeat is a no-op. Asks every partition where it is first."""
        message = await self.get_message(message_id)
        if message is None:
            raise NotFoundError("message", message_id, "check the id")
        await self._write(
            self._partition(message.thread_id), "delete_message", {"message_id": message_id}
        )

    async def get_or_create_thread(self, tenant_id: str, user_id: str) -> Thread:
        """The user's newest live thread, or a new one."""
        newest = await self.list_threads(tenant_id, user_id, 1, 0)
        if newest:
            return newest[0]
        thread = Thread.new(TenantId.from_string(tenant_id), UserId.from_string(user_id))
        await self.create_thread(thread)
        return thread


def _ranked(reply: Msg) -> list[tuple[tuple[datetime, int], ThreadData]]:
    """A partition's page of threads, each with the key that orders them newest first."""
    threads = _THREADS.decode(reply.data)
    ranks = (reply.headers or {}).get(RANKS_HEADER, "")
    sequences = [int(rank) for rank in ranks.split(",")] if threads else []
    if len(sequences) != len(threads):
        raise ConvlogError(f"a list_threads reply gave {len(sequences)} ranks for {len(threads)}")
    return [
        ((parse_utc(thread.created_at), sequence), thread)
        for sequence, thread in zip(sequences, threads, strict=True)
    ]


def _raw(json: str) -> msgspec.Raw:
    return msgspec.Raw(json.encode())


def _raise_error(reply: Msg) -> None:
    headers = reply.headers or {}
    code = headers.get("Nats-Service-Error-Code")
    if code is not None:
        raise _RepliedError(
            code, headers.get(ERROR_HEADER, ""), headers.get("Nats-Service-Error", ""), reply.data
        )


async def _partitions_served(nc: Client, url: str, stream: str, within: float) -> int:
    """The partition count of ``stream``'s service, from the first replica that answers."""
    inbox = nc.new_inbox()
    found: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def heard(msg: Msg) -> None:
        with contextlib.suppress(msgspec.DecodeError, KeyError, ValueError):
            metadata = msgspec.json.decode(msg.data, type=_Info).metadata
            if metadata["stream"] == stream and not found.done():
                found.set_result(int(metadata["partitions"]))

    subscription = await nc.subscribe(inbox, cb=heard)
    try:
        async with asyncio.timeout(within):
            while not found.done():
                await nc.publish(f"$SRV.INFO.{SERVICE_NAME}", b"", reply=inbox)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(found), 0.5)
    except TimeoutError:
        raise UnavailableError(
            url, f"no convlog replica of stream {stream!r} answered within {within}s"
        ) from None
    finally:
        await subscription.unsubscribe()
    return found.result()
