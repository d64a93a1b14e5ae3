"""Indexed in-memory views of the log, and the pure fold that keeps them.

The views hold frozen domain models, indexed so that no query scans the whole store: by
id, by thread (message ids in log order), by execution, and by (tenant, user) sorted by
creation time with log order breaking ties. They also keep, per thread subject, the last
sequence and stored bytes, which writers need for optimistic concurrency and the hash chain.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import operator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import msgspec

from eventlog import (
    AnyEvent,
    EventCodec,
    LogRecord,
    MalformedEventError,
    Message,
    MessageCreated,
    MessageDeleted,
    MessageUpdated,
    Subjects,
    Thread,
    ThreadCreated,
    ThreadDeleted,
    ThreadUpdated,
    ValidationError,
)
from projections._gc import paused_gc

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "EventRejectedError",
    "Projection",
    "SkippedEvent",
    "SubjectHead",
    "Views",
    "ViewsState",
]

logger = logging.getLogger(__name__)


class EventRejectedError(ValidationError):
    """A well-formed event that does not fit the state, e.g. a message for an unknown thread."""


@dataclass(frozen=True, slots=True)
class SubjectHead:
    """The last record on a thread subject: what the next append must expect and chain to."""

    sequence: int
    payload: bytes


class SkippedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A record the projection could not apply: counted, kept for inspection, never fatal."""

    sequence: int
    subject: str
    reason: str


@dataclass(slots=True)
class _ThreadEntry:
    thread: Thread
    sequence: int
    message_ids: list[str] = field(default_factory=list)
    active_messages: int = 0


@dataclass(slots=True)
class _MessageEntry:
    message: Message
    sequence: int


_OwnerKey = tuple[str, str]
_OwnerItem = tuple[datetime, int, str]  # (created_at, creation sequence, thread id)


class _MessageRow(msgspec.Struct, array_like=True, frozen=True):
    message: bytes
    sequence: int


class _ThreadRow(msgspec.Struct, array_like=True, frozen=True):
    id: str
    thread: bytes
    sequence: int
    messages: list[_MessageRow]
    active_messages: int


class ViewsState(msgspec.Struct, frozen=True, kw_only=True):
    """The whole state of :class:`Views` as plain data: what a snapshot stores.

    Threads and messages are kept as their JSON (the seed's wire format), each thread with
    its messages in log order; the indexes and subject heads as they are.
    """

    threads: list[_ThreadRow]
    by_execution: dict[str, list[str]]
    by_owner: list[tuple[str, str, list[_OwnerItem]]]
    heads: list[tuple[str, int, bytes]]

    def digest(self) -> str:
        """The digest of the views this state holds, as :meth:`Views.digest` gives it."""
        return _digest(
            (row.id, row.thread, (m.message for m in row.messages)) for row in self.threads
        )


def _digest(threads: Iterable[tuple[str, bytes, Iterable[bytes]]]) -> str:
    """SHA-256 over each thread's JSON then its messages' JSON, threads sorted by id."""
    hasher = hashlib.sha256()
    for _, thread, messages in sorted(threads, key=operator.itemgetter(0)):
        hasher.update(thread)
        for message in messages:
            hasher.update(message)
    return hasher.hexdigest()


_THREAD_FIXED = ("id", "tenant_id", "user_id", "created_at", "deleted_at")
_MESSAGE_FIXED = ("id", "thread_id", "role", "execution_id", "created_at", "deleted_at")
"""What an update event may not change: identity, indexes, and deletion (which is final)."""


def _unchanged(
    kind: str, entity_id: str, old: Thread | Message, new: Thread | Message, fields: Sequence[str]
) -> None:
    changed = [name for name in fields if getattr(old, name) != getattr(new, name)]
    if changed:
        raise EventRejectedError(f"{kind} {entity_id!r} update changes {', '.join(changed)}")


