"""Conversations as log records, made fast enough to fold a million messages without NATS.

The query and memory cases need views of up to 1,000,000 messages. What a query costs does
not depend on how the views were filled, so the records are folded straight into a
:class:`~projections.Projection`, as the store's own projection folds them: decoded by the
codec, validated, indexed. Only the making of the bytes is cut short: one event per kind is
encoded by the codec with placeholders, and each record fills in its ids and text.

Ids are the index in hex, as long as real (uuid7) ids, so a case can name any thread,
message or execution by its number without keeping a list of them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from eventlog import Event, ExecutionId, LogRecord, Message, MessageCreated, Thread, ThreadCreated
from eventlog.events import EventCodec
from eventlog.subjects import Subjects
from projections._gc import paused_gc

if TYPE_CHECKING:
    from collections.abc import Iterator

    from projections.fold import Projection

PER_THREAD = 50
"""Messages in each thread: list_messages returns this many."""
THREADS_PER_USER = 50
"""Threads of each user: more than a list_threads page of 20."""
PER_EXECUTION = 10
"""Consecutive messages that share an execution; its assistant half (5) carry its id."""
TENANT = "bench"
TEXT_BYTES = 200

_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def thread_id(index: int) -> str:
    """The id of thread ``index``."""
    return f"thread_{index:032x}"


def message_id(index: int) -> str:
    """The id of message ``index`` (the index-th message written, over all threads)."""
    return f"msg_{index:032x}"


def execution_id(index: int) -> str:
    """The id of execution ``index``: messages ``index * PER_EXECUTION`` onwards."""
    return f"exec_{index:032x}"


def user_id(index: int) -> str:
    """The id of user ``index``, owner of threads ``index * THREADS_PER_USER`` onwards."""
    return f"user{index}"


def text(index: int, size: int = TEXT_BYTES) -> str:
    """``size`` ASCII characters, different for each message."""
    head = f"message {index}: "
    return (head + "lorem ipsum dolor sit amet " * (size // 27 + 1))[:size]


def _template(event: Event) -> bytes:
    """The codec's bytes for ``event``, as a %-template: each ``@name@`` becomes a field."""
    encoded = EventCodec().encode(event).replace(b"%", b"%%")
    for name in (b"event", b"thread", b"user", b"message", b"execution", b"text"):
        encoded = encoded.replace(b"@" + name + b"@", b"%(" + name + b")s")
    return encoded


def _templates() -> tuple[bytes, bytes, bytes]:
    """Encoded thread.created, and message.created from a user and from an assistant."""
    thread = Thread(
        id="@thread@", tenant_id=TENANT, user_id="@user@", created_at=_EPOCH, updated_at=_EPOCH
    )
    created = ThreadCreated(
        event_id="@event@",
        occurred_at=_EPOCH,
        tenant_id=TENANT,
        thread_id="@thread@",
        thread=thread,
    )
    user = Message.user("@thread@", "@text@")
    assistant = Message.assistant("@thread@", ExecutionId("@execution@"), "@text@")
    messages = [
        MessageCreated(
            event_id="@event@",
            occurred_at=_EPOCH,
            tenant_id=TENANT,
            thread_id="@thread@",
            message_id="@message@",
            execution_id=message.execution_id,
            message=message.model_copy(update={"id": "@message@", "created_at": _EPOCH}),
        )
        for message in (user, assistant)
    ]
    return _template(created), _template(messages[0]), _template(messages[1])


def records(count: int, *, text_bytes: int = TEXT_BYTES) -> Iterator[LogRecord]:
    """Records of ``count`` messages, ``PER_THREAD`` to a thread, each thread created first.

    Messages alternate user and assistant; the assistant ones carry an execution id.
    """
    thread_template, user_template, assistant_template = _templates()
    subjects = Subjects()
    sequence = 0
    subject = ""
    for index in range(count):
        thread, position = divmod(index, PER_THREAD)
        fields = {
            b"thread": thread_id(thread).encode(),
            b"user": user_id(thread // THREADS_PER_USER).encode(),
            b"message": message_id(index).encode(),
            b"execution": execution_id(index // PER_EXECUTION).encode(),
            b"text": text(index, text_bytes).encode(),
        }
        if position == 0:
            subject = subjects.thread(TENANT, thread_id(thread))
            sequence += 1
            fields[b"event"] = b"evt_%032x" % sequence
            yield LogRecord(
                sequence=sequence, time=_EPOCH, subject=subject, data=thread_template % fields
            )
        sequence += 1
        fields[b"event"] = b"evt_%032x" % sequence
        template = assistant_template if position % 2 else user_template
        yield LogRecord(sequence=sequence, time=_EPOCH, subject=subject, data=template % fields)


def fill(projection: Projection, count: int, *, text_bytes: int = TEXT_BYTES) -> None:
    """Fold ``count`` messages into ``projection``, as a cold start does (collector paused)."""
    with paused_gc(freeze=True):
        for record in records(count, text_bytes=text_bytes):
            projection.apply(record)
    if projection.skipped:
        raise RuntimeError(f"the fold skipped records: {projection.skipped[:3]}")


class RawViews:
    """The baseline's views: each event msgspec-decoded into plain dicts, kept in dicts.

    Threads and messages by id, and each thread's message ids in order: what a raw fold
    keeps with no types, no validation and no other index.
    """

    def __init__(self) -> None:
        self.threads: dict[str, Any] = {}
        self.messages: dict[str, Any] = {}
        self.by_thread: dict[str, list[str]] = {}
        self._decoder = msgspec.json.Decoder()

    def apply(self, data: bytes) -> None:
        """Fold one event's bytes."""
        event = self._decoder.decode(data)
        if "message" in event:
            message = event["message"]
            self.messages[message["id"]] = message
            self.by_thread.setdefault(message["thread_id"], []).append(message["id"])
        elif "thread" in event:
            self.threads[event["thread"]["id"]] = event["thread"]
