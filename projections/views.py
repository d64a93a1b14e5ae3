"""Indexed in-memory views of the log: what every query answers from.

The views hold each thread and message as the fold decoded it, as msgspec data (see
:mod:`eventlog.wire`), and make its frozen pydantic model when a query asks for it, keeping
the models read most recently in a bounded cache (:mod:`projections.model_cache`). They
are indexed so that no query scans the whole store: by id, by thread (message ids in log
order), by execution, and by (tenant, user) sorted by creation time with log order
breaking ties. They also keep, per thread subject, the last sequence and stored bytes,
which writers need for optimistic concurrency and the hash chain.
:meth:`Views.apply` changes them by one event; :mod:`projections.fold` feeds it records.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import operator
from datetime import datetime
from typing import TYPE_CHECKING, Final

import msgspec

from eventlog import Message, MessageDeleted, Thread, ThreadDeleted
from eventlog.events import (
    DataEvent,
    MessageCreatedData,
    MessageUpdatedData,
    ThreadCreatedData,
    ThreadUpdatedData,
)
from eventlog.wire import MessageData, ThreadData, parse_utc, utc_text
from projections._gc import paused_gc
from projections.errors import EventRejectedError
from projections.model_cache import ModelCache

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = ["CACHED_MODELS", "SubjectHead", "ThreadRow", "Views", "ViewsState"]

CACHED_MODELS: Final = 50_000
"""How many message models, and how many thread models, views keep by default.

Measured at 1,000,000 messages of ~200 B text, each read once: keeping 10,000 models added
11 B a message to the ~630 B of the views as folded, 50,000 added 60 B, 200,000 added
164 B, and keeping every one (as the views did before the bound) 1,281 B. A model not kept
is made again in ~13-26 µs a message on this project's busy 2-core machine (warm: ~0.3-0.5
µs). So 50,000 keep the last 1,000 fifty-message threads read warm in ~60-75 MB however
large the store grows, a small part of the views of any store that outgrows them.
"""


class SubjectHead(msgspec.Struct, frozen=True):
    """The last record on a thread subject: what the next append must expect and chain to."""

    sequence: int
    payload: bytes


_MESSAGE_DATA = msgspec.json.Decoder(MessageData)
_THREAD_DATA = msgspec.json.Decoder(ThreadData)


class _ThreadEntry:
    """A thread: its data and what the views index it by.

    A new message moves ``updated_at`` forward on every append; the data catches up only
    when it is read, since most of those moves are never looked at.
    """

    __slots__ = (
        "_data",
        "_moved",
        "active_messages",
        "created_at",
        "message_ids",
        "sequence",
        "updated_at",
    )

    def __init__(self, data: ThreadData, sequence: int, message_ids: list[str]) -> None:
        self.sequence = sequence
        self.message_ids = message_ids
        self.active_messages = 0
        self.created_at = parse_utc(data.created_at)
        self.set(data)

    def set(self, data: ThreadData) -> None:
        """Hold ``data`` as the thread now is."""
        self._data = data
        self._moved = False
        self.updated_at = parse_utc(data.updated_at)

    def touch(self, instant: datetime) -> bool:
        """A message was written at ``instant``: ``updated_at`` moves there, never back.

        Returns whether it moved, and so whether the thread's model is stale.
        """
        if instant > self.updated_at:
            self.updated_at = instant
            self._moved = True
            return True
        return False

    @property
    def tenant_id(self) -> str:
        """The thread's tenant."""
        return self._data.tenant_id

    @property
    def deleted(self) -> bool:
        """Whether the thread is soft-deleted."""
        return self._data.deleted_at is not None

    @property
    def data(self) -> ThreadData:
        """The thread as it is now."""
        if self._moved:
            self._data = msgspec.structs.replace(self._data, updated_at=utc_text(self.updated_at))
            self._moved = False
        return self._data


class _MessageEntry(msgspec.Struct, gc=False):
    """A message: its data and the sequence that last changed it.

    A message restored from a snapshot is held as its place in the snapshot's row until
    the fold or a query first needs it: most of a large store's messages are never read in
    a process's lifetime, and copying a million of them out takes a second. A Struct, made
    in C and untracked by the collector (it holds no cycles): a restore makes a million.
    """

    source: MessageData | ThreadRow
    sequence: int
    position: int = 0
    """Which of the row's messages this is, when ``source`` is a snapshot's row."""

    def set(self, data: MessageData, sequence: int) -> None:
        """Hold ``data`` as the message now is, changed at ``sequence``."""
        self.source = data
        self.sequence = sequence

    @property
    def data(self) -> MessageData:
        """The message as msgspec data."""
        source = self.source
        if isinstance(source, ThreadRow):
            source = self.source = _MESSAGE_DATA.decode(source.message(self.position))
        return source

    def json(self) -> bytes:
        """The message's JSON."""
        source = self.source
        if isinstance(source, ThreadRow):
            return bytes(source.message(self.position))
        return source.json()