class Views:
    """The projected state; :meth:`apply` is the fold, the other methods answer queries."""

    def __init__(self) -> None:
        self._threads: dict[str, _ThreadEntry] = {}
        self._messages: dict[str, _MessageEntry] = {}
        self._by_execution: dict[str, list[str]] = {}
        self._by_owner: dict[_OwnerKey, list[_OwnerItem]] = {}
        self._heads: dict[str, SubjectHead] = {}

    # --- the fold --------------------------------------------------------------------------

    def advance(self, subject: str, sequence: int, payload: bytes) -> None:
        """Record that ``subject`` now ends at ``sequence``, whatever the record holds."""
        self._heads[subject] = SubjectHead(sequence, payload)

    def apply(self, sequence: int, event: AnyEvent) -> None:
        """Fold one event into the views, or raise :class:`EventRejectedError`.

        Every check comes before the first change, so a rejected event leaves no trace.
        """
        match event:
            case ThreadCreated(thread=thread):
                self._create_thread(sequence, event, thread)
            case ThreadUpdated(thread=thread):
                self._update_thread(sequence, event, thread)
            case ThreadDeleted(deleted_at=deleted_at):
                thread_entry = self._thread_entry(event)
                if thread_entry.thread.deleted_at is None:
                    self._unlist(thread_entry, thread_entry.thread)
                    thread_entry.thread = thread_entry.thread.model_copy(
                        update={"deleted_at": deleted_at.astimezone(UTC)}
                    )
                thread_entry.sequence = sequence
            case MessageCreated(message=message):
                self._create_message(sequence, event, message)
            case MessageUpdated(message=message):
                entry = self._message_entry(event, event.message_id)
                _unchanged("message", message.id, entry.message, message, _MESSAGE_FIXED)
                entry.message, entry.sequence = message, sequence
            case MessageDeleted(deleted_at=deleted_at):
                entry = self._message_entry(event, event.message_id)
                if entry.message.deleted_at is None:
                    deleted = entry.message.model_copy(
                        update={"deleted_at": deleted_at.astimezone(UTC)}
                    )
                    self._count(entry.message, deleted)
                    entry.message = deleted
                entry.sequence = sequence

    def _create_thread(self, sequence: int, event: AnyEvent, thread: Thread) -> None:
        if (thread.id, thread.tenant_id) != (event.thread_id, event.tenant_id):
            raise EventRejectedError(
                f"thread {thread.id!r} of tenant {thread.tenant_id!r} arrived as thread "
                f"{event.thread_id!r} of tenant {event.tenant_id!r}"
            )
        if thread.id in self._threads:
            raise EventRejectedError(f"thread {thread.id!r} is created twice")
        self._threads[thread.id] = _ThreadEntry(thread, sequence)
        if thread.deleted_at is None:
            items = self._by_owner.setdefault((thread.tenant_id, thread.user_id), [])
            bisect.insort(items, (thread.created_at, sequence, thread.id))

    def _update_thread(self, sequence: int, event: AnyEvent, thread: Thread) -> None:
        entry = self._thread_entry(event)
        if entry.thread.deleted_at is not None:
            raise EventRejectedError(f"thread {thread.id!r} is deleted and takes no updates")
        _unchanged("thread", thread.id, entry.thread, thread, _THREAD_FIXED)
        entry.thread, entry.sequence = thread, sequence

    def _unlist(self, entry: _ThreadEntry, thread: Thread) -> None:
        """Drop a thread from its owner's listing (it was deleted)."""
        items = self._by_owner.get((thread.tenant_id, thread.user_id), [])
        index = bisect.bisect_left(items, (thread.created_at,))
        while index < len(items) and items[index][2] != entry.thread.id:
            index += 1
        if index < len(items):
            del items[index]

    def _create_message(self, sequence: int, event: MessageCreated, message: Message) -> None:
        if message.thread_id != event.thread_id:
            raise EventRejectedError(
                f"message {message.id!r} names thread {message.thread_id!r} "
                f"but arrived under thread {event.thread_id!r}"
            )
        thread = self._thread_entry(event)
        if message.id != event.message_id:
            raise EventRejectedError(
                f"message {message.id!r} arrived as message {event.message_id!r}"
            )
        if message.id in self._messages:
            raise EventRejectedError(f"message {message.id!r} is created twice")
        self._messages[message.id] = _MessageEntry(message, sequence)
        thread.message_ids.append(message.id)
        if message.deleted_at is None:
            thread.active_messages += 1
        if message.execution_id is not None:
            self._by_execution.setdefault(message.execution_id, []).append(message.id)
        if event.occurred_at > thread.thread.updated_at:
            thread.thread = thread.thread.model_copy(
                update={"updated_at": event.occurred_at.astimezone(UTC)}
            )
        thread.sequence = sequence

    def _count(self, before: Message, after: Message) -> None:
        change = (after.deleted_at is None) - (before.deleted_at is None)
        if change:
            self._threads[after.thread_id].active_messages += change

    def _thread_entry(self, event: AnyEvent) -> _ThreadEntry:
        """The event's thread, which must exist in the event's tenant."""
        entry = self._threads.get(event.thread_id)
        if entry is None or entry.thread.tenant_id != event.tenant_id:
            raise EventRejectedError(
                f"thread {event.thread_id!r} does not exist in tenant {event.tenant_id!r}"
            )
        return entry

    def _message_entry(self, event: AnyEvent, message_id: str | None) -> _MessageEntry:
        """The event's message, which must exist in the event's thread and tenant."""
        self._thread_entry(event)
        entry = self._messages.get(message_id or "")
        if entry is None or entry.message.thread_id != event.thread_id:
            raise EventRejectedError(f"message {message_id!r} does not exist in this thread")
        return entry

    # --- queries ---------------------------------------------------------------------------

    @property
    def thread_count(self) -> int:
        """Threads in the views, deleted ones included."""
        return len(self._threads)

    @property
    def message_count(self) -> int:
        """Messages in the views, deleted ones included."""
        return len(self._messages)

    def head(self, subject: str) -> SubjectHead | None:
        """The last record on ``subject``, or None when the subject is empty."""
        return self._heads.get(subject)

    def thread(self, thread_id: str) -> Thread | None:
        """The thread, deleted or not, or None."""
        entry = self._threads.get(thread_id)
        return entry.thread if entry is not None else None

    def message(self, message_id: str) -> Message | None:
        """The message, deleted or not, or None."""
        entry = self._messages.get(message_id)
        return entry.message if entry is not None else None

    def list_threads(self, tenant_id: str, user_id: str, limit: int, offset: int) -> list[Thread]:
        """Live threads of a user, newest first, a page at a time."""
        items = self._by_owner.get((tenant_id, user_id), [])
        end = max(len(items) - offset, 0)
        start = max(end - limit, 0)
        return [self._threads[items[i][2]].thread for i in range(end - 1, start - 1, -1)]

    def list_messages(self, thread_id: str, *, include_deleted: bool) -> list[Message]:
        """A thread's messages in log order."""
        entry = self._threads.get(thread_id)
        if entry is None:
            return []
        messages = [self._messages[m].message for m in entry.message_ids]
        if include_deleted:
            return messages
        return [m for m in messages if m.deleted_at is None]

    def messages_by_execution(self, execution_id: str) -> list[Message]:
        """Every message an execution wrote, in log order, deleted ones included."""
        return [self._messages[m].message for m in self._by_execution.get(execution_id, [])]

    def count_messages(self, thread_id: str) -> int:
        """Live messages in a thread."""
        entry = self._threads.get(thread_id)
        return entry.active_messages if entry is not None else 0

    def digest(self) -> str:
        """A digest of every thread and message; equal views give equal digests."""
        with paused_gc():
            return _digest(
                (
                    thread_id,
                    entry.thread.model_dump_json().encode(),
                    (
                        self._messages[m].message.model_dump_json().encode()
                        for m in entry.message_ids
                    ),
                )
                for thread_id, entry in self._threads.items()
            )

    # --- the whole state, for snapshots ----------------------------------------------------

    def dump(self) -> ViewsState:
        """Everything the views hold, as plain data (models as their JSON), for a snapshot."""
        with paused_gc():
            return self._dump()

    def _dump(self) -> ViewsState:
        return ViewsState(
            threads=[
                _ThreadRow(
                    id=thread_id,
                    thread=entry.thread.model_dump_json().encode(),
                    sequence=entry.sequence,
                    messages=[
                        _MessageRow(
                            message=self._messages[m].message.model_dump_json().encode(),
                            sequence=self._messages[m].sequence,
                        )
                        for m in entry.message_ids
                    ],
                    active_messages=entry.active_messages,
                )
                for thread_id, entry in self._threads.items()
            ],
            by_execution={key: list(ids) for key, ids in self._by_execution.items()},
            by_owner=[(*key, items) for key, items in self._by_owner.items()],
            heads=[(s, head.sequence, head.payload) for s, head in self._heads.items()],
        )

    @classmethod
    def load(cls, state: ViewsState) -> Views:
        """Views holding exactly ``state``; the models are validated as they are read."""
        with paused_gc(freeze=True):
            return cls._load(state)

    @classmethod
    def _load(cls, state: ViewsState) -> Views:
        views = cls()
        for row in state.threads:
            thread = Thread.model_validate_json(row.thread)
            entry = _ThreadEntry(thread, row.sequence, active_messages=row.active_messages)
            views._threads[thread.id] = entry
            for message_row in row.messages:
                message = Message.model_validate_json(message_row.message)
                views._messages[message.id] = _MessageEntry(message, message_row.sequence)
                entry.message_ids.append(message.id)
        views._by_execution = {key: list(ids) for key, ids in state.by_execution.items()}
        views._by_owner = {(tenant, user): list(items) for tenant, user, items in state.by_owner}
        views._heads = {s: SubjectHead(sequence, payload) for s, sequence, payload in state.heads}
        return views


