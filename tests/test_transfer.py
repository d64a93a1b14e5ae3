"""Export to JSON Lines and import into another stream, against a real nats-server."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import msgspec
import nats
import pytest
from nats.js import api
from uuid_utils import uuid7

from eventlog import (
    EventLog,
    ExportedEvent,
    ExportTrailer,
    ImportRejectedError,
    Message,
    MessageCreated,
    StreamSettings,
    Thread,
    export_events,
    import_events,
    verify_chains,
)
from eventlog.events import event_digest, new_event_id
from projections import rebuild

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from conftest import StoreFactory

    from projections import JetStreamMessageStore


async def fresh_log(nats_url: str) -> EventLog:
    """Another, empty stream with its own name and subject prefix."""
    token = uuid7().hex[-12:]
    return await EventLog.connect(
        nats_url, stream=StreamSettings(name=f"I{token}", subject_prefix=f"i{token}")
    )


@pytest.fixture
async def empty_log(nats_url: str) -> AsyncIterator[EventLog]:
    """A second, empty stream with its own name and subject prefix."""
    log = await fresh_log(nats_url)
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


def split(export: bytes) -> tuple[list[bytes], ExportTrailer]:
    """An export's event lines, and its trailer (the last line)."""
    *events, trailer = export.splitlines(keepends=True)
    return events, msgspec.json.decode(trailer, type=ExportTrailer)


async def stored(log: EventLog) -> list[bytes]:
    """The bytes of every record in the stream, in order."""
    return [record.data async for record in log.read()]


async def test_export_writes_one_line_per_event_with_its_exact_bytes(
    connect_store: StoreFactory,
) -> None:
    """Each line holds the record's sequence, time, subject and stored bytes, in log order."""
    store = await connect_store()
    await two_tenants(store)
    lines, _ = split(await exported(store.log))
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
    assert len(split(await exported(store.log, tenant_id="acme"))[0]) == 7
    assert len(split(await exported(store.log, tenant_id="globex"))[0]) == 3
    only, _ = split(await exported(store.log, thread_id=alice.id))
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


async def test_export_ends_with_a_trailer_holding_the_verify_root(
    connect_store: StoreFactory,
) -> None:
    """The trailer's root is verify's root for the same scope; heads name each last event."""
    store = await connect_store()
    alice, _, _ = await two_tenants(store)
    out = io.BytesIO()
    report = await export_events(store.log, out, tenant_id="acme")
    lines, trailer = split(out.getvalue())
    verified = await verify_chains(store.log, tenant_id="acme")
    assert trailer.root == report.root == verified.root
    assert (trailer.events, trailer.threads) == (report.events, report.threads) == (7, 2)
    alice_subject = store.log.subjects.thread(alice.tenant_id, alice.id)
    alice_last = msgspec.json.decode(lines[2], type=ExportedEvent)
    assert trailer.heads[alice_subject] == event_digest(bytes(alice_last.event))
    assert len(trailer.heads) == 2


def edited(line: bytes) -> bytes:
    """The line with its event's bytes changed (an extra field the codec ignores)."""
    assert b'"event":{' in line
    return line.replace(b'"event":{', b'"event":{"edited":true,', 1)


async def rejected(log: EventLog, lines: list[bytes], match: str) -> ImportRejectedError:
    """Import ``lines``, expect a rejection matching ``match``, and check nothing was written."""
    with pytest.raises(ImportRejectedError, match=match) as caught:
        await import_events(log, lines)
    assert "nothing was written" in str(caught.value)
    assert await log.last_sequence() == 0
    return caught.value


async def test_import_rejects_a_malformed_line_and_writes_nothing(
    connect_store: StoreFactory, empty_log: EventLog
) -> None:
    """Bad JSON, a line of another shape, or an embedded non-event: refused at that line."""
    store = await connect_store()
    await two_tenants(store)
    lines = (await exported(store.log)).splitlines(keepends=True)
    error = await rejected(
        empty_log, [*lines[:3], b"{not json\n", *lines[4:]], r"^import refused at line 4: the line"
    )
    assert error.line == 4
    await rejected(empty_log, [*lines[:5], b"{}\n", *lines[6:]], "line 6: the line is not an expo")
    junk = lines[6].replace(b'"event":{', b'"event":{"not":"an event"},"x":{', 1)
    await rejected(empty_log, [*lines[:6], junk, *lines[7:]], "line 7: its event cannot be read")
    await rejected(
        empty_log, [*lines, lines[0]], "line 12: an export ends at its trailer, on line 11"
    )


async def test_import_rejects_an_event_over_the_targets_payload_limit(
    connect_store: StoreFactory, empty_log: EventLog
) -> None:
    """An event the target could not store is refused before the first append, not after."""
    store = await connect_store()
    await two_tenants(store)
    lines = (await exported(store.log)).splitlines(keepends=True)
    lines[4] = lines[4].replace(b"hello bob", b"x" * (empty_log.payload_limit + 1), 1)
    await rejected(empty_log, lines, r"line 5: its event is \d+ bytes, over the target's limit")


async def test_import_rejects_an_edited_middle_event_naming_its_line(
    connect_store: StoreFactory, empty_log: EventLog
) -> None:
    """An edited event breaks the next link on its thread: both lines named, nothing appended."""
    store = await connect_store()
    await two_tenants(store)
    lines = (await exported(store.log)).splitlines(keepends=True)
    lines[1] = edited(lines[1])  # alice's message.created; her update on line 3 links to it
    error = await rejected(
        empty_log,
        lines,
        r"line 3: event \S+ does not continue the hash chain of thread .* from line 2",
    )
    assert error.line == 3


