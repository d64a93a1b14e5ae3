"""MessageStore: the seed's contract, and two stores that keep it the event-sourced way.

Both stores turn every write into an event (:mod:`projections.commands`) and answer every
query from the same folded views (:mod:`projections.views`). They differ only in where the
events go: :class:`JetStreamMessageStore` appends them to a NATS JetStream stream and waits
for its own projection to fold them back; :class:`InMemoryMessageStore` folds them on the
spot, which makes it the reference model in tests and a fast store for users' unit tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self, runtime_checkable

import msgspec

from eventlog import (
    AlreadyExistsError,
    AnyEvent,
    ConflictError,
    ConnectOptions,
    ConvlogError,
    EventLog,
    LogRecord,
    Message,
    MessageId,
    NotFoundError,
    PermissionDeniedError,
    StreamSettings,
    TenantId,
    Thread,
    ThreadId,
    UnavailableError,
    UserId,
    ValidationError,
)
from eventlog.claims import IdClaims
from eventlog.events import EventCodec, MessageCreated, event_digest
from eventlog.group import GroupCommit
from eventlog.log import HEADER_ROOM
from eventlog.subjects import Subjects
from projections._gc import paused_gc
from projections.audit import Audit
from projections.commands import Clock, Commands, utc_now
from projections.errors import EventRejectedError, TransactionError
from projections.fold import Projection
from projections.health import Health
from projections.queries import ViewQueries
from projections.snapshot import SnapshotInfo, SnapshotPolicy, Snapshots
from projections.transaction import Change, Overlay, Transaction
from projections.worker import ProjectionWorker

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
    from datetime import datetime
    from types import TracebackType

    from eventlog import VerifyReport
    from projections.audit import AuditEntry, ExecutionTrail, ReadOnlyStore
    from projections.rebuild import Rebuilt

logger = logging.getLogger(__name__)

__all__ = ["Health", "InMemoryMessageStore", "JetStreamMessageStore", "MessageStore"]

_MAX_ATTEMPTS = 32
"""Appends tried before a conflict is given up on; each lost race means another writer won."""

_STUCK_AFTER = 10.0
"""Seconds views may stay behind the stream without moving before health says degraded."""

_DEFAULT_MAX_PAYLOAD = 1024 * 1024
"""nats-server's default max payload; the in-memory store keeps the same limit."""


@runtime_checkable
class MessageStore(Protocol):
    """The seed's MessageStore trait, method for method, async."""

    @property
    def name(self) -> str:
        """A short name of the implementation."""
        ...

    @property
    def requires_network(self) -> bool:
        """Whether the store talks to a server."""
        ...

    async def health_check(self) -> Health:
        """Report whether the store is usable."""
        ...

    async def create_thread(self, thread: Thread) -> ThreadId:
        """Create a thread; AlreadyExistsError if its id holds another thread."""
        ...

    async def get_thread(self, thread_id: str) -> Thread | None:
        """The thread, deleted or not, or None."""
        ...

    async def update_thread(self, thread: Thread) -> None:
        """Change a thread's title; NotFoundError or DeletedError when it cannot."""
        ...

    async def delete_thread(self, thread_id: str) -> None:
        """Soft-delete a thread; NotFoundError for an unknown id; repeat is a no-op."""
        ...

    async def list_threads(
        self, tenant_id: str, user_id: str, limit: int, offset: int
    ) -> list[Thread]:
        """A user's live threads, newest first."""
        ...

    async def create_message(self, message: Message) -> MessageId:
        """Add a message to a live thread."""
        ...

    async def get_message(self, message_id: str) -> Message | None:
        """The message, deleted or not, or None."""
        ...

    async def update_message(self, message: Message) -> None:
        """Replace a message's content, parts, metadata and parent."""
        ...

    async def delete_message(self, message_id: str) -> None:
        """Soft-delete a message; repeat is a no-op."""
        ...

    async def list_messages(self, thread_id: str, include_deleted: bool = False) -> list[Message]:  # noqa: FBT001, FBT002 - the seed's signature
        """A thread's messages in log order."""
        ...

    async def get_messages_by_execution(self, execution_id: str) -> list[Message]:
        """Every message of one agent execution, in log order."""
        ...

    async def get_or_create_thread(self, tenant_id: str, user_id: str) -> Thread:
        """The user's newest live thread, or a new one."""
        ...

    async def count_messages(self, thread_id: str) -> int:
        """How many live messages a thread has."""
        ...


