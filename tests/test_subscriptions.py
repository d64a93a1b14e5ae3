"""Subscriptions on a real nats-server: filters, start positions, resume, restarts, durables."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING

import nats
from helpers import until_acknowledged

from eventlog import (
    Delivery,
    EventLog,
    ExecutionId,
    Message,
    StoredEvent,
    StreamSettings,
    Subscription,
    Thread,
)
from projections import JetStreamMessageStore

if TYPE_CHECKING:
    from conftest import ServerFactory, StoreFactory


async def drain(subscription: Subscription) -> list[StoredEvent]:
    """Everything the (non-following) subscription yields until it has caught up."""
    return [stored async for stored in subscription]


async def take(subscription: Subscription, count: int) -> list[StoredEvent]:
    """The next ``count`` events of a following subscription."""
    taken: list[StoredEvent] = []
    async for stored in subscription:
        taken.append(stored)
        if len(taken) == count:
            break
    return taken


async def write_tenants(store: JetStreamMessageStore) -> tuple[dict[str, Thread], ExecutionId]:
    """Threads in tenants 'a', 'a.b' and 'a*', and one execution in tenant 'a'."""
    execution = ExecutionId.new()
    threads = {tenant: Thread.new(tenant, "u") for tenant in ("a", "a.b", "a*")}
    for thread in threads.values():
        await store.create_thread(thread)
        await store.create_message(Message.user(thread.id, f"hi from {thread.tenant_id}"))
    reply = Message.assistant(threads["a"].id, execution, "answer")
    await store.create_message(reply)
    await store.delete_message(reply.id)
    return threads, execution


async def test_filters_select_exactly_the_matching_events(connect_store: StoreFactory) -> None:
    """Tenant, thread, execution and type filters, alone and combined, yield just their events."""
    store = await connect_store()
    threads, execution = await write_tenants(store)
    everything = [s async for s in await store.log.subscribe(start="beginning", follow=False)]
    assert [s.sequence for s in everything] == list(range(1, 9))

    def expected(predicate: object) -> list[int]:
        return [s.sequence for s in everything if predicate(s.event)]  # type: ignore[operator]

    cases = [
        ({"tenant_id": "a"}, lambda e: e.tenant_id == "a"),
        ({"tenant_id": "a.b"}, lambda e: e.tenant_id == "a.b"),
        ({"thread_id": threads["a*"].id}, lambda e: e.thread_id == threads["a*"].id),
        ({"execution_id": execution}, lambda e: e.execution_id == execution),
        ({"event_types": {"message.created"}}, lambda e: e.event_type == "message.created"),
        (
            {"tenant_id": "a", "event_types": {"message.deleted"}},
            lambda e: e.tenant_id == "a" and e.event_type == "message.deleted",
        ),
        ({"tenant_id": "a.b", "execution_id": execution}, lambda _: False),
    ]
    for filters, predicate in cases:
        subscription = await store.log.subscribe(start="beginning", follow=False, **filters)
        got = [s.sequence for s in await drain(subscription)]
        await subscription.close()
        assert got == expected(predicate), filters
    assert all(s.event.tenant_id == "a" for s in everything if s.sequence in expected(cases[0][1]))


async def test_start_positions(connect_store: StoreFactory) -> None:
    """new, beginning, after a sequence, and from a time each start where they say."""
    store = await connect_store()
    thread = Thread.new("acme", "alice")
    await store.create_thread(thread)
    for turn in range(3):
        await store.create_message(Message.user(thread.id, f"old {turn}"))
    history = [s async for s in await store.log.subscribe(start="beginning", follow=False)]
    assert [s.sequence for s in history] == [1, 2, 3, 4]

    async with store.log.subscribe() as fresh:  # "new": attached before the next write
        await store.create_message(Message.user(thread.id, "new"))
        [first_new] = await take(fresh, 1)
    assert first_new.sequence == 5
    assert first_new.event.message.content == "new"  # type: ignore[union-attr]

    after = [s.sequence async for s in await store.log.subscribe(start=2, follow=False)]
    assert after == [3, 4, 5]
    since = await store.log.subscribe(start=history[2].time, follow=False)
    assert [s.sequence for s in await drain(since)] == [3, 4, 5]
    await since.close()


async def test_resume_from_token_gets_exactly_the_rest(connect_store: StoreFactory) -> None:
    """Consume half, stop, resume from last_sequence: exactly the other half, in order."""
    store = await connect_store()
    thread = Thread.new("acme", "alice")
    await store.create_thread(thread)
    for turn in range(20):
        await store.create_message(Message.user(thread.id, f"m{turn}"))
    async with store.log.subscribe(start="beginning") as first:
        seen = await take(first, 10)
        token = first.last_sequence
    assert token == seen[-1].sequence == 10
    async with store.log.subscribe(start=token, follow=False) as second:
        rest = await drain(second)
    assert [s.sequence for s in seen + rest] == list(range(1, 22))


async def test_subscription_survives_a_server_restart(start_server: ServerFactory) -> None:
    """Kill nats-server mid-subscription and restart it: no event lost, none repeated."""
    server = await start_server()
    store = await JetStreamMessageStore.connect(server.url)
    thread = Thread.new("acme", "alice")
    await store.create_thread(thread)
    async with store.log.subscribe(start="beginning", thread_id=thread.id) as events:
        before = await take(events, 1)
        for turn in range(5):
            await store.create_message(Message.user(thread.id, f"before {turn}"))
        await server.kill()
        await server.start()
        await store.log.connection.wait()
        for turn in range(5):
            message = Message.user(thread.id, f"after {turn}")
            await until_acknowledged(partial(store.create_message, message), store.log.connection)
        rest = await take(events, 10)
    sequences = [s.sequence for s in before + rest]
    assert sequences == list(range(1, 12))
    contents = [s.event.message.content for s in rest]  # type: ignore[union-attr]
    assert contents == [f"before {t}" for t in range(5)] + [f"after {t}" for t in range(5)]
    await store.close()


async def test_durable_workers_share_events_and_get_unacked_ones_again(
    connect_store: StoreFactory,
) -> None:
    """Two workers on one durable see each event once; a crashed worker's events come again."""
    store = await connect_store()
    thread = Thread.new("acme", "alice")
    await store.create_thread(thread)
    for turn in range(30):
        await store.create_message(Message.user(thread.id, f"m{turn}"))
    durable = {"event_types": {"message.created"}, "ack_wait": timedelta(seconds=1)}
    crashed: list[Delivery] = []
    async with store.log.subscribe_durable("billing", **durable) as doomed:  # type: ignore[arg-type]
        async for delivery in doomed:
            crashed.append(delivery)  # taken, never acked: the worker "crashes"
            if len(crashed) == 3:
                break
    handled: dict[str, int] = {}
    by_worker: dict[str, int] = {"w1": 0, "w2": 0}
    redelivered = 0
    all_handled = asyncio.Event()

    async def work(name: str) -> None:
        nonlocal redelivered
        async with store.log.subscribe_durable("billing", **durable) as deliveries:  # type: ignore[arg-type]
            async for delivery in deliveries:
                handled[delivery.event.event_id] = handled.get(delivery.event.event_id, 0) + 1
                by_worker[name] += 1
                redelivered += delivery.attempts > 1
                await delivery.ack()
                if len(handled) == 30:
                    all_handled.set()

    workers = [asyncio.create_task(work(name)) for name in by_worker]
    await asyncio.wait_for(all_handled.wait(), timeout=30)
    for worker in workers:
        worker.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    assert len(handled) == 30
    assert sum(by_worker.values()) == 30
    assert all(count == 1 for count in handled.values())
    assert {d.event.event_id for d in crashed} <= set(handled)
    assert redelivered >= 3


