"""Group commit: concurrent appends share atomic batches; a refused one never fails the rest."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from helpers import collect, message_created, thread_created

from eventlog import (
    ConflictError,
    ConnectOptions,
    EventLog,
    LogRecord,
    Message,
    Thread,
    UnavailableError,
)
from eventlog.group import ATOMIC_FROM, Coalescer, GroupCommit, Pending

if TYPE_CHECKING:
    from collections.abc import Sequence

    from conftest import ServerFactory, StoreFactory

    from eventlog import AnyEvent


async def _append_together(
    group: GroupCommit, log: EventLog, events: Sequence[AnyEvent], expected: Sequence[int | None]
) -> list[int | BaseException]:
    """Queue every append before the group's first batch leaves, so they share it."""
    appends = [
        group.append(event, expected=expect, payload=log.encode(event))
        for event, expect in zip(events, expected, strict=True)
    ]
    return await asyncio.gather(*appends, return_exceptions=True)


async def test_concurrent_appends_share_one_batch_in_order(event_log: EventLog) -> None:
    stored: list[LogRecord] = []
    group = GroupCommit(event_log, on_stored=stored.extend)
    events = [thread_created(thread_id=f"thread_{i}") for i in range(20)]
    results = await _append_together(group, event_log, events, [0] * 20)
    assert results == list(range(1, 21))
    assert group.batches == 1  # the first is appended alone, the other 19 together
    assert [record.sequence for record in stored] == results
    records = await collect(event_log.read())
    assert [event_log.codec.decode(r.data) for r in records] == events


async def test_a_conflict_in_a_batch_fails_only_its_own_append(event_log: EventLog) -> None:
    taken = await event_log.append(thread_created(thread_id="thread_taken"))
    group = GroupCommit(event_log)
    events = [thread_created(thread_id=f"thread_{i}") for i in range(ATOMIC_FROM + 3)]
    stale = message_created("too late", thread_id="thread_taken")
    events.insert(4, stale)
    expected: list[int | None] = [0] * len(events)
    results = await _append_together(group, event_log, events, expected)  # stale expects 0
    conflict = results.pop(4)
    assert isinstance(conflict, ConflictError)
    assert conflict.actual == taken
    assert all(isinstance(result, int) for result in results)
    stored = [event_log.codec.decode(r.data) for r in await collect(event_log.read())]
    assert stale not in stored
    assert len(stored) == 1 + ATOMIC_FROM + 3


async def test_a_retried_event_in_a_batch_is_stored_once(event_log: EventLog) -> None:
    first = thread_created(thread_id="thread_first")
    original = await event_log.append(first)
    group = GroupCommit(event_log)
    events = [thread_created(thread_id=f"thread_{i}") for i in range(ATOMIC_FROM + 1)]
    # The first append goes alone; the retry is in the batch the others form after it.
    together = [events[0], first, *events[1:]]
    results = await _append_together(group, event_log, together, [None] * len(together))
    assert results[1] == original
    assert all(isinstance(result, int) for result in results)
    records = await collect(event_log.read())
    ids = [event_log.codec.decode(r.data).event_id for r in records]
    assert sorted(ids) == sorted({first.event_id, *(e.event_id for e in events)})


async def test_a_store_groups_concurrent_writers(connect_store: StoreFactory) -> None:
    """Many writers on many threads: batches form, every write is visible and stored once."""
    store = await connect_store()
    threads = [Thread.new("acme", f"user{i}") for i in range(64)]
    await asyncio.gather(*(store.create_thread(thread) for thread in threads))
    messages = [Message.user(thread.id, f"hello {i}") for i, thread in enumerate(threads * 4)]

    async def write_all(share: Sequence[Message]) -> None:
        for message in share:
            await store.create_message(message)
            assert await store.get_message(message.id) == message  # read-your-writes

    await asyncio.gather(*(write_all(messages[i::64]) for i in range(64)))
    assert store.group.batches > 0
    for thread in threads:
        assert await store.count_messages(thread.id) == 4
    fresh = await connect_store()
    assert fresh.views.digest() == store.views.digest()


async def test_a_failing_batch_settles_its_writers_and_the_next_goes_on(
    event_log: EventLog,
) -> None:
    """A bug after a batch's ack (here: in on_stored) reaches its writers; nobody hangs."""
    calls: list[int] = []

    def on_stored(records: Sequence[LogRecord]) -> None:
        calls.append(len(records))
        if len(records) > 1:
            raise RuntimeError("bug in the fold")

    group = GroupCommit(event_log, on_stored=on_stored)
    first = [thread_created(thread_id=f"thread_{i}") for i in range(1 + ATOMIC_FROM)]
    results = await _append_together(group, event_log, first, [0] * len(first))
    assert results[0] == 1  # alone, appended in place; the ones after it form a batch
    assert all(isinstance(result, RuntimeError) for result in results[1:])
    later = thread_created(thread_id="thread_later")
    assert await group.append(later, expected=0, payload=event_log.encode(later)) == len(first) + 1
    assert calls == [1, ATOMIC_FROM, 1]


async def test_a_few_appends_at_once_go_side_by_side(event_log: EventLog) -> None:
    """Fewer than ATOMIC_FROM: no atomic batch (its staging would cost more), each answered."""
    stored: list[LogRecord] = []
    group = GroupCommit(event_log, on_stored=stored.extend)
    events = [thread_created(thread_id=f"thread_{i}") for i in range(ATOMIC_FROM - 1)]
    results = await _append_together(group, event_log, events, [0] * len(events))
    assert sorted(results) == list(range(1, len(events) + 1))  # type: ignore[type-var]
    assert group.batches == 0
    assert sorted(record.sequence for record in stored) == sorted(results)  # type: ignore[type-var]
    records = await collect(event_log.read())
    assert {event_log.codec.decode(r.data).event_id for r in records} == {
        e.event_id for e in events
    }


async def test_appends_while_the_server_is_away_raise_unavailable(
    start_server: ServerFactory,
) -> None:
    """Big appends fill the client's buffer while it reconnects: still UnavailableError."""
    server = await start_server()
    log = await EventLog.connect(server.url, options=ConnectOptions(write_timeout=1.0))
    try:
        await server.kill()
        await log.connection.wait_disconnected()
        events = [message_created("x" * 300_000, thread_id=f"thread_{i}") for i in range(6)]
        results = await _append_together(GroupCommit(log), log, events, [None] * 6)
        assert all(isinstance(result, UnavailableError) for result in results), results
    finally:
        await log.close()


async def test_an_item_that_must_wait_is_not_overtaken_on_a_key_it_holds() -> None:
    """B waits for X (A holds it); C, on B's other key Y, must not go before B."""
    batches: list[list[str]] = []

    async def commit(batch: list[Pending[tuple[str, set[str]], None]]) -> None:
        batches.append([pending.item[0] for pending in batch])
        await asyncio.sleep(0)  # the next submissions queue meanwhile
        for pending in batch:
            pending.settle(None)

    coalescer: Coalescer[tuple[str, set[str]], None] = Coalescer(commit, keys=lambda item: item[1])
    items = [("Z", {"Z"}), ("A", {"X"}), ("B", {"X", "Y"}), ("C", {"Y"})]
    await asyncio.gather(*(coalescer.submit(item) for item in items))
    assert batches == [["Z"], ["A"], ["B"], ["C"]]