class _ThreadLocks:
    """One lock per thread id, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, list[Any]] = {}
        """key -> [its lock, how many hold it or wait for it]."""

    def hold(self, *keys: str) -> _Held:
        """Hold the lock of each key, taken in the order given (sorted: no deadlock).

        A class rather than a generator: every write takes one, and it is the cheaper.
        """
        return _Held(self, keys)

    async def acquire(self, key: str) -> None:
        """Wait for ``key``'s lock and take it."""
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            await entry[0].acquire()
        except BaseException:  # cancelled while waiting: no longer a user
            self._forget(key, entry)
            raise

    def release(self, key: str) -> None:
        """Let go of ``key``'s lock."""
        entry = self._locks[key]
        entry[0].release()
        self._forget(key, entry)

    def _forget(self, key: str, entry: list[Any]) -> None:
        entry[1] -= 1
        if entry[1] == 0:
            del self._locks[key]


class _Held:
    """The locks of some keys, held for an ``async with`` block."""

    __slots__ = ("_keys", "_locks", "_taken")

    def __init__(self, locks: _ThreadLocks, keys: Sequence[str]) -> None:
        self._locks = locks
        self._keys = keys
        self._taken = 0

    async def __aenter__(self) -> None:
        try:
            for key in self._keys:
                await self._locks.acquire(key)
                self._taken += 1
        except BaseException:
            self._release()
            raise

    async def __aexit__(self, *_: object) -> None:
        self._release()

    def _release(self) -> None:
        for key in reversed(self._keys[: self._taken]):
            self._locks.release(key)
        self._taken = 0


@dataclass(slots=True)
class _Batch:
    """Decided events ready to append: each with its write's index, bytes and expectation."""

    indexes: list[int] = field(default_factory=list)
    events: list[AnyEvent] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)
    expected: list[int | None] = field(default_factory=list)

    def add(self, index: int, event: AnyEvent, payload: bytes, expected: int | None) -> None:
        """Take one more event: of write ``index``, stored as ``payload``."""
        self.indexes.append(index)
        self.events.append(event)
        self.payloads.append(payload)
        self.expected.append(expected)


