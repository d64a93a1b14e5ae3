"""JetStreamMessageStore beyond the contract: restart, convergence, concurrency, bad events."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import nats
import pytest

from eventlog import (
    AlreadyExistsError,
    EventLog,
    Message,
    MessageCreated,
    PayloadTooLargeError,
    StreamSettings,
    Thread,
    event_context,
)
from eventlog.events import event_digest
from projections import JetStreamMessageStore

if TYPE_CHECKING:
    from conftest import StoreFactory


async def write_conversation(store: object, turns: int = 5) -> Thread:
    thread = Thread.new("acme", "alice")
    await store.create_thread(thread)  # type: ignore[attr-defined]
    for turn in range(turns):
        message = Message.user(thread.id, f"turn {turn}")
        await store.create_message(message)  # type: ignore[attr-defined]
        if turn % 2:
            await store.delete_message(message.id)  # type: ignore[attr-defined]
    await store.update_thread(thread.model_copy(update={"title": "done"}))  # type: ignore[attr-defined]
    return thread


async def test_restarted_store_rebuilds_identical_state(connect_store: StoreFactory) -> None:
    """A store connected after another closed rebuilds exactly the same views from the log."""
    first = await connect_store()
    thread = await write_conversation(first)
    digest = first.views.digest()
    expected = await first.list_messages(thread.id, True)
    await first.close()
    second = await connect_store()
    assert second.views.digest() == digest
    assert await second.list_messages(thread.id, True) == expected
    assert (await second.get_thread(thread.id)) == (await first.get_thread(thread.id))


async def test_connect_returns_with_views_caught_up(connect_store: StoreFactory) -> None:
    """connect() returns only when the views hold every event already in the stream."""
    writer = await connect_store()
    thread = Thread.new("acme", "alice")
    await writer.create_thread(thread)
    for turn in range(100):
        await writer.create_message(Message.user(thread.id, f"m{turn}"))
    reader = await connect_store()
    assert await reader.count_messages(thread.id) == 100
    assert reader.views.digest() == writer.views.digest()


async def test_second_store_converges(connect_store: StoreFactory) -> None:
    """A store running beside the writer folds the writer's events into the same state."""
    writer, follower = await connect_store(), await connect_store()
    await write_conversation(writer)
    await follower.wait_for(await writer.log.last_sequence())
    assert follower.views.digest() == writer.views.digest()


async def test_concurrent_writers_on_one_thread_lose_nothing(connect_store: StoreFactory) -> None:
    """Two stores writing one thread at once both succeed; conflicts are retried, not lost."""
    left, right = await connect_store(), await connect_store()
    thread = Thread.new("acme", "alice")
    await left.create_thread(thread)
    await right.wait_for(await left.log.last_sequence())

    async def write(store: object, name: str) -> None:
        for turn in range(15):
            await store.create_message(Message.user(thread.id, f"{name}{turn}"))  # type: ignore[attr-defined]

    await asyncio.gather(write(left, "L"), write(right, "R"))
    await left.wait_for(await right.log.last_sequence())
    await right.wait_for(await left.log.last_sequence())
    contents = [m.content for m in await left.list_messages(thread.id)]
    assert sorted(contents) == sorted([f"L{i}" for i in range(15)] + [f"R{i}" for i in range(15)])
    assert left.views.digest() == right.views.digest()
    assert left.conflicts + right.conflicts > 0  # the race really happened, and was retried


async def test_same_thread_id_in_two_tenants_goes_to_the_first(connect_store: StoreFactory) -> None:
    """Two stores racing to create one thread id in two tenants: one wins, one gets an error."""
    left, right = await connect_store(), await connect_store()
    mine, theirs = (
        Thread.with_id("support", "tenant-a", "alice"),
        Thread.with_id("support", "tenant-b", "bob"),
    )
    outcomes = await asyncio.gather(
        left.create_thread(mine), right.create_thread(theirs), return_exceptions=True
    )
    errors = [o for o in outcomes if isinstance(o, Exception)]
    assert len(errors) == 1
    assert isinstance(errors[0], AlreadyExistsError)
    await left.wait_for(await right.log.last_sequence())
    await right.wait_for(await left.log.last_sequence())
    winner = await left.get_thread("support")
    assert winner is not None
    assert winner == await right.get_thread("support")
    assert winner.tenant_id == ("tenant-a" if outcomes[0] == "support" else "tenant-b")


async def test_a_fresh_entity_from_another_store_is_not_reported_missing(
    connect_store: StoreFactory,
) -> None:
    """Updating a message another store just created works: the view catches up first."""
    writer, reader = await connect_store(), await connect_store()
    thread = Thread.new("acme", "alice")
    await writer.create_thread(thread)
    for turn in range(20):
        message = Message.user(thread.id, f"m{turn}")
        await writer.create_message(message)
        await reader.update_message(message.model_copy(update={"content": f"edited {turn}"}))
        edited = await reader.get_message(message.id)
        assert edited is not None
        assert edited.content == f"edited {turn}"


