"""Snapshots in a JetStream object store: restored when fit, reported and ignored when not."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import msgspec
import nats
import pytest

from eventlog import Message, Thread, ValidationError
from eventlog.blobs import BlobBucket
from projections import JetStreamMessageStore, RebuildMismatchError, SnapshotPolicy
from projections.snapshot import Snapshot

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from conftest import StoreFactory

    from eventlog import StreamSettings
    from projections.views import ViewsState


async def conversation(store: JetStreamMessageStore, turns: int = 4) -> Thread:
    thread = Thread.new("acme", "alice")
    await store.create_thread(thread)
    for turn in range(turns):
        await store.create_message(Message.user(thread.id, f"turn {turn}"))
    await store.update_thread(thread.model_copy(update={"title": "real"}))
    return thread


async def bucket_of(store: JetStreamMessageStore) -> BlobBucket:
    bucket = await BlobBucket.open(store.log, "snapshots", create=False)
    assert bucket is not None
    return bucket


async def read_snapshot(bucket: BlobBucket, name: str) -> Snapshot:
    return await Snapshot.from_bytes(await bucket.get(name))


def with_title(state: ViewsState, title: str) -> ViewsState:
    """The same views, but every thread retitled: a snapshot that disagrees with the log."""
    rows = [
        msgspec.structs.replace(
            row, thread=row.thread.replace(b'"title":"real"', f'"title":"{title}"'.encode())
        )
        for row in state.threads
    ]
    return msgspec.structs.replace(state, threads=rows)


async def test_a_new_store_restores_the_snapshot_and_folds_only_the_tail(
    connect_store: StoreFactory,
) -> None:
    """A store restores the newest snapshot and folds just the events after it.

    The snapshot is forged (a thread retitled, its digest recomputed) to prove the store
    took the views from it rather than from sequence 1, and that ``rebuild(verify=True)``
    then catches the difference from the log.
    """
    writer = await connect_store()
    thread = await conversation(writer)
    info = await writer.snapshot()
    assert (info.name, info.sequence) == ("views-00000000000000000006", 6)
    assert (info.threads, info.messages) == (1, 4)

    bucket = await bucket_of(writer)
    snapshot = await read_snapshot(bucket, info.name)
    assert snapshot.digest == writer.views.digest()
    forged = with_title(snapshot.views, "forged")
    await bucket.put(
        info.name,
        await msgspec.structs.replace(snapshot, views=forged, digest=forged.digest()).to_bytes(),
    )
    tail = Message.user(thread.id, "after the snapshot")
    await writer.create_message(tail)

    reader = await connect_store()
    health = await reader.health_check()
    assert health.snapshots.restored == info.name
    assert health.snapshots.rejected == ()
    restored = await reader.get_thread(thread.id)
    assert restored is not None
    assert restored.title == "forged"
    assert await reader.get_message(tail.id) == tail
    assert health.applied_sequence == 7

    with pytest.raises(RebuildMismatchError, match="differ from the live views at sequence 7"):
        await reader.rebuild(verify=True)
    assert (await writer.rebuild(verify=True)).digest == writer.views.digest()


async def _garbage(_: Snapshot, __: bytes) -> bytes:
    return b"\x93 not a snapshot"


async def _format(_: Snapshot, __: bytes) -> bytes:
    return msgspec.msgpack.encode({"format": 999})


async def _format_1(snapshot: Snapshot, _: bytes) -> bytes:
    """As the first format wrote it: the whole snapshot as one msgpack map, uncompressed."""
    return msgspec.msgpack.encode({"format": 1, **msgspec.structs.asdict(snapshot)})


async def _schema(snapshot: Snapshot, _: bytes) -> bytes:
    return await msgspec.structs.replace(snapshot, schema_version=0).to_bytes()


async def _digest(snapshot: Snapshot, _: bytes) -> bytes:
    return await msgspec.structs.replace(
        snapshot, views=with_title(snapshot.views, "tampered")
    ).to_bytes()


async def _ahead(snapshot: Snapshot, _: bytes) -> bytes:
    return await msgspec.structs.replace(snapshot, sequence=10_000).to_bytes()


async def _truncated(_: Snapshot, data: bytes) -> bytes:
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (_garbage, "does not read back as a snapshot"),
        (_truncated, "does not read back as a snapshot"),
        (_format, "it is in format 999, and this code reads format 2"),
        (_format_1, "it is in format 1, and this code reads format 2"),
        (_schema, "written as (schema version, stream, prefix) (0,"),
        (_digest, "its views give digest"),
        (_ahead, "past the stream's end (6)"),
    ],
    ids=["garbage", "truncated", "format", "format 1", "schema", "digest", "ahead"],
)
async def test_an_unfit_snapshot_is_reported_and_ignored(
    connect_store: StoreFactory,
    spoil: Callable[[Snapshot, bytes], Awaitable[bytes]],
    reason: str,
) -> None:
    """A corrupt or incompatible snapshot is logged, listed in health, and not used."""
    writer = await connect_store()
    await conversation(writer)
    info = await writer.snapshot()
    bucket = await bucket_of(writer)
    data = await bucket.get(info.name)
    await bucket.put(info.name, await spoil(await Snapshot.from_bytes(data), data))

    reader = await connect_store()
    health = await reader.health_check()
    assert health.ok
    assert health.snapshots.restored is None
    assert len(health.snapshots.rejected) == 1
    assert health.snapshots.rejected[0].startswith(info.name)
    assert reason in health.snapshots.rejected[0]
    assert reader.views.digest() == writer.views.digest()


async def test_the_newest_fit_snapshot_wins(connect_store: StoreFactory) -> None:
    """When the newest snapshot is corrupt, the one before it is restored."""
    writer = await connect_store()
    thread = await conversation(writer)
    older = await writer.snapshot()
    await writer.create_message(Message.user(thread.id, "between"))
    newer = await writer.snapshot()
    await (await bucket_of(writer)).put(newer.name, b"corrupt")

    reader = await connect_store()
    health = await reader.health_check()
    assert health.snapshots.restored == older.name
    assert [r.split(":")[0] for r in health.snapshots.rejected] == [newer.name]
    assert reader.views.digest() == writer.views.digest()


async def test_a_snapshot_of_another_stream_is_refused(
    connect_store: StoreFactory, nats_url: str, stream_settings: StreamSettings
) -> None:
    """A snapshot made for other records of the same length is refused by its anchor."""
    writer = await connect_store()
    await conversation(writer)
    info = await writer.snapshot()
    snapshot = await read_snapshot(await bucket_of(writer), info.name)

    name, prefix = f"{stream_settings.name}B", f"{stream_settings.subject_prefix}b"
    other = await JetStreamMessageStore.connect(nats_url, stream=name, subject_prefix=prefix)
    try:
        await conversation(other)
        moved = msgspec.structs.replace(snapshot, stream=name, subject_prefix=prefix)
        bucket = await BlobBucket.open(other.log, "snapshots", create=True)
        assert bucket is not None
        await bucket.put(info.name, await moved.to_bytes())
        fresh = await JetStreamMessageStore.connect(nats_url, stream=name, subject_prefix=prefix)
        health = await fresh.health_check()
        digest = other.views.digest()
        assert fresh.views.digest() == digest
        await fresh.close()
    finally:
        await other.close()
    assert health.snapshots.restored is None
    assert "taken from another stream of the same name" in health.snapshots.rejected[0]


async def test_restore_can_be_turned_off(
    connect_store: StoreFactory, nats_url: str, stream_settings: StreamSettings
) -> None:
    """SnapshotPolicy(restore=False) folds from sequence 1 even when a snapshot exists."""
    writer = await connect_store()
    await conversation(writer)
    await writer.snapshot()
    store = await JetStreamMessageStore.connect(
        nats_url,
        stream=stream_settings.name,
        subject_prefix=stream_settings.subject_prefix,
        snapshots=SnapshotPolicy(restore=False),
    )
    try:
        health = await store.health_check()
        assert health.snapshots.restored is None
        assert store.views.digest() == writer.views.digest()
    finally:
        await store.close()


async def test_a_periodic_policy_writes_snapshots_and_keeps_the_newest(
    connect_store: StoreFactory, nats_url: str, stream_settings: StreamSettings
) -> None:
    """SnapshotPolicy(every=N) writes a snapshot each N events and prunes to ``keep``."""
    store = await JetStreamMessageStore.connect(
        nats_url,
        stream=stream_settings.name,
        subject_prefix=stream_settings.subject_prefix,
        snapshots=SnapshotPolicy(every=4, keep=2),
    )
    try:
        thread = Thread.new("acme", "alice")
        await store.create_thread(thread)
        written = []
        for turn in range(11):
            await store.create_message(Message.user(thread.id, f"turn {turn}"))
            if store.sequence % 4 == 0:
                written.append((await store.snapshots.wait_written(store.sequence)).sequence)
        health = await store.health_check()
        names = sorted(await (await bucket_of(store)).names())
    finally:
        await store.close()
    assert written == [4, 8, 12]
    assert health.snapshots.written == 3
    assert names == ["views-00000000000000000008", "views-00000000000000000012"]
    assert health.snapshots.last_written == names[-1]
    reader = await connect_store()
    assert (await reader.health_check()).snapshots.restored == names[-1]
    assert await reader.count_messages(thread.id) == 11


async def test_a_periodic_policy_snapshots_a_backlog_it_caught_up_on(
    connect_store: StoreFactory, nats_url: str, stream_settings: StreamSettings
) -> None:
    """Events folded at start-up count towards ``every``: no need to wait for N new ones.

    A store restarted after a crash folds everything since its last snapshot; unless it
    snapshots that at once, crashing again before N new events folds the same tail again.
    """
    writer = await connect_store()
    for _ in range(3):
        await conversation(writer, turns=20)
    end = writer.sequence
    store = await JetStreamMessageStore.connect(
        nats_url,
        stream=stream_settings.name,
        subject_prefix=stream_settings.subject_prefix,
        snapshots=SnapshotPolicy(every=10),
    )
    try:
        info = await asyncio.wait_for(store.snapshots.wait_written(end), 10)
    finally:
        await store.close()
    assert info.sequence == end


async def test_skipped_records_are_kept_across_a_restore(
    connect_store: StoreFactory, nats_url: str, stream_settings: StreamSettings
) -> None:
    """Records the fold skipped before the snapshot stay listed, with their reasons."""
    writer = await connect_store()
    thread = await conversation(writer)
    nc = await nats.connect(nats_url)
    subject = writer.log.subjects.thread(thread.tenant_id, thread.id)
    ack = await nc.jetstream().publish(subject, b"not an event", stream=stream_settings.name)
    await nc.close()
    await writer.wait_for(ack.seq)
    await writer.snapshot()
    reader = await connect_store()
    health = await reader.health_check()
    assert health.snapshots.restored is not None
    assert [skipped.sequence for skipped in health.skipped] == [ack.seq]
    assert reader._projection.rejection(ack.seq) == health.skipped[0]
    assert "not a convlog event" in health.skipped[0].reason


def test_policy_values_are_checked() -> None:
    """A policy that could never write or keep a snapshot is refused at once: ValidationError."""
    with pytest.raises(ValidationError, match="every must be at least 1"):
        SnapshotPolicy(every=0)
    with pytest.raises(ValidationError, match="keep must be at least 1"):
        SnapshotPolicy(keep=0)
