"""Faults with real nats-server processes, killed with SIGKILL and restarted on the same store."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from eventlog import (
    ConnectOptions,
    EmbeddedNats,
    EventLog,
    Message,
    Thread,
    ThreadCreated,
    UnavailableError,
    new_event_id,
)
from projections import JetStreamMessageStore

if TYPE_CHECKING:
    from pathlib import Path


async def test_server_away_then_back(tmp_path: Path) -> None:
    """Server down: writes fail fast, reads answer, health degrades; back: all resumes."""
    server = EmbeddedNats(data_dir=tmp_path)
    await server.start()
    store = await JetStreamMessageStore.connect(
        server.url, options=ConnectOptions(write_timeout=1.0)
    )
    try:
        thread = Thread.new("acme", "alice")
        await store.create_thread(thread)
        before = Message.user(thread.id, "before the crash")
        await store.create_message(before)

        await server.kill()
        await store.log.connection.wait_disconnected()
        started = time.monotonic()
        with pytest.raises(UnavailableError) as caught:
            await store.create_message(Message.user(thread.id, "while away"))
        assert time.monotonic() - started < 3.0
        assert server.url.split("//")[1] in caught.value.url
        assert [m.id for m in await store.list_messages(thread.id)] == [before.id]
        health = await store.health_check()
        assert health.status == "degraded"
        assert not health.connected

        await server.start()
        await store.log.connection.wait()
        after = Message.user(thread.id, "after the restart")
        for _ in range(100):  # JetStream may take a moment to recover its streams
            try:
                await store.create_message(after)
                break
            except UnavailableError:
                await store.log.connection.wait()
        listed = [m.id for m in await store.list_messages(thread.id)]
        # The write that raised may still have landed (the client sends what it buffered
        # once back): that is what "may or may not have been stored" means.
        assert listed[0] == before.id
        assert listed[-1] == after.id
        assert len(listed) in (2, 3)
        assert (await store.health_check()).ok
        fresh = await JetStreamMessageStore.connect(server.url)
        assert fresh.views.digest() == store.views.digest()
        await fresh.close()
    finally:
        await store.close()
        await server.stop()


async def test_crash_during_concurrent_appends_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """SIGKILL mid-stream: every acked append survives; retried ones are stored exactly once."""
    server = EmbeddedNats(data_dir=tmp_path)
    await server.start()
    log = await EventLog.connect(server.url, options=ConnectOptions(write_timeout=1.0))
    acknowledged: dict[str, int] = {}
    failed: list[ThreadCreated] = []
    events = [
        ThreadCreated(
            event_id=new_event_id(),
            occurred_at=datetime.now(UTC),
            tenant_id="acme",
            thread_id=thread.id,
            thread=thread,
        )
        for thread in (Thread.new("acme", f"user{i % 7}") for i in range(400))
    ]
    killed = asyncio.Event()

    async def writer(batch: list[ThreadCreated]) -> None:
        for index, event in enumerate(batch):
            try:
                acknowledged[event.event_id] = await log.append(event)
            except UnavailableError:
                failed.extend(batch[index:])  # this writer stops; it retries all once back
                return
            if len(acknowledged) >= 150 and not killed.is_set():
                killed.set()
                await server.kill()

    try:
        await asyncio.gather(*(writer(events[i::8]) for i in range(8)))
        assert killed.is_set()
        assert failed  # the crash really cut some appends off
        await server.start()
        await log.connection.wait()
        for event in failed:  # the client's retry: the same event, so the same id
            for _ in range(100):
                try:
                    acknowledged[event.event_id] = await log.append(event)
                    break
                except UnavailableError:
                    await log.connection.wait()
        stored = [log.codec.decode(r.data).event_id async for r in log.read()]
        assert len(stored) == len(set(stored))  # no duplicates anywhere
        assert set(stored) == {e.event_id for e in events}  # every acked and retried event
        positions = {event_id: index + 1 for index, event_id in enumerate(stored)}
        assert all(positions[e] == seq for e, seq in acknowledged.items())
    finally:
        await log.close()
        await server.stop()
