"""A store confined to one partition: it folds that partition whole, whatever the client drops."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import TYPE_CHECKING

from eventlog import EventLog, Message, StreamSettings, Thread
from eventlog.claims import IdClaims
from projections import JetStreamMessageStore
from projections.service.replica import Replica
from projections.worker import ProjectionWorker

if TYPE_CHECKING:
    import pytest

    from eventlog import LogRecord


async def test_a_partition_store_whose_client_drops_records_follows_again_and_misses_none(
    nats_url: str,
    stream_settings: StreamSettings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Filtered, stream sequences skip other partitions' records, so only the consumer's own
    sequence shows records the client dropped (a slow consumer's): the store follows again."""
    settings = dataclasses.replace(stream_settings, partitions=2)
    await (await EventLog.connect(nats_url, stream=settings)).close()  # two partitions
    writer = await JetStreamMessageStore.connect(
        nats_url, stream=settings.name, subject_prefix=settings.subject_prefix
    )
    ours = 0
    try:
        while ours < 300:
            thread = Thread.new("acme", "alice")
            await writer.create_thread(thread)
            ours += writer.log.subjects.partition_of(thread.id) == 0
    finally:
        await writer.close()

    fold = ProjectionWorker._on_record
    dropped: list[int] = []

    async def dropping(self: ProjectionWorker, record: LogRecord) -> None:
        # What a slow consumer's client does (it drops past its limits), made exact: the
        # first consumer's deliveries 100 to 109 never reach the fold.
        if 100 <= record.delivery < 110 and len(dropped) < 10:
            dropped.append(record.sequence)
            return
        await fold(self, record)

    monkeypatch.setattr(ProjectionWorker, "_on_record", dropping)
    with caplog.at_level(logging.WARNING, logger="projections.worker"):
        store = await JetStreamMessageStore.connect(
            nats_url, stream=settings.name, subject_prefix=settings.subject_prefix, partition=0
        )
    try:
        assert len(dropped) == 10
        assert "projection missed sequences" in caplog.text  # it noticed, and followed again
        assert store.views.thread_count == ours
        assert not (await store.health_check()).skipped
    finally:
        await store.close()


async def test_a_replica_of_every_partition_starts_on_a_stream_larger_than_a_connection_buffers(
    nats_url: str, stream_settings: StreamSettings
) -> None:
    """64 partitions catching up at once on one connection would outrun nats-server's 64 MB
    per-connection buffer, and the server would cut the connection: they take turns."""
    writer = await JetStreamMessageStore.connect(
        nats_url, stream=stream_settings.name, subject_prefix=stream_settings.subject_prefix
    )
    text = "x" * 16_000
    try:
        threads = [Thread.new("acme", f"user-{i}") for i in range(500)]
        await asyncio.gather(*(writer.create_thread(t) for t in threads))
        for _ in range(10):  # 5,000 messages of 16 KB: about 80 MB stored
            await asyncio.gather(
                *(writer.create_message(Message.user(t.id, text)) for t in threads)
            )
    finally:
        await writer.close()
    log = await EventLog.connect(nats_url, stream=stream_settings)
    try:
        replica = await Replica.start(log)
        try:
            assert sum(p.store.views.message_count for p in replica.partitions.values()) == 5000
            assert len(replica.partitions) == 64
        finally:
            await replica.close()
    finally:
        await log.close()


async def test_claims_open_the_bucket_another_process_made_and_changed_first(
    event_log: EventLog,
) -> None:
    """Made and set to take atomic batches by one; another's create meets it and opens it.

    Two replicas' first writes race to make the bucket: the loser's create, without atomic
    batches, is a different configuration of the same stream (seen once under load).
    """
    first = IdClaims(event_log)
    assert await first.claim("msg_raced", "acme", "thread_a") is None  # made, and made atomic
    second = IdClaims(event_log)
    opened = await second._create()  # what a writer that missed the bucket a moment ago does
    assert opened is not None
    assert await second.claim("msg_raced", "acme", "thread_b") == event_log.subjects.thread(
        "acme", "thread_a"
    )