async def test_an_idle_subscriber_leaves_events_on_the_server(
    connect_store: StoreFactory, nats_url: str, stream_settings: StreamSettings
) -> None:
    """A subscriber that never reads holds nothing in memory: the server keeps the backlog."""
    store = await connect_store()
    thread = Thread.new("acme", "alice")
    await store.create_thread(thread)
    async with store.log.subscribe(buffer=64) as idle:
        for turn in range(300):
            await store.create_message(Message.user(thread.id, "x" * 1000 + str(turn)))
        nc = await nats.connect(nats_url)
        infos = await nc.jetstream().consumers_info(stream_settings.name)
        await nc.close()
        pending = [i.num_pending for i in infos if i.config.ack_policy == "none"]
        assert 300 in pending  # the backlog waits on the server, not in this process
        got = await take(idle, 300)
    assert [s.sequence for s in got] == list(range(2, 302))


async def test_closing_releases_consumers(
    connect_store: StoreFactory, nats_url: str, stream_settings: StreamSettings
) -> None:
    """Closing removes an ephemeral consumer at once; a durable stays until deleted."""
    store = await connect_store()
    nc = await nats.connect(nats_url)
    js = nc.jetstream()

    async def names() -> set[str]:
        return {i.name for i in await js.consumers_info(stream_settings.name)}

    baseline = await names()
    subscription = await store.log.subscribe()
    durable = await store.log.subscribe_durable("keeper")
    assert len(await names() - baseline) == 2
    await subscription.close()
    await durable.close()
    assert await names() - baseline == {"keeper"}
    await durable.delete()
    assert await names() == baseline
    await nc.close()


async def test_subscription_skips_unreadable_records(
    event_log: EventLog, nats_url: str, stream_settings: StreamSettings
) -> None:
    """Bytes that are not an event are counted and passed over, never yielded."""
    nc = await nats.connect(nats_url)
    await nc.jetstream().publish(
        event_log.subjects.thread("t", "th"), b"garbage", stream=stream_settings.name
    )
    await nc.close()
    async with event_log.subscribe(start="beginning", follow=False) as events:
        assert await drain(events) == []
        assert events.skipped == 1
        assert events.last_sequence == 1