_OwnerKey = tuple[str, str]
_OwnerItem = tuple[datetime, int, str]  # (created_at, creation sequence, thread id)


class ThreadRow(msgspec.Struct, array_like=True, frozen=True):
    """A thread in a :class:`ViewsState`: its JSON, and its messages' JSON and positions."""

    id: str
    thread: bytes
    sequence: int
    active_messages: int
    message_ids: list[str]
    message_sequences: list[int]
    messages: memoryview
    """The messages' JSON one after the other, read without a copy (see _MessageEntry)."""
    message_ends: list[int]
    """Where each message's JSON ends in ``messages``."""

    def message(self, position: int) -> memoryview:
        """The JSON of the message at ``position`` (0 is the thread's first)."""
        start = self.message_ends[position - 1] if position else 0
        return self.messages[start : self.message_ends[position]]


class ViewsState(msgspec.Struct, frozen=True, kw_only=True):
    """The whole state of :class:`Views` as plain data: what a snapshot stores.

    Threads and messages are kept as their JSON (the seed's wire format), each thread with
    its messages in log order; the indexes and subject heads as they are.
    """

    threads: list[ThreadRow]
    by_execution: dict[str, list[str]]
    by_owner: list[tuple[str, str, list[_OwnerItem]]]
    heads: list[tuple[str, int, bytes]]

    def digest(self) -> str:
        """The digest of the views this state holds, as :meth:`Views.digest` gives it."""
        return _digest((row.id, row.thread, (row.messages,)) for row in self.threads)


def _digest(threads: Iterable[tuple[str, bytes, Iterable[bytes | memoryview]]]) -> str:
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
    kind: str,
    entity_id: str,
    old: ThreadData | MessageData,
    new: ThreadData | MessageData,
    fields: Sequence[str],
) -> None:
    changed = [name for name in fields if getattr(old, name) != getattr(new, name)]
    if changed:
        raise EventRejectedError(f"{kind} {entity_id!r} update changes {', '.join(changed)}")