class _ProjectedStore(ViewQueries):
    """The MessageStore methods, over views kept by a projection; subclasses commit events."""

    def __init__(self, projection: Projection, subjects: Subjects, clock: Clock) -> None:
        super().__init__(projection)
        self._subjects = subjects
        self._clock = clock
        self._commands = Commands(projection.views, clock)
        self._locks = _ThreadLocks()
        self._owner_locks = _ThreadLocks()
        self.conflicts = 0
        """Appends that lost an optimistic-concurrency race and were decided again."""

    async def _commit(
        self, events: Sequence[AnyEvent], payloads: Sequence[bytes], expected: Sequence[int | None]
    ) -> list[int]:
        """Append ``events`` together if each ``expected`` still holds; their sequences once folded.

        ``expected[i]`` is the last sequence event i's thread must have (checked on each
        thread's first event); its ``payloads`` are from :meth:`_encode`.
        """
        raise NotImplementedError

    def _encode(self, event: AnyEvent) -> bytes:
        """The bytes ``event`` is stored as, within the payload limit."""
        raise NotImplementedError

    async def _refusals(self, events: Sequence[AnyEvent]) -> list[tuple[int, ConvlogError]]:  # noqa: ARG002 - the in-memory store refuses nothing here
        """Events (by index) the store refuses before appending any, and why."""
        return []

    async def _catch_up(self, conflict: ConflictError | None, thread_id: str) -> None:  # noqa: ARG002 - the in-memory store has nothing to catch up with
        """Fold what other writers appended: up to the conflict, or far enough to see ``thread_id``.

        The thread may be one these views do not know yet.
        """
        if conflict is not None:
            raise conflict

    def _check_open(self) -> None:
        """Raise if this store can no longer write."""

    async def catch_up(self, thread_id: str) -> None:
        """Return once the views hold every event of ``thread_id`` stored before this call.

        A store reads its own writes at once, and another process's when the stream
        delivers them; a reader that must see those first (a framework resuming a session
        another process wrote) asks for this. Nothing to wait for in one process.
        """

    async def _write(self, thread_id: str, decide: Callable[[Commands], AnyEvent | None]) -> None:
        """One write, decided and committed as :meth:`_write_all` does; its own error raised."""
        try:
            await self._write_all([Change(thread_id, "", decide)])
        except TransactionError as failed:
            raise failed.failures[0][1] from None

    async def _write_all(self, changes: Sequence[Change]) -> list[int]:
        """Decide and commit ``changes`` under their threads' locks; again after losing a race.

        A race is lost in one of three ways: another writer appended to a thread first (a
        conflict), our view had not yet seen an entity another writer created (NotFound),
        or another writer took our new id on another thread first (the fold rejects ours).
        Deciding again against caught-up views turns each into success or the right error.
        """
        self._check_open()
        thread_ids = sorted({change.thread_id for change in changes})
        async with self._locks.hold(*thread_ids):
            caught_up = False
            for attempt in range(1, _MAX_ATTEMPTS + 1):
                batch, failures = await self._decided(changes)
                if failures:
                    if caught_up or not any(isinstance(e, NotFoundError) for _, e in failures):
                        raise TransactionError(len(changes), failures, [c.what for c in changes])
                    caught_up = True
                    await self._catch_up_all(None, thread_ids)
                    continue
                if not batch.events:
                    return []
                sequences = await self._committed(
                    batch, changes, thread_ids, last_try=attempt == _MAX_ATTEMPTS
                )
                if sequences is not None:
                    return sequences
                # Jittered backoff, so writers racing on one thread stop meeting in lockstep.
                await asyncio.sleep(random.uniform(0, 0.001 * attempt))  # noqa: S311
            raise ConvlogError(
                f"gave up on a write to threads {thread_ids!r} after {_MAX_ATTEMPTS} tries"
            )

    async def _catch_up_all(
        self, conflict: ConflictError | None, thread_ids: Sequence[str]
    ) -> None:
        for thread_id in thread_ids:
            await self._catch_up(conflict, thread_id)

    async def _decided(
        self, changes: Sequence[Change]
    ) -> tuple[_Batch, list[tuple[int, ConvlogError]]]:
        """The events to append, or the writes (by index) that may not be, and why.

        Everything that can refuse a write happens here, before the first byte is sent:
        the rules, the encoding (payload limit, text UTF-8 cannot store), then the store's
        refusals (a tenant's confinement, ids claimed elsewhere).
        """
        decided, failures = self._decide(changes)
        if failures:
            return _Batch(), failures
        batch, failures = self._chain(decided)
        if failures:
            return batch, failures
        refused = await self._refusals(batch.events)
        return batch, [(batch.indexes[index], err) for index, err in refused]

    async def _committed(
        self, batch: _Batch, changes: Sequence[Change], thread_ids: Sequence[str], *, last_try: bool
    ) -> list[int] | None:
        """The sequences ``batch`` was stored and folded at; None if it lost a race."""
        try:
            sequences = await self._commit(batch.events, batch.payloads, batch.expected)
        except ConflictError as conflict:
            if last_try:
                raise
            self.conflicts += 1
            await self._catch_up_all(conflict, thread_ids)
            return None
        rejected = [
            (batch.indexes[i], rejection)
            for i, sequence in enumerate(sequences)
            if (rejection := self._projection.rejection(sequence)) is not None
        ]
        if not rejected:
            return sequences
        for _, rejection in rejected:
            logger.info("write at %d lost a race: %s", rejection.sequence, rejection.reason)
        if len(sequences) == 1:
            return None  # decided again: the right error, or success
        failures: list[tuple[int, ConvlogError]] = [
            (i, EventRejectedError(r.reason)) for i, r in rejected
        ]
        raise TransactionError(len(changes), failures, [c.what for c in changes], written=True)

    def _decide(
        self, changes: Sequence[Change]
    ) -> tuple[list[tuple[int, AnyEvent]], list[tuple[int, ConvlogError]]]:
        """Each change's event (by its index; None dropped), or why it may not be written."""
        if len(changes) == 1:  # alone: against the views themselves, no overlay
            try:
                event = changes[0].decide(self._commands)
            except ConvlogError as err:
                return [], [(0, err)]
            return ([(0, event)] if event is not None else []), []
        overlay = Overlay(self.views)
        commands = Commands(overlay, self._clock)
        events: list[tuple[int, AnyEvent]] = []
        failures: list[tuple[int, ConvlogError]] = []
        for index, change in enumerate(changes):
            try:
                event = change.decide(commands)
            except ConvlogError as err:
                failures.append((index, err))
                continue
            if event is not None:
                overlay.record(event)
                events.append((index, event))
        return events, failures

    def _chain(
        self, decided: Sequence[tuple[int, AnyEvent]]
    ) -> tuple[_Batch, list[tuple[int, ConvlogError]]]:
        """The events linked into their threads' hash chains, encoded, with expectations.

        Each event's ``prev_hash`` is the digest of its thread's previous event: the head
        in the views, or the event before it here. Only a thread's first event here
        carries an expectation (the server checks no other). An event that cannot be
        encoded is a failure of its write.
        """
        batch = _Batch()
        failures: list[tuple[int, ConvlogError]] = []
        previous: dict[str, bytes] = {}
        for index, event in decided:
            subject = self._subjects.thread(event.tenant_id, event.thread_id)
            if subject in previous:
                before: bytes | None = previous[subject]
                expect = None
            else:
                head = self.views.head(subject)
                before, expect = (head.payload, head.sequence) if head else (None, 0)
            linked = msgspec.structs.replace(
                event, prev_hash=event_digest(before) if before is not None else None
            )
            try:
                payload = self._encode(linked)
            except ConvlogError as err:
                failures.append((index, err))
                continue
            previous[subject] = payload
            batch.add(index, linked, payload, expect)
        return batch, failures

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """Writes recorded in the block, written on leaving it as one atomic batch.

        All are stored or none; each is checked by the rules of its method, against the
        views and the writes before it. A write that breaks a rule raises
        :class:`TransactionError` (naming each) and nothing is written; so does an
        exception in the block. Returns once every write is folded (read-your-writes).
        See :mod:`projections.transaction`.
        """
        tx = Transaction(self._thread_of_message)
        yield tx
        if tx.changes:
            tx.sequences = await self._write_all(tx.changes)

    def _thread_of_message(self, message_id: str) -> str:
        message = self.views.message(message_id)
        return message.thread_id if message is not None else ""

    # --- writes ----------------------------------------------------------------------------

    async def create_thread(self, thread: Thread) -> ThreadId:
        """Create a thread; AlreadyExistsError if its id holds another thread."""
        await self._write(thread.id, lambda c: c.create_thread(thread))
        return thread.id

    async def update_thread(self, thread: Thread) -> None:
        """Change a thread's title; NotFoundError or DeletedError when it cannot."""
        await self._write(thread.id, lambda c: c.update_thread(thread))

    async def delete_thread(self, thread_id: str) -> None:
        """Soft-delete a thread; NotFoundError for an unknown id; repeat is a no-op."""
        await self._write(thread_id, lambda c: c.delete_thread(thread_id))

    async def create_message(self, message: Message) -> MessageId:
        """Add a message to a live thread."""
        await self._write(message.thread_id, lambda c: c.create_message(message))
        return message.id

    async def update_message(
        self, message: Message, *, expected_version: int | None = None
    ) -> None:
        """Replace a message's content, parts, metadata and parent.

        With ``expected_version`` (from :meth:`message_version`) it replaces that version
        only; if the message has changed since, :class:`ConflictError` and nothing written.
        """
        await self._write(
            message.thread_id,
            lambda c: c.update_message(message, expected_version),
        )

    def message_version(self, message_id: str) -> int | None:
        """The message's version: the stream sequence of its last change; None if unknown."""
        return self.views.message_version(message_id)

    async def delete_message(self, message_id: str) -> None:
        """Soft-delete a message; repeat is a no-op."""
        thread_id = self._thread_of_message(message_id)
        await self._write(thread_id, lambda c: c.delete_message(message_id))

    async def get_or_create_thread(self, tenant_id: str, user_id: str) -> Thread:
        """The user's newest live thread, or a new one (the seed always made a new one).

        Calls in one process are serialised per user; two processes racing may both create.
        """
        async with self._owner_locks.hold(f"{tenant_id}\x00{user_id}"):
            newest = self.views.list_threads(tenant_id, user_id, 1, 0)
            if newest:
                return newest[0]
            thread = Thread.new(TenantId.from_string(tenant_id), UserId.from_string(user_id))
            await self.create_thread(thread)
            return thread


