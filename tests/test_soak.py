"""Soak: writers, readers and subscribers on two stores while nats-server is killed over and over.

For ``CONVLOG_SOAK_SECONDS`` (default 120) writers on two stores create, edit and delete
threads and messages (some in one thread they all share), readers query the views, a live
subscription and a durable one follow the log, and nats-server is killed with SIGKILL and
restarted on the same data directory every ~17 s. Writers repeat a call that raised
UnavailableError (safe: see :func:`chaos.until_acknowledged`) and record each call that
returned. Afterwards every acknowledged write is in the log exactly once and in a rebuilt
view, in each writer's order; the subscriptions saw every event; both stores' views have a
rebuild's digest. ``pytest -m "not soak"`` leaves it out; ``pytest -s`` shows its counts.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import time
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING

import pytest
from helpers import Retried, report, until_acknowledged

from eventlog import (
    AnyEvent,
    ConnectOptions,
    EmbeddedNats,
    Message,
    MessageCreated,
    MessageDeleted,
    MessageUpdated,
    Thread,
    ThreadUpdated,
)
from projections import JetStreamMessageStore, rebuild

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from conftest import ServerFactory

    from eventlog import DurableSubscription, Subscription

SOAK_SECONDS = float(os.environ.get("CONVLOG_SOAK_SECONDS", "120"))
RESTART_EVERY = min(17.0, SOAK_SECONDS / 4)
"""Seconds between server kills: at least three kills even in a short soak."""
WRITERS_PER_STORE = 2
SETTLE = 60.0
"""Seconds the end of the soak may wait for stores and subscribers to catch up."""
STUCK = 90.0
"""Seconds a write may take, retries included, before the soak calls it hung (timeout 2 s)."""

Key = tuple[str, str, str]
"""What identifies a write in the log: event type, entity id, and the new title or content."""


def key_of(event: AnyEvent) -> Key:
    """The key of the write that made ``event``; each write in the soak has its own."""
    match event:
        case ThreadUpdated(thread=thread):
            return (event.event_type, event.thread_id, thread.title or "")
        case MessageUpdated(message=message):
            return (event.event_type, message.id, message.content)
        case MessageCreated() | MessageDeleted():
            return (event.event_type, event.message_id or "", "")
        case _:
            return (event.event_type, event.thread_id, "")


class Ledger:
    """Every acknowledged write, by writer and in order, and the state they should leave."""

    def __init__(self) -> None:
        self.acked: list[tuple[int, Key]] = []
        self.messages: dict[str, tuple[int, Message, bool]] = {}
        """Message id: (store index, content as last acked, deleted)."""
        self.created: dict[int, list[str]] = collections.defaultdict(list)
        """Store index: the ids of the messages created through it."""
        self.threads: dict[str, tuple[str | None, bool]] = {}
        """Thread id: (title as last acked, deleted)."""
        self.retried = Retried()
        self.reads = 0
        self.closed = False
        self.changed = asyncio.Condition()

    async def ack(self, writer: int, key: Key) -> None:
        self.acked.append((writer, key))
        async with self.changed:
            self.changed.notify_all()

    async def after(self, count: int) -> int | None:
        """Wait for more than ``count`` acks; return how many there are, or None once closed."""
        async with self.changed:
            await self.changed.wait_for(lambda: self.closed or len(self.acked) > count)
        return None if self.closed else len(self.acked)

    async def close(self) -> None:
        async with self.changed:
            self.closed = True
            self.changed.notify_all()


class Seen:
    """What a subscriber was given: (sequence, event id) in order, awaitable by progress."""

    def __init__(self) -> None:
        self.events: list[tuple[int, str]] = []
        self.changed = asyncio.Condition()

    async def add(self, sequence: int, event_id: str) -> None:
        async with self.changed:
            self.events.append((sequence, event_id))
            self.changed.notify_all()

    async def until(self, done: Callable[[], bool]) -> None:
        async with self.changed:
            await self.changed.wait_for(done)


async def write(
    index: int,
    store: JetStreamMessageStore,
    store_index: int,
    *,
    shared: Thread,
    ledger: Ledger,
    deadline: float,
) -> None:
    """Random creates, edits and deletes until ``deadline``, each repeated until acknowledged."""
    rng = random.Random(index)  # noqa: S311 - a reproducible workload, not a secret
    threads: list[Thread] = []
    live: list[Message] = []

    async def acked(call: Callable[[], Awaitable[object]], key: Key) -> None:
        try:
            async with asyncio.timeout(STUCK):
                await until_acknowledged(call, store.log.connection, retried=ledger.retried)
        except TimeoutError:
            pytest.fail(f"writer {index}: {key} neither returned nor failed within {STUCK}s")
        await ledger.ack(index, key)

    serial = 0
    while time.monotonic() < deadline:
        serial += 1
        roll = rng.random()
        if not threads or roll < 0.08:
            thread = Thread.new(f"tenant{index % 2}", f"user{index}")
            await acked(partial(store.create_thread, thread), ("thread.created", thread.id, ""))
            threads.append(thread)
            ledger.threads[thread.id] = (None, False)
        elif roll < 0.55 or not live:
            where = shared if roll < 0.2 else rng.choice(threads)
            message = Message.user(where.id, f"writer {index} message {serial}")
            await acked(partial(store.create_message, message), ("message.created", message.id, ""))
            assert await store.get_message(message.id) == message  # read-your-writes
            live.append(message)
            ledger.messages[message.id] = (store_index, message, False)
            ledger.created[store_index].append(message.id)
        elif roll < 0.75:
            at = rng.randrange(len(live))
            edited = live[at].model_copy(update={"content": f"writer {index} edit {serial}"})
            await acked(
                partial(store.update_message, edited),
                ("message.updated", edited.id, edited.content),
            )
            live[at] = edited
            ledger.messages[edited.id] = (store_index, edited, False)
        elif roll < 0.9:
            gone = live.pop(rng.randrange(len(live)))
            await acked(partial(store.delete_message, gone.id), ("message.deleted", gone.id, ""))
            ledger.messages[gone.id] = (store_index, gone, True)
        elif roll < 0.96 or len(threads) == 1:
            retitled = rng.choice(threads).model_copy(
                update={"title": f"writer {index} title {serial}"}
            )
            await acked(
                partial(store.update_thread, retitled),
                ("thread.updated", retitled.id, retitled.title or ""),
            )
            ledger.threads[retitled.id] = (retitled.title, False)
        else:
            gone_thread = threads.pop(rng.randrange(len(threads)))
            await acked(
                partial(store.delete_thread, gone_thread.id),
                ("thread.deleted", gone_thread.id, ""),
            )
            ledger.threads[gone_thread.id] = (ledger.threads[gone_thread.id][0], True)
            live = [m for m in live if m.thread_id != gone_thread.id]


async def read(store: JetStreamMessageStore, store_index: int, ledger: Ledger) -> None:
    """After each acknowledged write, query the views; what this store acked must be there."""
    rng = random.Random(store_index)  # noqa: S311 - a reproducible workload, not a secret
    seen: int | None = 0
    while (seen := await ledger.after(seen)) is not None:
        mine = ledger.created[store_index]
        if not mine:
            continue
        _, message, deleted = ledger.messages[rng.choice(mine)]
        found = await store.get_message(message.id)
        assert found is not None
        assert found.deleted_at is not None or not deleted
        listed = await store.list_messages(message.thread_id, include_deleted=True)
        assert message.id in {m.id for m in listed}
        live = await store.list_messages(message.thread_id)
        assert await store.count_messages(message.thread_id) == len(live)
        assert (await store.health_check()).status != "failed"
        ledger.reads += 5


async def follow_live(events: Subscription, seen: Seen) -> None:
    """Record what a live subscription yields (checked against the log at the end)."""
    async for stored in events:
        await seen.add(stored.sequence, stored.event.event_id)


async def follow_durable(deliveries: DurableSubscription, seen: Seen) -> None:
    """Record and ack what a durable subscription delivers (at least once, so maybe again)."""
    async for delivery in deliveries:
        await seen.add(delivery.stored.sequence, delivery.event.event_id)
        await delivery.ack()


async def restart_now_and_then(
    server: EmbeddedNats, stores: list[JetStreamMessageStore], done: asyncio.Event
) -> int:
    """Kill nats-server every RESTART_EVERY seconds and start it again, until ``done``.

    The wait between kills is the fault schedule, not synchronisation: nothing checked
    depends on when a kill lands. Each restart waits for every client to notice the loss.
    """
    restarts = 0
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), RESTART_EVERY)
        if done.is_set():
            return restarts
        await server.kill()
        for store in stores:
            await asyncio.wait_for(store.log.connection.wait_disconnected(), 10)
        await server.start()
        restarts += 1


@pytest.mark.soak
@pytest.mark.timeout(SOAK_SECONDS + 240)
async def test_soak_with_server_restarts(start_server: ServerFactory) -> None:
    """Every acknowledged write survives repeated SIGKILLs: once in the log, in the views."""
    server = await start_server()
    options = ConnectOptions(write_timeout=2.0)
    stores = [await JetStreamMessageStore.connect(server.url, options=options) for _ in range(2)]
    ledger = Ledger()
    live, durable = Seen(), Seen()
    started = time.monotonic()
    try:
        shared = Thread.new("shared", "everyone")
        await stores[0].create_thread(shared)
        await ledger.ack(-1, ("thread.created", shared.id, ""))
        await stores[1].wait_for(stores[0].sequence)
        async with (
            stores[0].log.subscribe(start="beginning") as events,
            stores[1].log.subscribe_durable("soak", ack_wait=timedelta(seconds=5)) as deliveries,
        ):
            listeners = [
                asyncio.create_task(follow_live(events, live)),
                asyncio.create_task(follow_durable(deliveries, durable)),
            ]
            try:
                done = asyncio.Event()
                deadline = started + SOAK_SECONDS
                async with asyncio.TaskGroup() as group:
                    chaos = group.create_task(restart_now_and_then(server, stores, done))
                    for index, store in enumerate(stores):
                        group.create_task(read(store, index, ledger))
                    async with asyncio.TaskGroup() as writers:
                        for index in range(WRITERS_PER_STORE * len(stores)):
                            store_index = index % len(stores)
                            writers.create_task(
                                write(
                                    index,
                                    stores[store_index],
                                    store_index,
                                    shared=shared,
                                    ledger=ledger,
                                    deadline=deadline,
                                )
                            )
                    done.set()
                    await ledger.close()
                await check(
                    stores,
                    ledger,
                    live=live,
                    durable=durable,
                    restarts=chaos.result(),
                    started=started,
                )
            finally:
                for listener in listeners:
                    listener.cancel()
                for ended in await asyncio.gather(*listeners, return_exceptions=True):
                    if not isinstance(ended, asyncio.CancelledError | None):
                        print(f"[soak] a subscriber failed: {ended!r}")  # noqa: T201 - shown on failure
    finally:
        for store in stores:
            await store.close()


async def check(
    stores: list[JetStreamMessageStore],
    ledger: Ledger,
    *,
    live: Seen,
    durable: Seen,
    restarts: int,
    started: float,
) -> None:
    """Once the server stays up: the log, the views and the subscribers against the ledger."""
    log = stores[0].log
    end = await until_acknowledged(log.last_sequence, log.connection)
    for store in stores:
        await asyncio.wait_for(store.wait_for(end), SETTLE)
    records = [record async for record in log.read()]
    events = [log.codec.decode(record.data) for record in records]
    ids = [event.event_id for event in events]
    keys = collections.Counter(key_of(event) for event in events)
    acked = collections.Counter(key for _, key in ledger.acked)
    missing = acked.keys() - keys.keys()
    unasked = keys.keys() - acked.keys()
    repeated = [key for key, count in keys.items() if count > 1]
    duplicate_ids = len(ids) - len(set(ids))
    await asyncio.wait_for(
        live.until(lambda: bool(live.events) and live.events[-1][0] >= end), SETTLE
    )
    await asyncio.wait_for(
        durable.until(lambda: {i for _, i in durable.events} >= set(ids)), SETTLE
    )
    rebuilt = await rebuild(log)
    report(
        "soak",
        seconds=round(time.monotonic() - started),
        restarts=restarts,
        acked=len(ledger.acked),
        found=len(records),
        missing=len(missing),
        duplicates=duplicate_ids,
        repeated_writes=len(repeated),
        unavailable_retries=ledger.retried.unavailable,
        reads=ledger.reads,
        live_seen=len(live.events),
        durable_deliveries=len(durable.events),
    )
    assert restarts >= 3
    assert ledger.retried.unavailable > 0  # the restarts really cut writes off
    assert [record.sequence for record in records] == list(range(1, end + 1))
    assert duplicate_ids == 0
    assert not missing, f"{len(missing)} acknowledged writes are not in the log"
    assert not unasked, f"{len(unasked)} events in the log were never acknowledged"
    assert not repeated, f"{len(repeated)} writes are in the log more than once"
    position = {
        key_of(event): record.sequence for record, event in zip(records, events, strict=True)
    }
    for writer in {writer for writer, _ in ledger.acked}:
        sequences = [position[key] for who, key in ledger.acked if who == writer]
        assert sequences == sorted(sequences), f"writer {writer}'s writes are out of order"
    assert live.events == [
        (record.sequence, event_id) for record, event_id in zip(records, ids, strict=True)
    ]
    assert {event_id for _, event_id in durable.events} == set(ids)
    assert rebuilt.sequence == end
    for store in stores:
        assert store.views.digest() == rebuilt.digest
    views = rebuilt.projection.views
    for message_id, (_, message, deleted) in ledger.messages.items():
        found = views.message(message_id)
        assert found is not None
        assert (found.content, found.deleted_at is not None) == (message.content, deleted)
    for thread_id, (title, deleted) in ledger.threads.items():
        thread = views.thread(thread_id)
        assert thread is not None
        assert (thread.title, thread.deleted_at is not None) == (title, deleted)