class Projection:
    """Folds log records into :class:`Views`, skipping and recording what cannot apply.

    A record that cannot apply (not an event, a newer schema, an event that contradicts
    the state or arrived on another thread's subject) is skipped, logged and kept in
    :attr:`skipped`: a bad record on an append-only stream must never stop the projection.
    """

    def __init__(self, codec: EventCodec | None = None, subjects: Subjects | None = None) -> None:
        self.views = Views()
        self.sequence = 0
        """The last stream sequence folded (applied or skipped)."""
        self.skipped: list[SkippedEvent] = []
        self._skipped_at: dict[int, SkippedEvent] = {}
        self._codec = codec or EventCodec()
        self._subjects = subjects or Subjects()

    def apply(self, record: LogRecord) -> AnyEvent | None:
        """Fold one record; a record that cannot apply is skipped, logged and counted.

        Returns the event applied, or None when the record was skipped or redelivered.
        """
        if record.sequence <= self.sequence:
            return None  # redelivered: each sequence takes effect once
        self.views.advance(record.subject, record.sequence, record.data)
        event: AnyEvent | None = None
        try:
            event = self._codec.decode(record.data)
            self._check_subject(record, event)
            self.views.apply(record.sequence, event)
        except Exception as err:  # noqa: BLE001 - any record that cannot apply is skipped
            event = None
            self._skip(record, err)
        self.sequence = record.sequence
        return event

    def _check_subject(self, record: LogRecord, event: AnyEvent) -> None:
        """The subject is what the server checked concurrency and permissions on: trust it."""
        expected = self._subjects.thread(event.tenant_id, event.thread_id)
        if record.subject != expected:
            raise EventRejectedError(f"an event for {expected!r} arrived on {record.subject!r}")

    def _skip(self, record: LogRecord, err: Exception) -> None:
        known = isinstance(err, MalformedEventError | EventRejectedError)
        reason = str(err) if known else f"unexpected {type(err).__name__}: {err}"
        skipped = SkippedEvent(sequence=record.sequence, subject=record.subject, reason=reason)
        self.skipped.append(skipped)
        self._skipped_at[record.sequence] = skipped
        logger.warning("skipped sequence %d on %s: %s", *msgspec.structs.astuple(skipped))

    def resume(self, views: Views, sequence: int, skipped: Iterable[SkippedEvent]) -> None:
        """Continue from a saved state (a snapshot): these views, folded up to ``sequence``."""
        self.views = views
        self.sequence = sequence
        self.skipped = list(skipped)
        self._skipped_at = {record.sequence: record for record in self.skipped}

    def rejection(self, sequence: int) -> SkippedEvent | None:
        """Why the record at ``sequence`` was skipped, or None if it applied (or is unseen)."""
        return self._skipped_at.get(sequence)