class InMemoryMessageStore(_ProjectedStore):
    """The contract without a server: events are encoded and folded at once, in process."""

    def __init__(self, *, clock: Clock = utc_now, max_payload: int = _DEFAULT_MAX_PAYLOAD) -> None:
        self._codec = EventCodec()
        subjects = Subjects()
        super().__init__(Projection(self._codec, subjects), subjects, clock)
        self._max_payload = max_payload

    @property
    def name(self) -> str:
        """The seed's name for this store."""
        return "in-memory-message-store"

    def _encode(self, event: AnyEvent) -> bytes:
        return self._codec.encode(event, limit=self._max_payload - HEADER_ROOM)

    async def _commit(
        self, events: Sequence[AnyEvent], payloads: Sequence[bytes], expected: Sequence[int | None]
    ) -> list[int]:
        for event, expect in zip(events, expected, strict=True):
            subject = self._subjects.thread(event.tenant_id, event.thread_id)
            head = self.views.head(subject)
            actual = head.sequence if head else 0
            if (
                expect is not None and actual != expect
            ):  # pragma: no cover - one process, writes serialised per thread
                raise ConflictError(subject, expect, actual)
        first = self._projection.sequence + 1
        for sequence, event, payload in zip(itertools.count(first), events, payloads, strict=False):
            self._projection.apply(
                LogRecord(
                    sequence=sequence,
                    time=event.occurred_at,
                    subject=self._subjects.thread(event.tenant_id, event.thread_id),
                    data=payload,
                )
            )
        return list(range(first, first + len(events)))


