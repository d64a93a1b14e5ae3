"""Faults with real processes: nats-server killed with SIGKILL and restarted on the same store,
and a projection killed (SIGKILL, in a process of its own) or stopped while it folds."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import report, until_acknowledged

from eventlog import ConnectOptions, EventLog, Message, Thread, ThreadCreated, UnavailableError
from eventlog.blobs import BlobBucket
from eventlog.events import new_event_id
from projections import JetStreamMessageStore, SnapshotPolicy, rebuild

if TYPE_CHECKING:
    from conftest import ServerFactory, StoreFactory

    from eventlog import StreamSettings

CHILD = Path(__file__).with_name("projection_child.py")


async def test_server_away_then_back(start_server: ServerFactory) -> None:
    """Server down: writes fail fast, reads answer, health degrades; back: all resumes."""
    server = await start_server()
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
        await until_acknowledged(lambda: store.create_message(after), store.log.connection)
        listed = [m.id for m in await store.list_messages(thread.id)]
        # The write that raised may still have landed (the client sends what it buffered
        # once back): that is what "may or may not have been stored" means.
        assert listed[0] == before.id
        assert listed[-1] == after.id
        assert len(listed) in (2, 3)
        report(
            "server-away",
            acknowledged=2,
            found=len(listed),
            duplicates=len(listed) - len(set(listed)),
        )
        assert (await store.health_check()).ok
        fresh = await JetStreamMessageStore.connect(server.url)
        assert fresh.views.digest() == store.views.digest()
        await fresh.close()
    finally:
        await store.close()


async def test_crash_during_concurrent_appends_loses_nothing_acknowledged(
    start_server: ServerFactory,
) -> None:
    """SIGKILL mid-stream: every acked append survives; retried ones are stored exactly once."""
    server = await start_server()
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
            acknowledged[event.event_id] = await until_acknowledged(
                lambda event=event: log.append(event), log.connection
            )
        stored = [log.codec.decode(r.data).event_id async for r in log.read()]
        report(
            "appends-under-sigkill",
            acknowledged=len(acknowledged),
            found=len(stored),
            duplicates=len(stored) - len(set(stored)),
        )
        assert len(stored) == len(set(stored))  # no duplicates anywhere
        assert set(stored) == {e.event_id for e in events}  # every acked and retried event
        positions = {event_id: index + 1 for index, event_id in enumerate(stored)}
        assert all(positions[e] == seq for e, seq in acknowledged.items())
    finally:
        await log.close()


async def write_backlog(store: JetStreamMessageStore, threads: int = 20) -> int:
    """About 200 events a thread (messages, edits, deletes), one record that is not an event.

    Written by concurrent writers, so the threads' events interleave in the stream as they
    would in production. Returns the stream's last sequence.
    """

    async def conversation(index: int) -> None:
        thread = Thread.new("acme", f"user{index % 3}")
        await store.create_thread(thread)
        for turn in range(150):
            message = Message.user(thread.id, f"turn {turn} of thread {index}")
            await store.create_message(message)
            if turn % 5 == 0:
                await store.update_message(message.model_copy(update={"content": f"edit {turn}"}))
            if turn % 7 == 0:
                await store.delete_message(message.id)
        await store.update_thread(thread.model_copy(update={"title": f"thread {index}"}))

    await asyncio.gather(*(conversation(i) for i in range(threads // 2)))
    poison = store.log.subjects.thread("acme", "thread_poison")
    await store.log.jetstream.publish(poison, b"\xff not an event", stream=store.log.stream.name)
    await asyncio.gather(*(conversation(i) for i in range(threads // 2, threads)))
    return await store.log.last_sequence()


def snapshot_sequence(name: str | None) -> int:
    return int(name.removeprefix("views-")) if name else 0


async def newest_snapshot(log: EventLog) -> str | None:
    bucket = await BlobBucket.open(log, "snapshots", create=False)
    return max(await bucket.names(), default=None) if bucket is not None else None


async def assert_restart_equals_rebuild(connect_store: StoreFactory, end: int) -> str | None:
    """A fresh store starts from the newest snapshot (if any) and ends with a rebuild's digest.

    Returns that snapshot's name.
    """
    fresh = await connect_store()
    health = await fresh.health_check()
    newest = await newest_snapshot(fresh.log)
    rebuilt = await rebuild(fresh.log)
    assert health.snapshots.restored == newest  # the newest snapshot was used, not folded around
    assert health.snapshots.rejected == ()  # no half-written snapshot was left to trip on
    assert snapshot_sequence(newest) < fresh.sequence == rebuilt.sequence == end
    assert fresh.views.digest() == rebuilt.digest
    assert health.skipped == tuple(rebuilt.projection.skipped)
    assert [s.subject.rsplit(".", 1)[1] for s in health.skipped] == ["thread_poison"]
    report(
        "projection-restart",
        events=end,
        restored_at=snapshot_sequence(newest),
        folded_after=end - snapshot_sequence(newest),
        skipped=len(health.skipped),
    )
    return newest


async def write_until(store: JetStreamMessageStore, stop: asyncio.Event) -> None:
    """Messages into a thread of its own until ``stop`` is set: the stream keeps growing."""
    thread = Thread.new("acme", "live")
    await store.create_thread(thread)
    turn = 0
    while not stop.is_set():
        await store.create_message(Message.user(thread.id, f"live {turn}"))
        turn += 1


async def test_projection_killed_mid_fold_restarts_from_its_snapshot(
    connect_store: StoreFactory, nats_url: str, stream_settings: StreamSettings
) -> None:
    """SIGKILL a store process while it folds and writes snapshots, three times over.

    Each process starts on a backlog the killed one had not finished, and on a stream that
    is still growing (a writer appends until the kill); it is killed as soon as it reports
    its first snapshot, so most kills land in its next snapshot or in the fold. Each one
    starts from the newest snapshot the last one left; a last store restores the newest,
    folds the tail, and has the digest of a full rebuild.
    """
    writer = await connect_store()
    await write_backlog(writer)
    restored: str | None = None
    for _ in range(3):
        stop = asyncio.Event()
        live = asyncio.create_task(write_until(writer, stop))
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CHILD),
            nats_url,
            stream_settings.name,
            stream_settings.subject_prefix,
            "200",
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdout is not None
        try:
            lines = [
                (await asyncio.wait_for(child.stdout.readline(), 30)).decode().split()
                for _ in range(2)  # "restored <name>", then "snapshot <sequence>": kill it now
            ]
            child.send_signal(signal.SIGKILL)
        finally:
            stop.set()
            if child.returncode is None:
                child.kill()
            await child.communicate()
            await live
        assert child.returncode == -signal.SIGKILL
        assert lines[0] == ["restored", str(restored)]  # it started from the killed one's
        assert lines[1][0] == "snapshot"
        newest = await newest_snapshot(writer.log)
        assert snapshot_sequence(restored) < int(lines[1][1]) <= snapshot_sequence(newest)
        restored = newest
    await writer.create_thread(Thread.new("acme", "tail"))  # a tail past every snapshot
    await assert_restart_equals_rebuild(connect_store, writer.sequence)


async def test_projection_stopped_mid_fold_holds_a_true_prefix(
    connect_store: StoreFactory, nats_url: str, stream_settings: StreamSettings
) -> None:
    """A store stopped part-way through a stream holds exactly the log up to where it stood.

    It folds while concurrent writers fill the stream, writing a snapshot every 500 events,
    and is closed at the sequence where its second snapshot falls due (so the close also
    cancels that snapshot being written). Its views equal a rebuild up to its sequence; a
    fresh store restores its snapshot and ends with the digest of a full rebuild.
    """
    writer = await connect_store()
    store = await JetStreamMessageStore.connect(
        nats_url,
        stream=stream_settings.name,
        subject_prefix=stream_settings.subject_prefix,
        wait_until_ready=False,
        snapshots=SnapshotPolicy(every=500),
    )
    backlog = asyncio.create_task(write_backlog(writer))
    try:
        first = await asyncio.wait_for(store.snapshots.wait_written(1), 30)
        await asyncio.wait_for(store.wait_for(first.sequence + 500), 30)
    finally:
        await store.close()
        end = await backlog
    stopped = store.sequence
    report("projection-stopped", events=end, snapshot_at=first.sequence, stopped_at=stopped)
    assert first.sequence + 500 <= stopped < end
    assert store.views.digest() == (await rebuild(writer.log, until=stopped)).digest
    newest = await assert_restart_equals_rebuild(connect_store, end)
    assert first.sequence <= snapshot_sequence(newest) <= stopped
