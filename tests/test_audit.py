"""Audit queries against a real nats-server: history, execution trails, and time travel."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from eventlog import (
    ExecutionId,
    Message,
    MessageMetadata,
    NotFoundError,
    Thread,
    TokenUsage,
    ToolCallPart,
    ToolResultPart,
    ValidationError,
    event_context,
)
from projections import Audit, MessageStore, ReadOnlyError, rebuild
from projections.cli.demo import weather_conversation

if TYPE_CHECKING:
    from conftest import StoreFactory

    from projections import JetStreamMessageStore


async def edited_and_deleted(store: JetStreamMessageStore) -> tuple[Thread, Message]:
    """A thread whose one message is created, edited by a reviewer, then deleted."""
    thread = Thread.new("acme", "alice")
    with event_context(actor="user:alice"):
        await store.create_thread(thread)
        message = Message.user(thread.id, "first draft")
        await store.create_message(message)
    with event_context(actor="user:reviewer"):
        await store.update_message(message.model_copy(update={"content": "second draft"}))
        await store.delete_message(message.id)
    return thread, message


async def test_message_history_lists_every_event_with_the_state_after_it(
    connect_store: StoreFactory,
) -> None:
    """history() gives each event of a message in log order: sequence, time, type, actor, state."""
    store = await connect_store()
    thread, message = await edited_and_deleted(store)
    await store.create_message(Message.user(thread.id, "unrelated"))
    entries = await store.history(message.id)
    assert [e.event_type for e in entries] == [
        "message.created",
        "message.updated",
        "message.deleted",
    ]
    assert [e.actor for e in entries] == ["user:alice", "user:reviewer", "user:reviewer"]
    assert [e.sequence for e in entries] == [2, 3, 4]
    assert entries[0].time <= entries[1].time <= entries[2].time
    states = [e.state for e in entries]
    assert all(isinstance(state, Message) for state in states)
    assert [s.content for s in states] == ["first draft", "second draft", "second draft"]  # type: ignore[union-attr]
    assert [s.deleted_at is not None for s in states] == [False, False, True]  # type: ignore[union-attr]
    assert store.log.codec.decode(entries[1].data) == entries[1].event


async def test_thread_history_includes_its_messages_events(connect_store: StoreFactory) -> None:
    """thread_history() lists thread and message events; thread events carry the thread."""
    store = await connect_store()
    thread, message = await edited_and_deleted(store)
    await store.update_thread(thread.model_copy(update={"title": "drafts"}))
    await store.delete_thread(thread.id)
    entries = await store.thread_history(thread.id)
    assert [e.event_type for e in entries] == [
        "thread.created",
        "message.created",
        "message.updated",
        "message.deleted",
        "thread.updated",
        "thread.deleted",
    ]
    assert isinstance(entries[0].state, Thread)
    assert entries[0].state.title is None
    assert isinstance(entries[1].state, Message)
    assert entries[1].state.id == message.id
    assert isinstance(entries[-1].state, Thread)
    assert entries[-1].state.title == "drafts"
    assert entries[-1].state.deleted_at is not None


async def test_unknown_ids_are_not_found(connect_store: StoreFactory) -> None:
    """Audit queries for ids nobody wrote raise NotFoundError naming the id."""
    store = await connect_store()
    for query, kind in (
        (store.history, "message"),
        (store.thread_history, "thread"),
        (store.execution_trail, "execution"),
    ):
        with pytest.raises(NotFoundError, match="'nope' does not exist; check the id") as caught:
            await query("nope")
        assert caught.value.kind == kind


async def test_execution_trail_has_every_event_of_the_run_and_its_summary(
    connect_store: StoreFactory,
) -> None:
    """execution_trail() keeps the run's events in order, parts intact, and adds up its cost."""
    store = await connect_store()
    thread = Thread.new("acme", "alice")
    await store.create_thread(thread)
    system, question, answer = weather_conversation(thread.id)
    execution = answer.execution_id
    assert execution is not None
    for message in (system, question, answer):
        await store.create_message(message)
    failed_call = Message.assistant(thread.id, execution, "Looking up the forecast.").with_parts(
        [
            ToolCallPart(tool_call_id="c2", tool_name="forecast", args={"days": 3}),
            ToolResultPart(
                tool_call_id="c2", tool_name="forecast", result="timeout", is_error=True
            ),
        ]
    )
    await store.create_message(
        failed_call.with_metadata(
            MessageMetadata(model="gpt-4o-mini", token_usage=TokenUsage.new(100, 20))
        )
    )
    other_run = Message.assistant(thread.id, ExecutionId.new(), "another run")
    await store.create_message(other_run)
    await store.delete_message(failed_call.id)

    trail = await store.execution_trail(execution)
    assert [e.event_type for e in trail.entries] == [
        "message.created",
        "message.created",
        "message.deleted",
    ]
    assert [e.sequence for e in trail.entries] == sorted(e.sequence for e in trail.entries)
    assert trail.entries[0].state == answer
    summary = trail.summary
    assert (summary.events, summary.messages) == (3, 2)
    assert summary.llm_calls == 3  # two from the answer's stats, one for the metadata-only call
    assert (summary.tool_calls, summary.tool_errors) == (2, 1)
    assert (summary.prompt_tokens, summary.completion_tokens, summary.total_tokens) == (
        512,
        116,
        628,
    )
    assert summary.cost == {"USD": pytest.approx(0.00199)}
    assert summary.reported_duration_ms == 2310
    assert summary.models == ("gpt-4o", "gpt-4o-mini")
    assert summary.finish_reasons == ("stop",)
    assert summary.wall_time == (trail.entries[-1].time - trail.entries[0].time).total_seconds()
    assert summary.wall_time > 0


