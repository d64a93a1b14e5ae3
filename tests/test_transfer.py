"""Export to JSON Lines and import into another stream, against a real nats-server."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import msgspec
import pytest
from uuid_utils import uuid7

from eventlog import (
    EventLog,
    ExportedEvent,
    Message,
    MessageCreated,
    StreamSettings,
    Thread,
    ValidationError,
    event_digest,
    export_events,
    import_events,
    new_event_id,
    verify_chains,
)
from projections import rebuild

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from conftest import StoreFactory

    from projections import JetStreamMessageStore


@pytest.fixture
async def empty_log(nats_url: str) -> AsyncIterator[EventLog]:
    """A second, empty stream with its own name and subject prefix."""
    token = uuid7().hex[-12:]
    log = await EventLog.connect(
        nats_url, stream=StreamSettings(name=f"I{token}", subject_prefix=f"i{token}")
    )
    yield log
    await log.close()


async def two_tenants(store: JetStreamMessageStore) -> tuple[Thread, Thread, Thread]:
    threads = (Thread.new("acme", "alice"), Thread.new("acme", "bob"), Thread.new("globex", "c"))
    for thread in threads:
        await store.create_thread(thread)
        message = Message.user(thread.id, f"hello {thread.user_id}")
        await store.create_message(message)
        await store.update_message(message.model_copy(update={"content": "edited"}))
    await store.delete_thread(threads[1].id)
    return threads


async def exported(log: EventLog, **scope: str) -> bytes:
    out = io.BytesIO()
    await export_events(log, out, **scope)
    return out.getvalue()


async def test_export_writes_one_line_per_event_with_its_exact_bytes(
    connect_store: StoreFactory,
) -> None:
    """Each line holds the record's sequence, time, subject and stored bytes, in log order."""
    store = await connect_store()
    await two_tenants(store)
    lines = (await exported(store.log)).splitlines()
    records = [record async for record in store.log.read()]
    assert len(lines) == len(records) == 10
    for line, record in zip(lines, records, strict=True):
        event = msgspec.json.decode(line, type=ExportedEvent)
        assert (event.sequence, event.time, event.subject) == (
            record.sequence,
            record.time,
            record.subject,
        )
        assert bytes(event.event) == record.data


async def test_export_scopes_to_a_tenant_or_a_thread(connect_store: StoreFactory) -> None:
    """--tenant and --thread narrow the export on the server."""
    store = await connect_store()
    alice, _, globex = await two_tenants(store)
    assert len((await exported(store.log, tenant_id="acme")).splitlines()) == 7
    assert len((await exported(store.log, tenant_id="globex")).splitlines()) == 3
    only = (await exported(store.log, thread_id=alice.id)).splitlines()
    assert len(only) == 3
    assert all(alice.id.encode() in line and globex.id.encode() not in line for line in only)


async def test_round_trip_into_an_empty_stream_rebuilds_the_same_digest(
    connect_store: StoreFactory, empty_log: EventLog
) -> None:
    """export, import into an empty stream, rebuild: the same digest, every chain intact."""
    store = await connect_store()
    await two_tenants(store)
    report = await import_events(empty_log, io.BytesIO(await exported(store.log)))
    assert (report.appended, report.already_present, report.threads) == (10, 0, 3)
    rebuilt = await rebuild(empty_log)
    assert rebuilt.digest == store.views.digest()
    assert (await verify_chains(empty_log)).ok
    assert await empty_log.last_sequence() == 10


async def test_import_is_idempotent(connect_store: StoreFactory, empty_log: EventLog) -> None:
    """Importing the same export again, or a longer one, appends only what is missing."""
    store = await connect_store()
    alice, _, _ = await two_tenants(store)
    first = await exported(store.log)
    await import_events(empty_log, io.BytesIO(first))
    again = await import_events(empty_log, io.BytesIO(first))
    assert (again.appended, again.already_present) == (0, 10)
    await store.create_message(Message.user(alice.id, "later"))
    longer = await import_events(empty_log, io.BytesIO(await exported(store.log)))
    assert (longer.appended, longer.already_present) == (1, 10)
    assert (await rebuild(empty_log)).digest == store.views.digest()


async def test_import_refuses_to_break_a_chain(
    connect_store: StoreFactory, empty_log: EventLog
) -> None:
    """An export with a gap, or a target holding another history, is refused, not appended."""
    store = await connect_store()
    alice, _, _ = await two_tenants(store)
    lines = (await exported(store.log)).splitlines(keepends=True)
    gap = lines[:1] + lines[2:]  # drops alice's message.created
    with pytest.raises(ValidationError, match=r"line 2: event \S+ does not continue the hash"):
        await import_events(empty_log, io.BytesIO(b"".join(gap)))
    assert await empty_log.last_sequence() == 1

    subject = empty_log.subjects.thread(alice.tenant_id, alice.id)
    head = [record async for record in empty_log.read(subject=subject)][-1]
    other = Message.user(alice.id, "another history")
    await empty_log.append(
        MessageCreated(
            event_id=new_event_id(),
            occurred_at=other.created_at,
            tenant_id=alice.tenant_id,
            thread_id=alice.id,
            message_id=other.id,
            message=other,
            prev_hash=event_digest(head.data),
        )
    )
    with pytest.raises(ValidationError, match="the stream holds another history of this thread"):
        await import_events(empty_log, io.BytesIO(b"".join(lines)))
    assert await empty_log.last_sequence() == 2
    with pytest.raises(ValidationError, match="line 1 is not an exported convlog event"):
        await import_events(empty_log, [b"{}\n"])
