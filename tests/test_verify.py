"""Hash-chain verification against a real nats-server, on the stream and on altered copies."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
import pytest
from helpers import copy_stream

from eventlog import LogRecord, Message, Thread, verify_chains
from eventlog.verify import ChainVerifier

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import StoreFactory

    from projections import JetStreamMessageStore


async def two_threads(store: JetStreamMessageStore) -> tuple[Thread, Thread]:
    """Two threads of two tenants, with interleaved messages, one edited and one deleted."""
    acme, globex = Thread.new("acme", "alice"), Thread.new("globex", "bob")
    for thread in (acme, globex):
        await store.create_thread(thread)
    for turn in range(3):
        for thread in (acme, globex):
            message = Message.user(thread.id, f"{thread.tenant_id} turn {turn}")
            await store.create_message(message)
    edited = Message.user(acme.id, "to edit")
    await store.create_message(edited)
    await store.update_message(edited.model_copy(update={"content": "edited"}))
    await store.delete_message(edited.id)
    return acme, globex


async def test_intact_chains_verify_ok(connect_store: StoreFactory) -> None:
    """A log written by stores verifies ok, counting every event and thread, in any scope."""
    store = await connect_store()
    acme, _ = await two_threads(store)
    report = await store.verify()
    assert report.ok
    assert (report.events, report.threads, report.last_sequence) == (11, 2, 11)
    assert report.summary().startswith("ok: 11 events in 2 threads, up to sequence 11")
    tenant = await store.verify(tenant_id="globex")
    assert (tenant.ok, tenant.events, tenant.threads) == (True, 4, 1)
    thread = await store.verify(thread_id=acme.id)
    assert (thread.ok, thread.events, thread.threads) == (True, 7, 1)
    assert (await store.verify(until=5)).events == 5


async def test_an_altered_event_is_pointed_at(connect_store: StoreFactory, nats_url: str) -> None:
    """Changing one stored event's content in a copy breaks the link that names it."""
    store = await connect_store()
    acme, _ = await two_threads(store)
    altered_sequence = 5  # acme's second message

    def alter(record: LogRecord) -> bytes:
        if record.sequence != altered_sequence:
            return record.data
        assert b"acme turn 1" in record.data
        return record.data.replace(b"acme turn 1", b"acme turn 9")

    copy = await copy_stream(store.log, nats_url, alter)
    try:
        report = await verify_chains(copy)
    finally:
        await copy.close()
    assert not report.ok
    assert len(report.breaks) == 1
    broken = report.breaks[0]
    assert broken.previous_sequence == altered_sequence
    assert broken.sequence == 7  # the next event on acme's thread, which still names the original
    assert broken.subject.endswith(acme.id)
    assert "does not match sequence 5" in broken.reason
    assert report.summary().startswith("broken: 1 broken link(s)")


@pytest.mark.parametrize(
    ("rewrite", "reason", "at"),
    [
        (lambda r: None if r.sequence == 5 else r.data, "does not match sequence 3", 7),
        (lambda r: None if r.sequence == 1 else r.data, "none is stored before it", 3),
        (lambda r: b"not json" if r.sequence == 4 else r.data, "not a convlog event", None),
    ],
    ids=["removed-event", "removed-first-event", "foreign-record"],
)
async def test_removed_or_foreign_records_break_the_chain(
    connect_store: StoreFactory,
    nats_url: str,
    rewrite: Callable[[LogRecord], bytes | None],
    reason: str,
    at: int | None,
) -> None:
    """A removed event, or a record no store wrote, is reported at the first link it breaks."""
    store = await connect_store()
    await two_threads(store)
    copy = await copy_stream(store.log, nats_url, rewrite)
    try:
        report = await verify_chains(copy)
        original = {r.sequence: r.data async for r in store.log.read()}
        copied = [r async for r in copy.read()]
    finally:
        await copy.close()
    first = report.breaks[0]
    assert reason in first.reason
    # a copy renumbers the records after a removed one: match the break by its bytes
    data = next(r.data for r in copied if r.sequence == first.sequence)
    assert data == (original[at] if at is not None else b"not json")


async def test_root_changes_when_a_threads_last_event_changes(connect_store: StoreFactory) -> None:
    """No link names a thread's last event, but the root over the threads' heads changes."""
    store = await connect_store()
    await two_threads(store)
    records = [record async for record in store.log.read()]
    honest, forged = ChainVerifier(), ChainVerifier()
    for record in records:
        honest.check(record)
        last = record is records[-1]
        data = record.data.replace(b"deleted_at", b"deleted_at ") if last else record.data
        forged.check(msgspec.structs.replace(record, data=data))
    assert honest.report().ok
    assert forged.report().ok
    assert honest.report().root != forged.report().root
    assert (await store.verify()).root == honest.report().root