async def test_at_shows_the_log_as_it_was_and_leaves_the_present_alone(
    connect_store: StoreFactory,
) -> None:
    """at(sequence) answers the MessageStore queries as of then; the live store is unchanged."""
    store = await connect_store()
    thread, message = await edited_and_deleted(store)
    present = store.views.digest()

    before_edit = await store.at(2)
    assert isinstance(before_edit, MessageStore)
    assert before_edit.sequence == 2
    past_message = await before_edit.get_message(message.id)
    assert past_message is not None
    assert past_message.content == "first draft"
    assert await before_edit.count_messages(thread.id) == 1

    after_delete = await store.at(4)
    assert await after_delete.count_messages(thread.id) == 0
    assert [m.content for m in await after_delete.list_messages(thread.id, True)] == [
        "second draft"
    ]
    nothing = await store.at(0)
    assert await nothing.get_thread(thread.id) is None
    assert store.views.digest() == present
    live_message = await store.get_message(message.id)
    assert live_message is not None
    assert live_message.deleted_at is not None


async def test_as_of_uses_the_servers_time(connect_store: StoreFactory) -> None:
    """as_of(time) holds exactly the records the server stored at or before that time."""
    store = await connect_store()
    _, message = await edited_and_deleted(store)
    entries = await store.history(message.id)
    created = entries[0]
    past = await store.as_of(created.time)
    assert past.sequence == created.sequence
    assert past.time == created.time
    stored = await past.get_message(message.id)
    assert stored is not None
    assert stored.content == "first draft"
    with pytest.raises(ValidationError, match="aware datetime"):
        await store.as_of(created.time.replace(tzinfo=None))


async def test_time_travel_can_be_scoped_to_a_tenant_or_a_thread(
    connect_store: StoreFactory,
) -> None:
    """A tenant or thread view holds only that tenant's or thread's state."""
    store = await connect_store()
    acme = Thread.new("acme", "alice")
    acme_other = Thread.new("acme", "bob")
    globex = Thread.new("globex", "carol")
    for thread in (acme, acme_other, globex):
        await store.create_thread(thread)
        await store.create_message(Message.user(thread.id, f"hello from {thread.id}"))
    end = await store.log.last_sequence()

    tenant = await store.at(end, tenant_id="acme")
    assert tenant.tenant_id == "acme"
    assert await tenant.get_thread(globex.id) is None
    assert await tenant.get_thread(acme_other.id) is not None
    assert tenant.views.thread_count == 2

    one = await store.at(end, thread_id=acme.id)
    assert one.views.thread_count == 1
    assert await one.count_messages(acme.id) == 1
    assert await one.list_threads("acme", "bob", 10, 0) == []


async def test_read_only_store_refuses_every_write(connect_store: StoreFactory) -> None:
    """Each write on a past view raises ReadOnlyError naming the call and the sequence."""
    store = await connect_store()
    thread, message = await edited_and_deleted(store)
    past = await store.at(2)
    health = await past.health_check()
    assert (health.ok, health.applied_sequence) == (True, 2)
    writes = [
        past.create_thread(Thread.new("acme", "alice")),
        past.update_thread(thread),
        past.delete_thread(thread.id),
        past.create_message(Message.user(thread.id, "new")),
        past.update_message(message),
        past.delete_message(message.id),
        past.get_or_create_thread("acme", "alice"),
    ]
    for write in writes:
        with pytest.raises(ReadOnlyError, match="as of sequence 2 and is read-only"):
            await write
    assert await store.log.last_sequence() == 4
    with pytest.raises(ValidationError):
        await store.at(-1)


async def test_audit_is_a_part_built_from_a_log_and_a_projection(
    connect_store: StoreFactory,
) -> None:
    """store.audit answers what the store's methods do; an Audit over any projection of the
    log reads the same history, and rebuilds and verifies up to where that projection is."""
    store = await connect_store()
    thread, message = await edited_and_deleted(store)
    history = await store.history(message.id)
    assert await store.audit.history(message.id) == history
    assert await store.audit.thread_history(thread.id) == await store.thread_history(thread.id)

    partial = await rebuild(store.log, until=2)
    audit = Audit(store.log, partial.projection)
    assert await audit.history(message.id) == history  # read from the log, not the views
    checked = await audit.rebuild(verify=True)
    assert (checked.sequence, checked.digest) == (2, partial.digest)
    assert (await audit.verify()).ok
    past = await audit.at(2)
    assert await past.get_message(message.id) == history[0].state