async def test_events_form_a_hash_chain_per_thread(connect_store: StoreFactory) -> None:
    """Each event carries the digest of the previous event stored on its thread's subject."""
    store = await connect_store()
    thread = await write_conversation(store, turns=3)
    other = await write_conversation(store, turns=2)
    for thread_id in (thread.id, other.id):
        subject = store.log.subjects.thread("acme", thread_id)
        previous: bytes | None = None
        async for record in store.log.read(subject=subject):
            event = store.log.codec.decode(record.data)
            assert event.prev_hash == (event_digest(previous) if previous else None)
            previous = record.data


async def test_event_context_is_recorded(connect_store: StoreFactory) -> None:
    """Actor, correlation and causation ids set with event_context land in the envelope."""
    store = await connect_store()
    thread = Thread.new("acme", "alice")
    with event_context(actor="agent:planner", correlation_id="req-7", causation_id="evt-1"):
        await store.create_thread(thread)
    records = [record async for record in store.log.read()]
    event = store.log.codec.decode(records[-1].data)
    assert (event.actor, event.correlation_id, event.causation_id) == (
        "agent:planner",
        "req-7",
        "evt-1",
    )


async def test_oversized_message_is_refused_before_sending(connect_store: StoreFactory) -> None:
    """A message over the server's max payload raises PayloadTooLargeError; nothing is written."""
    store = await connect_store()
    thread = Thread.new("acme", "alice")
    await store.create_thread(thread)
    before = await store.log.last_sequence()
    huge = Message.user(thread.id, "x" * (store.log.max_payload + 1))
    with pytest.raises(PayloadTooLargeError) as caught:
        await store.create_message(huge)
    assert caught.value.size > caught.value.limit
    assert await store.log.last_sequence() == before
    assert await store.get_message(huge.id) is None


async def test_bad_events_are_skipped_and_counted(
    connect_store: StoreFactory, nats_url: str, stream_settings: StreamSettings
) -> None:
    """Garbage, unknown types, future schemas and orphan events are skipped, never fatal."""
    store = await connect_store()
    thread = Thread.new("acme", "alice")
    await store.create_thread(thread)
    subject = store.log.subjects.thread("acme", thread.id)
    orphan = Message.user("thread_nowhere", "orphan")
    orphan_event = MessageCreated(
        event_id="evt_orphan",
        occurred_at=orphan.created_at,
        tenant_id="acme",
        thread_id="thread_nowhere",
        message_id=orphan.id,
        message=orphan,
    )
    poison = [
        (subject, b"\xff not json"),
        (subject, b'{"type": "thread.exploded"}'),
        (subject, b'{"type": "thread.deleted", "schema_version": 99}'),
        (store.log.subjects.thread("acme", "thread_nowhere"), store.log.codec.encode(orphan_event)),
    ]
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    sequences = [(await js.publish(s, data, stream=stream_settings.name)).seq for s, data in poison]
    await nc.close()
    await store.wait_for(sequences[-1])
    health = await store.health_check()
    assert health.ok
    assert [skipped.sequence for skipped in health.skipped] == sequences
    assert "newer than this code reads" in health.skipped[2].reason
    assert "does not exist" in health.skipped[3].reason
    message = Message.user(thread.id, "still writable")
    await store.create_message(message)
    assert await store.get_message(message.id) == message


async def test_store_waits_for_nothing_when_asked_not_to(
    connect_store: StoreFactory, nats_url: str, stream_settings: StreamSettings
) -> None:
    """wait_until_ready=False returns at once; wait_for then reaches the stream's end."""
    writer = await connect_store()
    thread = await write_conversation(writer, turns=20)
    log = await EventLog.connect(nats_url, stream=stream_settings)
    end = await log.last_sequence()
    await log.close()
    eager = await JetStreamMessageStore.connect(
        nats_url,
        stream=stream_settings.name,
        subject_prefix=stream_settings.subject_prefix,
        wait_until_ready=False,
    )
    try:
        await eager.wait_for(end)
        assert await eager.count_messages(thread.id) == 10
        assert (await eager.health_check()).applied_sequence == end
    finally:
        await eager.close()


async def test_catch_up_folds_what_another_store_wrote_to_the_thread(
    connect_store: StoreFactory,
) -> None:
    """After catch_up, a store's views hold every event of the thread stored before it."""
    writer, reader = await connect_store(), await connect_store()
    thread = Thread.new("acme", "alice")
    await writer.create_thread(thread)
    for number in range(20):
        message = Message.user(thread.id, f"message {number}")
        await writer.create_message(message)
        await reader.catch_up(thread.id)
        assert await reader.get_message(message.id) == message
    await reader.catch_up(Thread.new("acme", "bob").id)  # a thread nobody wrote: at once