class Views:
    """The projected state; :meth:`apply` is the fold, the other methods answer queries.

    Queries answer with models made from the data, of which the views keep at most
    ``cached_models`` messages' and as many threads' (see :data:`CACHED_MODELS`); every
    change of a thread or message drops its cached model.
    """

    def __init__(self, *, cached_models: int = CACHED_MODELS) -> None:
        self._threads: dict[str, _ThreadEntry] = {}
        self._messages: dict[str, _MessageEntry] = {}
        self._by_execution: dict[str, list[str]] = {}
        self._by_owner: dict[_OwnerKey, list[_OwnerItem]] = {}
        self._heads: dict[str, SubjectHead] = {}
        self._thread_models: ModelCache[Thread] = ModelCache(cached_models)
        self._message_models: ModelCache[Message] = ModelCache(cached_models)

    # --- the fold --------------------------------------------------------------------------

    def advance(self, subject: str, sequence: int, payload: bytes) -> None:
        """Record that ``subject`` now ends at ``sequence``, whatever the record holds."""
        self._heads[subject] = SubjectHead(sequence, payload)

    def apply(self, sequence: int, event: DataEvent) -> None:
        """Fold one event into the views, or raise :class:`EventRejectedError`.

        Every check comes before the first change, so a rejected event leaves no trace.
        """
        match event:  # the commonest first
            case MessageCreatedData():
                self._create_message(sequence, event)
            case MessageUpdatedData(message=message):
                entry = self._message_entry(event, event.message_id)
                _unchanged("message", message.id, entry.data, message, _MESSAGE_FIXED)
                entry.set(message, sequence)
                self._message_models.drop(message.id)
            case MessageDeleted(deleted_at=deleted_at):
                entry = self._message_entry(event, event.message_id)
                if entry.data.deleted_at is None:
                    deleted = msgspec.structs.replace(entry.data, deleted_at=utc_text(deleted_at))
                    self._threads[deleted.thread_id].active_messages -= 1
                    entry.set(deleted, sequence)
                    self._message_models.drop(deleted.id)
                entry.sequence = sequence
            case ThreadCreatedData(thread=thread):
                self._create_thread(sequence, event, thread)
            case ThreadUpdatedData(thread=thread):
                self._update_thread(sequence, event, thread)
            case ThreadDeleted(deleted_at=deleted_at):
                thread_entry = self._thread_entry(event)
                if not thread_entry.deleted:
                    self._unlist(thread_entry)
                    thread_entry.set(
                        msgspec.structs.replace(thread_entry.data, deleted_at=utc_text(deleted_at))
                    )
                    self._thread_models.drop(event.thread_id)
                thread_entry.sequence = sequence

    def _create_thread(self, sequence: int, event: DataEvent, thread: ThreadData) -> None:
        if (thread.id, thread.tenant_id) != (event.thread_id, event.tenant_id):
            raise EventRejectedError(
                f"thread {thread.id!r} of tenant {thread.tenant_id!r} arrived as thread "
                f"{event.thread_id!r} of tenant {event.tenant_id!r}"
            )
        if thread.id in self._threads:
            raise EventRejectedError(f"thread {thread.id!r} is created twice")
        entry = _ThreadEntry(thread, sequence, [])
        self._threads[thread.id] = entry
        if thread.deleted_at is None:
            items = self._by_owner.setdefault((thread.tenant_id, thread.user_id), [])
            bisect.insort(items, (entry.created_at, sequence, thread.id))

    def _update_thread(self, sequence: int, event: DataEvent, thread: ThreadData) -> None:
        entry = self._thread_entry(event)
        if entry.deleted:
            raise EventRejectedError(f"thread {thread.id!r} is deleted and takes no updates")
        _unchanged("thread", thread.id, entry.data, thread, _THREAD_FIXED)
        entry.set(thread)
        self._thread_models.drop(thread.id)
        entry.sequence = sequence

    def _unlist(self, entry: _ThreadEntry) -> None:
        """Drop a thread from its owner's listing (it was deleted)."""
        data = entry.data
        items = self._by_owner.get((data.tenant_id, data.user_id), [])
        index = bisect.bisect_left(items, (entry.created_at,))
        while index < len(items) and items[index][2] != data.id:
            index += 1
        if index < len(items):
            del items[index]

    def _create_message(self, sequence: int, event: MessageCreatedData) -> None:
        message = event.message
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
        if thread.touch(event.occurred_at):
            self._thread_models.drop(event.thread_id)
        thread.sequence = sequence

    def _thread_entry(self, event: DataEvent) -> _ThreadEntry:
        """The event's thread, which must exist in the event's tenant."""
        entry = self._threads.get(event.thread_id)
        if entry is None or entry.tenant_id != event.tenant_id:
            raise EventRejectedError(
                f"thread {event.thread_id!r} does not exist in tenant {event.tenant_id!r}"
            )
        return entry

    def _message_entry(self, event: DataEvent, message_id: str | None) -> _MessageEntry:
        """The event's message, which must exist in the event's thread and tenant."""
        self._thread_entry(event)
        entry = self._messages.get(message_id or "")
        if entry is None or entry.data.thread_id != event.thread_id:
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
        model = self._thread_models.get(thread_id)
        if model is None and thread_id in self._threads:
            model = self._make_thread(thread_id)
            self._thread_models.put(thread_id, model)
        return model

    def thread_status(self, thread_id: str) -> tuple[str, bool] | None:
        """The thread's (tenant id, whether deleted), or None: what a write checks, no model."""
        entry = self._threads.get(thread_id)
        return (entry.tenant_id, entry.deleted) if entry is not None else None

    def message(self, message_id: str) -> Message | None:
        """The message, deleted or not, or None."""
        model = self._message_models.get(message_id)
        if model is None and message_id in self._messages:
            model = self._make_message(message_id)
            self._message_models.put(message_id, model)
        return model

    def _make_thread(self, thread_id: str) -> Thread:
        """The model of a thread the views hold, made from its data (when not cached)."""
        return self._threads[thread_id].data.model()

    def _make_message(self, message_id: str) -> Message:
        """The model of a message the views hold, made from its data (when not cached)."""
        return self._messages[message_id].data.model()

    def message_version(self, message_id: str) -> int | None:
        """The stream sequence of the message's last change (its version), or None."""
        entry = self._messages.get(message_id)
        return entry.sequence if entry is not None else None

    def list_threads(self, tenant_id: str, user_id: str, limit: int, offset: int) -> list[Thread]:
        """Live threads of a user, newest first, a page at a time."""
        return [thread for _, thread in self.ranked_threads(tenant_id, user_id, limit, offset)]

    def ranked_threads(
        self, tenant_id: str, user_id: str, limit: int, offset: int
    ) -> list[tuple[int, Thread]]:
        """:meth:`list_threads` with each thread's creation sequence, which orders them.

        Newest first is by creation time, then by creation sequence: pages of several
        partitions merge into the page one view of them all would give.
        """
        items = self._by_owner.get((tenant_id, user_id), [])
        end = max(len(items) - offset, 0)
        start = max(end - limit, 0)
        page = items[start:end][::-1]
        models = self._thread_models.get_many([item[2] for item in page], self._make_thread)
        return [(item[1], model) for item, model in zip(page, models, strict=True)]

    def list_messages(self, thread_id: str, *, include_deleted: bool) -> list[Message]:
        """A thread's messages in log order."""
        entry = self._threads.get(thread_id)
        if entry is None:
            return []
        messages = self._message_models.get_many(entry.message_ids, self._make_message)
        if include_deleted:
            return messages
        return [m for m in messages if m.deleted_at is None]

    # --- the same answers as JSON, for the query service: no model in between -------------

    def thread_json(self, thread_id: str) -> bytes | None:
        """:meth:`thread` as the seed's JSON."""
        entry = self._threads.get(thread_id)
        return entry.data.json() if entry is not None else None

    def message_json(self, message_id: str) -> bytes | None:
        """:meth:`message` as the seed's JSON."""
        entry = self._messages.get(message_id)
        return entry.json() if entry is not None else None

    def messages_json(self, thread_id: str, *, include_deleted: bool) -> bytes:
        """:meth:`list_messages` as a JSON array."""
        entry = self._threads.get(thread_id)
        entries = [self._messages[m] for m in entry.message_ids] if entry is not None else []
        if not include_deleted:
            entries = [e for e in entries if e.data.deleted_at is None]
        return b"[" + b",".join(e.json() for e in entries) + b"]"

    def messages_by_execution_json(self, execution_id: str) -> bytes:
        """:meth:`messages_by_execution` as a JSON array."""
        ids = self._by_execution.get(execution_id, [])
        return b"[" + b",".join(self._messages[m].json() for m in ids) + b"]"

    def messages_by_execution(self, execution_id: str) -> list[Message]:
        """Every message an execution wrote, in log order, deleted ones included."""
        ids = self._by_execution.get(execution_id, [])
        return self._message_models.get_many(ids, self._make_message)

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
                    entry.data.json(),
                    (self._messages[m].json() for m in entry.message_ids),
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
            threads=[self._row(thread_id, entry) for thread_id, entry in self._threads.items()],
            by_execution={key: list(ids) for key, ids in self._by_execution.items()},
            by_owner=[(*key, items) for key, items in self._by_owner.items()],
            heads=[(s, head.sequence, head.payload) for s, head in self._heads.items()],
        )

    def _row(self, thread_id: str, entry: _ThreadEntry) -> ThreadRow:
        messages = [self._messages[m] for m in entry.message_ids]
        jsons = [m.json() for m in messages]
        return ThreadRow(
            id=thread_id,
            thread=entry.data.json(),
            sequence=entry.sequence,
            active_messages=entry.active_messages,
            message_ids=list(entry.message_ids),
            message_sequences=[m.sequence for m in messages],
            messages=memoryview(b"".join(jsons)),
            message_ends=list(itertools.accumulate(map(len, jsons))),
        )

    @classmethod
    def load(cls, state: ViewsState, *, cached_models: int = CACHED_MODELS) -> Views:
        """Views holding exactly ``state``; messages are read from their JSON when needed.

        The views take over the lists in ``state`` rather than copy them (a million entries
        are a second's work): ``state`` must not be used afterwards. Raises
        :class:`msgspec.ValidationError` for a thread that does not read back.
        """
        with paused_gc(freeze=True):
            return cls._load(state, cached_models)

    @classmethod
    def _load(cls, state: ViewsState, cached_models: int) -> Views:
        views = cls(cached_models=cached_models)
        messages = views._messages
        for row in state.threads:
            entry = _ThreadEntry(_THREAD_DATA.decode(row.thread), row.sequence, row.message_ids)
            entry.active_messages = row.active_messages
            views._threads[row.id] = entry
            entries = map(
                _MessageEntry, itertools.repeat(row), row.message_sequences, itertools.count()
            )
            messages.update(zip(row.message_ids, entries, strict=True))
        views._by_execution = state.by_execution
        views._by_owner = {(tenant, user): items for tenant, user, items in state.by_owner}
        views._heads = {s: SubjectHead(sequence, payload) for s, sequence, payload in state.heads}
        return views
