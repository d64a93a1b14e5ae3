"""The views' bounded cache of read models: within its bound, and never stale."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventlog import (
    ExecutionId,
    Message,
    MessageCreated,
    MessageDeleted,
    MessageUpdated,
    TextPart,
    Thread,
    ThreadCreated,
    ThreadDeleted,
    ThreadUpdated,
    ValidationError,
)
from eventlog.events import AnyEvent, EventCodec, new_event_id
from projections.model_cache import ModelCache
from projections.views import Views

CODEC = EventCodec()
START = datetime(2026, 1, 1, tzinfo=UTC)
EXECUTION = ExecutionId("exec_cache")


class Log:
    """Events folded into views as the fold does it: encoded, decoded as data, applied."""

    def __init__(self, views: Views) -> None:
        self.views = views
        self.sequence = 0
        self.clock = datetime.now(UTC) + timedelta(hours=1)
        """Each event a second later, all after the entities' own (real) timestamps."""

    def apply(self, event: AnyEvent) -> None:
        self.sequence += 1
        self.views.apply(self.sequence, CODEC.decode_data(CODEC.encode(event)))

    def envelope(self, thread_id: str, message_id: str | None = None) -> dict[str, Any]:
        self.clock += timedelta(seconds=1)
        return {
            "event_id": new_event_id(),
            "occurred_at": self.clock,
            "tenant_id": "acme",
            "thread_id": thread_id,
            "message_id": message_id,
        }

    def new_thread(self) -> Thread:
        thread = Thread.new("acme", "alice")
        self.apply(ThreadCreated(**self.envelope(thread.id), thread=thread))
        return thread

    def new_message(self, thread: Thread, content: str) -> Message:
        message = Message.assistant(thread.id, EXECUTION, content)
        event = MessageCreated(
            **self.envelope(thread.id, message.id),
            execution_id=EXECUTION,
            message=message,
        )
        self.apply(event)
        return message

    def update(self, message: Message, content: str) -> Message:
        changed = message.model_copy(
            update={"content": content, "parts": (TextPart(text=content),), "updated_at": START}
        )
        self.apply(MessageUpdated(**self.envelope(message.thread_id, message.id), message=changed))
        return changed

    def delete(self, message: Message) -> Message:
        self.apply(MessageDeleted(**self.envelope(message.thread_id, message.id), deleted_at=START))
        return message.model_copy(update={"deleted_at": START})


def fresh(views: Views) -> Views:
    """The same state in views that have cached nothing: every model made from the data."""
    return Views.load(views.dump())


def conversation(limit: int, messages: int) -> tuple[Log, Thread, list[Message]]:
    log = Log(Views(cached_models=limit))
    thread = log.new_thread()
    return log, thread, [log.new_message(thread, f"turn {i}") for i in range(messages)]


def test_the_cache_never_holds_more_than_its_limit() -> None:
    cache: ModelCache[int] = ModelCache(10)
    sizes = []
    for key in range(1000):
        if cache.get(str(key)) is None:
            cache.put(str(key), key)
        sizes.append(len(cache))
    assert max(sizes) <= 10
    assert cache.get("999") == 999


def test_a_model_read_again_survives_the_generation_that_cached_it() -> None:
    cache: ModelCache[str] = ModelCache(4)
    cache.put("hot", "model")
    for key in range(20):
        assert cache.get("hot") == "model"  # promoted to the young generation on each read
        cache.put(str(key), "other")
    assert cache.get("0") is None  # a model not read again is dropped


def test_a_cache_too_small_to_hold_two_models_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least 2"):
        ModelCache(1)


def test_warm_reads_return_the_models_cached_by_the_first() -> None:
    log, thread, messages = conversation(limit=100, messages=10)
    views = log.views
    by_id = views.message(messages[0].id)
    first = views.list_messages(thread.id, include_deleted=True)
    assert first == messages
    assert first[0] is by_id
    again = [*views.list_messages(thread.id, include_deleted=True)]
    again += views.messages_by_execution(EXECUTION)
    again += [views.message(message.id) for message in messages]
    assert all(model is first[i % 10] for i, model in enumerate(again))
    assert views.thread(thread.id) is views.list_threads("acme", "alice", 1, 0)[0]


def test_reading_more_messages_than_the_cache_holds_stays_within_it() -> None:
    log, thread, messages = conversation(limit=6, messages=40)
    views = log.views
    assert views.list_messages(thread.id, include_deleted=True) == messages
    assert views.messages_by_execution(EXECUTION) == messages
    for message in messages:
        assert views.message(message.id) == message
        assert len(views._message_models) <= 6
    assert views.message("msg_unknown") is None
    assert len(views._message_models) <= 6