def _scope(subjects: Subjects, tenant_id: str | None, partition: int | None) -> str | None:
    """The filter of a store confined to a tenant or a partition; None for the whole stream."""
    if tenant_id is not None:
        return subjects.tenant(tenant_id)
    if partition is None:
        return None
    if not 0 <= partition < subjects.partitions:
        raise ValidationError(
            f"partition {partition} does not exist: the stream has partitions 0 to "
            f"{subjects.partitions - 1}"
        )
    return subjects.partition(partition) if subjects.partitioned else None


class JetStreamMessageStore(_ProjectedStore):
    """Writes go to a JetStream stream; reads come from views its projection folds.

    It holds the parts beside: ``audit`` answers audit queries, shows the past, verifies
    and rebuilds (:class:`~projections.audit.Audit`; the store's methods of the same names
    hand over to it), ``snapshots`` restores and writes snapshots of its views, and
    ``group`` gathers concurrent writes into atomic batches.
    """

    def __init__(
        self,
        log: EventLog,
        worker: ProjectionWorker,
        clock: Clock,
        *,
        snapshots: Snapshots | None = None,
        tenant_id: str | None = None,
        partition: int | None = None,
    ) -> None:
        super().__init__(worker.projection, log.subjects, clock)
        self.tenant_id = tenant_id
        """The one tenant this store sees and writes, or None for all of them."""
        self.partition = partition
        """The one partition this store folds and writes, or None for all of them."""
        self._scope = _scope(log.subjects, tenant_id, partition)
        self._owns_log = True
        self._claims = IdClaims(log) if log.subjects.partitioned and tenant_id is None else None
        """Message ids claimed across partitions (a tenant's store may not: see the README)."""
        self.log = log
        self._worker = worker
        self.group = GroupCommit(log, on_stored=self._fold_stored)
        """Gathers concurrent writes into atomic batches; ``group.batches`` counts them."""
        self.snapshots = snapshots or Snapshots(log)
        self._snapshot_writer: asyncio.Task[None] | None = None
        self.audit = Audit(log, worker.projection)
        """History, execution trails, time travel, verify and rebuild, read from ``log``."""

    @classmethod
    async def connect(
        cls,
        servers: str | Sequence[str] | None = None,
        *,
        stream: str = "CONVLOG",
        subject_prefix: str = "convlog",
        replicas: int | None = None,
        options: ConnectOptions | None = None,
        wait_until_ready: bool = True,
        clock: Clock = utc_now,
        snapshots: SnapshotPolicy | None = None,
        tenant_id: str | None = None,
        partition: int | None = None,
    ) -> Self:
        """Connect to NATS, open (or create) the stream, and start the projection.

        By default this returns once the views hold every event that was in the stream
        when it connected, so a restarted service never answers from a half-built view;
        pass ``wait_until_ready=False`` to start at once and watch :meth:`health_check`.
        The views start from the newest valid snapshot, if there is one, and fold only the
        events after it; ``snapshots`` can turn that off, or have this store write
        snapshots as it goes (:class:`~projections.snapshot.SnapshotPolicy`).

        With ``tenant_id`` the store sees and writes that tenant's threads only, and needs
        no more than that tenant's permissions (see the README's "Security"); snapshots,
        which hold every tenant, are then not used.

        With ``partition`` the store folds that partition of a partitioned stream only, from
        that partition's own snapshots, and writes only threads that partition holds: what
        a replica of ``convlog serve --partitions`` runs, one store per partition.
        """
        settings = StreamSettings(name=stream, subject_prefix=subject_prefix, replicas=replicas)
        log = await EventLog.connect(servers, stream=settings, options=options)
        try:
            return await cls.open(
                log,
                wait_until_ready=wait_until_ready,
                clock=clock,
                snapshots=snapshots,
                tenant_id=tenant_id,
                partition=partition,
                owns_log=True,
            )
        except BaseException:
            await log.close()
            raise

    @classmethod
    async def open(
        cls,
        log: EventLog,
        *,
        wait_until_ready: bool = True,
        clock: Clock = utc_now,
        snapshots: SnapshotPolicy | None = None,
        tenant_id: str | None = None,
        partition: int | None = None,
        owns_log: bool = False,
    ) -> Self:
        """A store on a connected ``log``, as :meth:`connect` makes it; see there.

        Several stores may share one log (a replica's partitions do); ``close`` closes the
        log only if ``owns_log``.
        """
        if tenant_id is not None and partition is not None:
            raise ValidationError("a store is confined to a tenant or to a partition, not both")
        if tenant_id is not None:
            snapshots = SnapshotPolicy(restore=False)
        snapshot_store = Snapshots(log, snapshots, partition=partition)
        scope = _scope(log.subjects, tenant_id, partition)
        worker: ProjectionWorker | None = None
        try:
            restored = await snapshot_store.restore() if snapshot_store.policy.restore else None
            worker = ProjectionWorker(
                log, restored or Projection(log.codec, log.subjects), subject=scope
            )
            await worker.start()
            if wait_until_ready:
                with paused_gc(freeze=True):
                    await worker.caught_up()
        except BaseException:
            if worker is not None:
                await worker.stop()
            raise
        store = cls(
            log, worker, clock, snapshots=snapshot_store, tenant_id=tenant_id, partition=partition
        )
        store._owns_log = owns_log
        if (every := snapshot_store.policy.every) is not None:
            store._snapshot_writer = asyncio.create_task(
                snapshot_store.keep_writing(worker.projection, worker.wait_for, every)
            )
        return store

    async def close(self) -> None:
        """Stop the projection and the snapshot writer, and close the connection if its own."""
        if self._snapshot_writer is not None:
            self._snapshot_writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._snapshot_writer
        await self._worker.stop()
        if self._owns_log:
            await self.log.close()

    async def snapshot(self) -> SnapshotInfo:
        """Write a snapshot of the views as they are now; see :mod:`projections.snapshot`."""
        return await self.snapshots.save(self._projection)

    # --- the audit part's calls, on the store: see projections.audit.Audit ------------------

    async def history(self, message_id: str) -> list[AuditEntry]:
        """Every event that touched a message, each with the message after it."""
        return await self.audit.history(message_id)

    async def thread_history(self, thread_id: str) -> list[AuditEntry]:
        """Every event of a thread, its messages' included, each with its state after."""
        return await self.audit.thread_history(thread_id)

    async def execution_trail(self, execution_id: str) -> ExecutionTrail:
        """Every event of one agent execution, and a summary of what it did."""
        return await self.audit.execution_trail(execution_id)

    async def at(
        self, sequence: int, *, tenant_id: str | None = None, thread_id: str | None = None
    ) -> ReadOnlyStore:
        """A read-only store of the log (or a tenant, or a thread) as of stream ``sequence``."""
        return await self.audit.at(sequence, tenant_id=tenant_id, thread_id=thread_id)

    async def as_of(
        self, when: datetime, *, tenant_id: str | None = None, thread_id: str | None = None
    ) -> ReadOnlyStore:
        """A read-only store of the log (or a tenant, or a thread) as of server time ``when``."""
        return await self.audit.as_of(when, tenant_id=tenant_id, thread_id=thread_id)

    async def verify(
        self,
        *,
        tenant_id: str | None = None,
        thread_id: str | None = None,
        until: int | None = None,
    ) -> VerifyReport:
        """Recompute the hash chain of every thread in scope."""
        return await self.audit.verify(tenant_id=tenant_id, thread_id=thread_id, until=until)

    async def rebuild(
        self, *, verify: bool = False, on_progress: Callable[[int, int], None] | None = None
    ) -> Rebuilt:
        """Replay the stream into fresh views; with ``verify``, check them against these."""
        return await self.audit.rebuild(verify=verify, on_progress=on_progress)

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
        return "jetstream-message-store"

    @property
    def requires_network(self) -> bool:
        """It talks to a NATS server."""
        return True

    async def wait_for(self, sequence: int) -> None:
        """Return once this store's views have folded stream ``sequence``."""
        await self._worker.wait_for(sequence)

    async def health_check(self) -> Health:
        """ok; degraded (server away, or views stuck behind the stream); or failed."""
        failure = self._worker.failure
        connected = self.log.is_connected
        stream_sequence: int | None = None
        pending: int | None = None
        if connected and failure is None:
            with contextlib.suppress(ConvlogError):
                stream_sequence = await self.log.last_sequence()
                pending = await self._worker.pending()
        applied = self._projection.sequence
        stuck = bool(pending) and time.monotonic() - self._worker.last_progress > _STUCK_AFTER
        status: Literal["ok", "degraded", "failed"] = "ok"
        detail = ""
        if failure is not None:
            status, detail = "failed", str(failure)
        elif not connected:
            status, detail = "degraded", f"NATS at {self.log.url} is away; reads answer"
        elif stuck:
            status = "degraded"
            detail = (
                f"the views stand at {applied} with {pending} records to come, and are not moving"
            )
        return Health(
            status=status,
            applied_sequence=applied,
            connected=connected,
            stream_sequence=stream_sequence,
            skipped=tuple(self._projection.skipped),
            detail=detail,
            snapshots=self.snapshots.health(),
        )

    def _check_open(self) -> None:
        if self._worker.failure is not None:
            raise self._worker.failure

    async def _write_all(self, changes: Sequence[Change]) -> list[int]:
        """Write within twice the write timeout, whatever it waits for on the way.

        A write may queue behind a batch in flight, wait for its own batch's ack, and wait
        for the fold; each wait is bounded, and so is their sum.
        """
        for change in changes:
            self.check_holds(change.thread_id)
        if len(changes) > 1 and not self.log.supports_atomic:
            raise ConvlogError(
                f"stream {self.log.stream.name!r} does not take atomic batches, so it cannot "
                "store a transaction (needs nats-server 2.12 or newer and allow_atomic); "
                "nothing was written"
            )
        deadline = 2 * self.log.write_timeout
        try:
            async with asyncio.timeout(deadline):
                return await super()._write_all(changes)
        except TimeoutError:
            raise UnavailableError(
                self.log.url,
                f"the write did not complete within {deadline}s; it may or may not be "
                "stored, and repeating the call is safe",
            ) from None

    async def catch_up(self, thread_id: str) -> None:
        """Return once the views hold every event of ``thread_id`` stored before this call.

        Another process's writes reach these views when the stream delivers them; this
        asks the stream for the thread's last record and waits for it to be folded
        (UnavailableError past the write timeout).
        """
        self.check_holds(thread_id)
        last = await self.log.last_on_subject(self._subjects.matching(self.tenant_id, thread_id))
        if last is not None:
            await self._folded(last[0])

    def check_holds(self, thread_id: str) -> None:
        """Raise ValidationError if ``thread_id`` lives in a partition this store does not fold.

        Its writes would never come back to these views, and its reads would find nothing.
        """
        if self.partition is None or not thread_id:
            return
        held = self._subjects.partition_of(thread_id)
        if held != self.partition:
            raise ValidationError(
                f"thread {thread_id!r} is held by partition {held}; this store folds "
                f"partition {self.partition} only"
            )

    def _encode(self, event: AnyEvent) -> bytes:
        return self.log.encode(event)

    async def _refusals(self, events: Sequence[AnyEvent]) -> list[tuple[int, ConvlogError]]:
        """Events outside this store's tenant or partition, and creates of ids claimed elsewhere."""
        refused: list[tuple[int, ConvlogError]] = []
        for index, event in enumerate(events):
            if self.tenant_id is not None and event.tenant_id != self.tenant_id:
                refused.append(
                    (
                        index,
                        PermissionDeniedError(
                            f"this store is confined to tenant {self.tenant_id!r}, "
                            f"not {event.tenant_id!r}"
                        ),
                    )
                )
        if refused or self._claims is None:
            return refused
        claims = self._claims
        creates = [(i, e) for i, e in enumerate(events) if isinstance(e, MessageCreated)]
        claiming = [claims.claim(e.message_id or "", e.tenant_id, e.thread_id) for _, e in creates]
        # One claim (a write alone) is awaited here: gather would make it a task of its own.
        owners = [await claiming[0]] if len(claiming) == 1 else await asyncio.gather(*claiming)
        return [
            (index, AlreadyExistsError("message", event.message_id or ""))
            for (index, event), owner in zip(creates, owners, strict=True)
            if owner is not None
        ]

    async def _commit(
        self, events: Sequence[AnyEvent], payloads: Sequence[bytes], expected: Sequence[int | None]
    ) -> list[int]:
        if len(events) == 1:
            sequences = [
                await self.group.append(events[0], expected=expected[0], payload=payloads[0])
            ]
        else:
            sequences = await self.group.append_unit(events, expected=expected, payloads=payloads)
        await self._folded(sequences[-1])
        return sequences

    def _fold_stored(self, records: Sequence[LogRecord]) -> None:
        """Fold the records this store just appended, in order, when they are next.

        That is read-your-writes without waiting for the stream to deliver them back.
        """
        for record in records:
            self._worker.fold_own(record)

    async def _folded(self, sequence: int) -> None:
        """Wait, within the write timeout, for this store's views to fold ``sequence``."""
        if self._projection.sequence >= sequence and self._worker.failure is None:
            return  # the common case: fold_own applied it already; skip the timer task
        await self._within_write_timeout(
            self._worker.wait_for(sequence),
            f"the event is stored at sequence {sequence}, but this store's views had not folded it",
        )

    async def _within_write_timeout(self, catching_up: Awaitable[None], what: str) -> None:
        try:
            await asyncio.wait_for(catching_up, self.log.write_timeout)
        except TimeoutError:
            raise UnavailableError(
                self.log.url,
                f"{what} within {self.log.write_timeout}s (catching up after a reconnect?); "
                "repeating the call is safe",
            ) from None

    async def _catch_up(self, conflict: ConflictError | None, thread_id: str) -> None:
        if conflict is not None and conflict.actual is not None:
            await self._folded(conflict.actual)
        elif self._scope is None:
            await self._folded(await self.log.last_sequence())
        else:
            # The stream's end may lie outside this store's subjects (and a tenant may not
            # ask for it): the thread's last record, or the last in scope, will do.
            subject = self._subjects.matching(self.tenant_id, thread_id) if thread_id else None
            last = await self.log.last_on_subject(subject or self._scope)
            if last is not None:
                await self._folded(last[0])