@pytest.mark.parametrize("index", [8, 9], ids=["a-thread's-last", "the-file's-last"])
async def test_import_rejects_an_edited_last_event_naming_its_line(
    connect_store: StoreFactory, empty_log: EventLog, index: int
) -> None:
    """Nothing follows a thread's last event, so the trailer's heads catch its edit."""
    store = await connect_store()
    await two_tenants(store)
    lines = (await exported(store.log)).splitlines(keepends=True)
    lines[index] = edited(lines[index])
    error = await rejected(empty_log, lines, rf"line {index + 1}: event \S+, the last of thread")
    assert error.line == index + 1


async def test_import_rejects_a_trailer_that_does_not_match_its_root(
    connect_store: StoreFactory, empty_log: EventLog
) -> None:
    """A last event edited with its head to match, or a thread's lines removed: the root fails."""
    store = await connect_store()
    await two_tenants(store)
    events, trailer = split(await exported(store.log))
    last = edited(events[9])
    changed = msgspec.json.decode(last, type=ExportedEvent)
    forged = msgspec.structs.replace(
        trailer, heads={**trailer.heads, changed.subject: event_digest(bytes(changed.event))}
    )
    await rejected(
        empty_log,
        [*events[:9], last, msgspec.json.encode(forged)],
        "line 11: the export's root does not match its events: it was edited",
    )
    extra = msgspec.structs.replace(trailer, heads={**trailer.heads, "elsewhere": "0" * 64})
    await rejected(
        empty_log,
        [*events, msgspec.json.encode(extra)],
        "line 11: the export's root does not match its events: the events of 'elsewhere' are",
    )


async def test_import_without_a_trailer_needs_allow_missing_root(
    connect_store: StoreFactory, empty_log: EventLog
) -> None:
    """A cut-off export (or one from before trailers) is refused unless explicitly allowed."""
    store = await connect_store()
    await two_tenants(store)
    events, _ = split(await exported(store.log))
    await rejected(empty_log, events, "^import refused: the file has no trailer with its root")
    report = await import_events(empty_log, events, allow_missing_root=True)
    assert report.appended == 10
    assert (await rebuild(empty_log)).digest == store.views.digest()


async def test_import_refuses_another_history_in_the_target_and_writes_nothing(
    connect_store: StoreFactory, empty_log: EventLog
) -> None:
    """A thread the target holds another history of stops the whole import, every thread."""
    store = await connect_store()
    alice, _, _ = await two_tenants(store)
    lines = (await exported(store.log)).splitlines(keepends=True)
    first = bytes(msgspec.json.decode(lines[0], type=ExportedEvent).event)
    await empty_log.append(empty_log.codec.decode(first), payload=first)
    other = Message.user(alice.id, "another history")
    await empty_log.append(
        MessageCreated(
            event_id=new_event_id(),
            occurred_at=other.created_at,
            tenant_id=alice.tenant_id,
            thread_id=alice.id,
            message_id=other.id,
            message=other,
            prev_hash=event_digest(first),
        )
    )
    with pytest.raises(ImportRejectedError, match=r"line 2: .*the stream holds another history"):
        await import_events(empty_log, lines)
    assert await empty_log.last_sequence() == 2


class StoppedError(Exception):
    """Stands for a Ctrl-C or a lost connection in the middle of an import."""


async def test_interrupted_import_resumes_to_what_one_import_gives(
    connect_store: StoreFactory, empty_log: EventLog, nats_url: str
) -> None:
    """Stopped after its first batch, run again: it appends only the rest, with progress."""
    store = await connect_store()
    await two_tenants(store)
    lines = (await exported(store.log)).splitlines(keepends=True)

    def interrupt(done: int, _: int) -> None:
        if done:
            raise StoppedError

    with pytest.raises(StoppedError):
        await import_events(empty_log, lines, on_progress=interrupt, batch_size=4)
    assert await empty_log.last_sequence() == 4
    progress: list[tuple[int, int]] = []
    report = await import_events(
        empty_log, lines, on_progress=lambda *seen: progress.append(seen), batch_size=4
    )
    assert (report.appended, report.already_present) == (6, 4)
    assert progress == [(0, 6), (4, 6), (6, 6)]
    one_shot = await fresh_log(nats_url)
    try:
        await import_events(one_shot, lines)
        assert await stored(empty_log) == await stored(one_shot)
    finally:
        await one_shot.close()
    assert (await verify_chains(empty_log)).ok


async def test_import_into_a_stream_without_atomic_batches_appends_one_by_one(
    connect_store: StoreFactory, nats_url: str
) -> None:
    """A stream made without allow_atomic takes the events singly, to the same result."""
    store = await connect_store()
    await two_tenants(store)
    token = uuid7().hex[-12:]
    settings = StreamSettings(name=f"N{token}", subject_prefix=f"n{token}")
    client = await nats.connect(nats_url)
    try:
        await client.jetstream().add_stream(
            name=settings.name,
            subjects=[f"{settings.subject_prefix}.>"],
            storage=api.StorageType.FILE,
            deny_delete=True,
            deny_purge=True,
            allow_direct=True,
        )
    finally:
        await client.close()
    log = await EventLog.connect(nats_url, stream=settings)
    try:
        assert not log.supports_atomic
        report = await import_events(log, (await exported(store.log)).splitlines(), batch_size=3)
        assert report.appended == 10
        assert await stored(log) == await stored(store.log)
        assert (await verify_chains(log)).ok
    finally:
        await log.close()