def test_evicted_messages_read_back_equal_to_the_originals() -> None:
    log, thread, messages = conversation(limit=4, messages=30)
    views = log.views
    first = views.message(messages[0].id)
    for message in messages[1:]:
        views.message(message.id)
    assert messages[0].id not in views._message_models._young
    assert messages[0].id not in views._message_models._old
    again = views.message(messages[0].id)
    assert again == first == messages[0]
    assert again is not first  # made again from the data, not kept
    assert views.list_messages(thread.id, include_deleted=True) == messages


def test_a_read_after_an_update_returns_the_new_message() -> None:
    log, _, messages = conversation(limit=100, messages=3)
    views = log.views
    before = views.message(messages[1].id)
    changed = log.update(messages[1], "edited")
    after = views.message(messages[1].id)
    assert after != before
    assert after == changed == fresh(views).message(messages[1].id)
    assert views.messages_by_execution(EXECUTION)[1] == changed


def test_a_read_after_a_delete_returns_the_deleted_message() -> None:
    log, thread, messages = conversation(limit=100, messages=3)
    views = log.views
    assert views.list_messages(thread.id, include_deleted=False) == messages
    deleted = log.delete(messages[0])
    after = views.message(messages[0].id)
    assert after is not None
    assert after.deleted_at == START
    assert after == deleted == fresh(views).message(messages[0].id)
    assert views.list_messages(thread.id, include_deleted=False) == messages[1:]


def test_a_read_after_a_thread_changes_returns_the_new_thread() -> None:
    log = Log(Views(cached_models=100))
    thread = log.new_thread()
    assert log.views.thread(thread.id) == thread
    log.new_message(thread, "moves updated_at")
    views_thread = log.views.thread(thread.id)
    assert views_thread is not None
    assert views_thread.updated_at == log.clock
    assert views_thread == fresh(log.views).thread(thread.id)
    renamed = thread.model_copy(update={"title": "renamed", "updated_at": log.clock})
    log.apply(ThreadUpdated(**log.envelope(thread.id), thread=renamed))
    assert log.views.list_threads("acme", "alice", 10, 0) == [renamed]
    assert log.views.thread(thread.id) == renamed
    log.apply(ThreadDeleted(**log.envelope(thread.id), deleted_at=START))
    deleted = log.views.thread(thread.id)
    assert deleted is not None
    assert deleted.deleted_at == START
    assert deleted == fresh(log.views).thread(thread.id)


def test_listing_more_threads_than_the_cache_holds_stays_within_it() -> None:
    log = Log(Views(cached_models=4))
    threads = [log.new_thread() for _ in range(12)]
    newest_first = threads[::-1]
    assert log.views.list_threads("acme", "alice", 20, 0) == newest_first
    assert len(log.views._thread_models) <= 4
    assert log.views.list_threads("acme", "alice", 5, 3) == newest_first[3:8]
    assert [log.views.thread(thread.id) for thread in threads] == threads
    assert len(log.views._thread_models) <= 4
    assert log.views.thread("thread_unknown") is None


def test_restored_views_read_the_snapshot_and_then_its_changes() -> None:
    log, thread, messages = conversation(limit=4, messages=12)
    assert log.views.list_messages(thread.id, include_deleted=True) == messages
    restored = Views.load(log.views.dump(), cached_models=4)
    assert restored.list_messages(thread.id, include_deleted=True) == messages
    assert len(restored._message_models) <= 4
    log.views = restored
    changed = log.update(messages[-1], "after the restore")
    assert restored.message(messages[-1].id) == changed
    assert restored.list_messages(thread.id, include_deleted=True) == [*messages[:-1], changed]
    assert restored.digest() == fresh(restored).digest()


@settings(max_examples=40, deadline=None)
@given(
    limit=st.integers(2, 6),
    steps=st.lists(st.tuples(st.sampled_from(["read", "update", "delete"]), st.integers(0, 9))),
)
def test_every_read_equals_the_model_made_from_the_data(
    limit: int, steps: list[tuple[str, int]]
) -> None:
    log, thread, messages = conversation(limit=limit, messages=10)
    expected = {message.id: message for message in messages}
    for step, (kind, index) in enumerate(steps):
        message = expected[messages[index].id]
        if kind == "update":
            expected[message.id] = log.update(message, f"edit {step}")
        elif kind == "delete" and message.deleted_at is None:
            expected[message.id] = log.delete(message)
        assert log.views.message(message.id) == expected[message.id]
        assert len(log.views._message_models) <= limit
    listed = log.views.list_messages(thread.id, include_deleted=True)
    assert listed == [expected[m.id] for m in messages]
    assert listed == fresh(log.views).list_messages(thread.id, include_deleted=True)
