"""Tests for eventlog.log: the EventLog against a real nats-server with JetStream."""

from __future__ import annotations

import dataclasses
import re
import time
from typing import TYPE_CHECKING

import nats
import nats.js.errors
import pytest
from helpers import collect, message_created, thread_created
from nats.js import api

from eventlog import (
    ConflictError,
    ConnectOptions,
    EventLog,
    PayloadTooLargeError,
    StreamSettings,
    UnavailableError,
    ValidationError,
)
from eventlog.subjects import Subjects

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from nats.js import JetStreamContext

TENANT = "tenant_acme"


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture
async def raw_js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    """A plain nats-py JetStream context on the test server, independent of EventLog."""
    nc = await nats.connect(nats_url)
    yield nc.jetstream()
    await nc.close()


# --- the stream ----------------------------------------------------------------------------


async def test_stream_is_created_as_an_audit_log(
    nats_url: str, stream_settings: StreamSettings, raw_js: JetStreamContext
) -> None:
    """connect() creates a file stream that denies delete/purge, with direct get and atomic."""
    settings = dataclasses.replace(stream_settings, duplicate_window=42.0)
    log = await EventLog.connect(nats_url, stream=settings)
    try:
        config = (await raw_js.stream_info(settings.name)).config
    finally:
        await log.close()
    prefix = settings.subject_prefix
    assert config.subjects == [f"{prefix}.*.*"]
    assert config.subject_transform is not None
    assert config.subject_transform.src == f"{prefix}.*.*"
    assert config.subject_transform.dest == (
        f"{prefix}.{{{{partition(64,2)}}}}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}"
    )
    assert log.subjects.partitions == 64
    assert config.storage == api.StorageType.FILE
    assert config.retention == api.RetentionPolicy.LIMITS
    assert config.num_replicas == 1
    assert config.deny_delete is True
    assert config.deny_purge is True
    assert config.allow_direct is True
    assert config.allow_atomic is True
    assert config.duplicate_window == 42.0


async def test_server_refuses_delete_and_purge(
    event_log: EventLog, raw_js: JetStreamContext
) -> None:
    """The server refuses to delete or purge messages of the stream; they all stay."""
    await event_log.append(thread_created(thread_id="thread_1"))
    await event_log.append(thread_created(thread_id="thread_2"))
    name = event_log.stream.name
    with pytest.raises(nats.js.errors.APIError, match="delete not permitted"):
        await raw_js.delete_msg(name, 1)
    with pytest.raises(nats.js.errors.APIError, match="purge not permitted"):
        await raw_js.purge_stream(name)
    state = (await raw_js.stream_info(name)).state
    assert (state.messages, state.first_seq, state.last_seq) == (2, 1, 2)
    assert [r.sequence for r in await collect(event_log.read())] == [1, 2]


@pytest.mark.parametrize(
    ("unfit", "problem"),
    [
        ({"deny_delete": False, "deny_purge": True}, "allows deleting or purging"),
        ({"deny_delete": True, "deny_purge": False}, "allows deleting or purging"),
        ({"deny_delete": True, "deny_purge": True, "subjects": ["other.>"]}, "its subjects"),
        ({"deny_delete": True, "deny_purge": True, "extra": True}, "its subjects"),
        ({"deny_delete": True, "deny_purge": True, "max_msgs_per_subject": 1}, "drop history"),
        ({"deny_delete": True, "deny_purge": True, "max_age": 60.0}, "drop history"),
        ({"deny_delete": True, "deny_purge": True, "allow_msg_ttl": True}, "expire"),
    ],
    ids=[
        "deny-delete-off",
        "deny-purge-off",
        "other-subjects",
        "extra-subjects",
        "one-per-subject",
        "max-age",
        "message-ttl",
    ],
)
async def test_connect_refuses_an_unfit_existing_stream(
    nats_url: str,
    stream_settings: StreamSettings,
    raw_js: JetStreamContext,
    unfit: dict[str, object],
    problem: str,
) -> None:
    """An existing stream that could lose, hide or expire history is refused, and left as it was."""
    name = stream_settings.name
    config = {"subjects": [f"{stream_settings.subject_prefix}.>"], **unfit}
    if config.pop("extra", False):
        config["subjects"] = [*config["subjects"], f"extra{stream_settings.subject_prefix}.>"]  # type: ignore[list-item]
    await raw_js.add_stream(name=name, storage=api.StorageType.FILE, **config)
    with pytest.raises(ValidationError, match=problem) as caught:
        await EventLog.connect(nats_url, stream=stream_settings)
    assert repr(name) in str(caught.value)
    # The unfit stream was left as it was, not silently reconfigured.
    existing = (await raw_js.stream_info(name)).config
    assert existing.deny_delete is unfit["deny_delete"]
    assert existing.deny_purge is unfit["deny_purge"]


async def test_connecting_twice_to_a_fit_stream_works(
    nats_url: str, stream_settings: StreamSettings
) -> None:
    """A second connect to the stream the first created validates it and sees the same log."""
    first = await EventLog.connect(nats_url, stream=stream_settings)
    second = await EventLog.connect(nats_url, stream=stream_settings)
    try:
        sequence = await first.append(thread_created())
        assert await second.last_sequence() == sequence == 1
        assert await second.append(thread_created(thread_id="thread_2")) == 2
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize(("existing", "asked"), [(8, 16), (1, 64), (64, 1)])
async def test_connect_refuses_a_stream_with_another_partition_count(
    nats_url: str, stream_settings: StreamSettings, existing: int, asked: int
) -> None:
    """Asking for a count the stream does not have names both counts, and changes nothing."""
    log = await EventLog.connect(
        nats_url, stream=dataclasses.replace(stream_settings, partitions=existing)
    )
    await log.close()
    with pytest.raises(
        ValidationError,
        match=rf"'{stream_settings.name}' exists but .*: it has {existing} partition\(s\), "
        rf"not the {asked} asked for",
    ):
        await EventLog.connect(
            nats_url, stream=dataclasses.replace(stream_settings, partitions=asked)
        )
    again = await EventLog.connect(nats_url, stream=stream_settings)
    try:
        assert again.subjects.partitions == existing
    finally:
        await again.close()


async def test_connect_refuses_a_stream_kept_in_another_number_of_replicas(
    nats_url: str, stream_settings: StreamSettings
) -> None:
    """A stream of one copy asked for as three is reported, not silently used; unasked, the
    count is the stream's own."""
    await (await EventLog.connect(nats_url, stream=stream_settings)).close()
    with pytest.raises(ValidationError, match=r"it is kept in 1 replica\(s\), not the 3 asked for"):
        await EventLog.connect(nats_url, stream=dataclasses.replace(stream_settings, replicas=3))
    log = await EventLog.connect(nats_url, stream=stream_settings)
    try:
        assert log.replicas == 1
    finally:
        await log.close()


@pytest.mark.parametrize("replicas", [0, 6])
def test_stream_settings_refuse_impossible_replica_counts(replicas: int) -> None:
    """JetStream keeps 1 to 5 copies of a stream."""
    with pytest.raises(ValidationError, match=rf"1 to 5 replicas, not {replicas}"):
        StreamSettings(replicas=replicas)


async def test_a_legacy_stream_is_opened_as_it_is(
    nats_url: str, stream_settings: StreamSettings, raw_js: JetStreamContext
) -> None:
    """Without a count asked, an unpartitioned stream stays one: events under the published
    subject, no transform added."""
    legacy = dataclasses.replace(stream_settings, partitions=1)
    await (await EventLog.connect(nats_url, stream=legacy)).close()
    log = await EventLog.connect(nats_url, stream=stream_settings)
    try:
        assert (log.subjects.partitions, log.subjects.partitioned) == (1, False)
        await log.append(thread_created())
        subject = log.subjects.thread(TENANT, "thread_1")
        assert (await raw_js.get_msg(stream_settings.name, 1)).subject == subject
        assert [record.subject for record in await collect(log.read())] == [subject]
    finally:
        await log.close()
    config = (await raw_js.stream_info(stream_settings.name)).config
    assert config.subjects == [f"{stream_settings.subject_prefix}.>"]
    assert config.subject_transform is None


@pytest.mark.parametrize(
    "dest",
    [
        "{prefix}.{{{{wildcard(2)}}}}.{{{{wildcard(1)}}}}",
        "{prefix}.{{{{partition(8,1)}}}}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}",
        "{prefix}.{{{{partition(8,2)}}}}.{{{{wildcard(2)}}}}.{{{{wildcard(1)}}}}",
    ],
    ids=["swapped", "partition-by-tenant", "partition-then-swapped"],
)
async def test_connect_refuses_a_stream_whose_transform_is_foreign(
    nats_url: str, stream_settings: StreamSettings, raw_js: JetStreamContext, dest: str
) -> None:
    """A transform that is not convlog's own would store events where readers do not look."""
    prefix = stream_settings.subject_prefix
    await raw_js.add_stream(
        name=stream_settings.name,
        subjects=[f"{prefix}.*.*"],
        subject_transform=api.SubjectTransform(
            src=f"{prefix}.*.*", dest=dest.format(prefix=prefix)
        ),
        storage=api.StorageType.FILE,
        deny_delete=True,
        deny_purge=True,
        allow_direct=True,
    )
    with pytest.raises(ValidationError, match="its subject transform") as caught:
        await EventLog.connect(nats_url, stream=stream_settings)
    assert repr(stream_settings.name) in str(caught.value)
    existing = (await raw_js.stream_info(stream_settings.name)).config
    assert existing.subject_transform is not None
    assert existing.subject_transform.dest == dest.format(prefix=prefix)


async def test_connect_to_an_unreachable_server_is_unavailable() -> None:
    """Connecting to a port nobody listens on raises UnavailableError naming the URL, quickly."""
    url = "nats://127.0.0.1:1"
    started = time.monotonic()
    with pytest.raises(UnavailableError, match=re.escape(url)) as caught:
        await EventLog.connect(url, options=ConnectOptions(connect_timeout=1))
    assert time.monotonic() - started < 5
    assert caught.value.url == url


# --- appending -----------------------------------------------------------------------------


async def test_append_returns_increasing_sequences(event_log: EventLog) -> None:
    """Each append returns the next stream sequence, and last_sequence follows."""
    assert await event_log.last_sequence() == 0
    sequences = [
        await event_log.append(thread_created()),
        await event_log.append(message_created("hello")),
        await event_log.append(thread_created(thread_id="thread_2")),
    ]
    assert sequences == [1, 2, 3]
    assert await event_log.last_sequence() == 3


async def test_appending_the_same_event_twice_stores_it_once(event_log: EventLog) -> None:
    """A retried append of the same event id returns the first sequence and stores nothing."""
    event = thread_created()
    first = await event_log.append(event)
    await event_log.append(message_created("between"))
    assert await event_log.append(event) == first
    assert await event_log.last_sequence() == 2
    stored = [event_log.codec.decode(r.data).event_id for r in await collect(event_log.read())]
    assert stored.count(event.event_id) == 1


async def test_expected_sequence_guards_a_thread(event_log: EventLog) -> None:
    """A stale expectation raises ConflictError with expected and actual; other threads go on."""
    first = await event_log.append(thread_created(), expected_last_subject_sequence=0)
    assert first == 1
    with pytest.raises(ConflictError) as caught:
        await event_log.append(message_created("late"), expected_last_subject_sequence=0)
    assert caught.value.expected == 0
    assert caught.value.actual == first
    assert caught.value.subject == event_log.subjects.thread(TENANT, "thread_1")
    assert await event_log.last_sequence() == first
    other = await event_log.append(
        thread_created(thread_id="thread_2"), expected_last_subject_sequence=0
    )
    assert other == first + 1
    # The right expectation on the first thread still works.
    third = await event_log.append(message_created("next"), expected_last_subject_sequence=first)
    assert third == other + 1


async def test_retry_recognised_after_later_appends_to_the_thread(event_log: EventLog) -> None:
    """A retry whose event has since been followed by others still returns its own sequence."""
    event = thread_created()
    original = await event_log.append(event, expected_last_subject_sequence=0)
    later = await event_log.append(
        message_created("after"), expected_last_subject_sequence=original
    )
    assert await event_log.append(event, expected_last_subject_sequence=0) == original
    assert await event_log.last_sequence() == later
    with pytest.raises(ConflictError):  # a different event with the stale expectation conflicts
        await event_log.append(message_created("stale"), expected_last_subject_sequence=0)


async def test_retried_append_with_stale_expectation_returns_original(
    event_log: EventLog,
) -> None:
    """Retrying the same event with its now-stale expectation returns its original sequence."""
    event = thread_created()
    await event_log.append(thread_created(thread_id="thread_other"))
    original = await event_log.append(event, expected_last_subject_sequence=0)
    assert await event_log.append(event, expected_last_subject_sequence=0) == original
    assert await event_log.last_sequence() == original
    assert await event_log.last_on_subject(event_log.subjects.thread(TENANT, "thread_1")) == (
        original,
        event.event_id,
    )


async def test_payload_over_max_payload_is_refused_before_sending(event_log: EventLog) -> None:
    """An event bigger than the server's max payload raises PayloadTooLargeError; none stored."""
    await event_log.append(thread_created())
    big = message_created("x" * (event_log.max_payload + 1))
    with pytest.raises(PayloadTooLargeError) as caught:
        await event_log.append(big)
    assert caught.value.size > caught.value.limit
    assert caught.value.limit <= event_log.max_payload
    assert caught.value.size > event_log.max_payload
    assert await event_log.last_sequence() == 1


# --- batches -------------------------------------------------------------------------------


async def test_batch_is_stored_atomically_with_consecutive_sequences(event_log: EventLog) -> None:
    """A batch of 3 events over 2 threads gets consecutive sequences, in order, on each subject."""
    await event_log.append(thread_created(thread_id="thread_0"))
    batch = [
        thread_created(thread_id="thread_a"),
        thread_created(thread_id="thread_b"),
        message_created("first", thread_id="thread_a"),
    ]
    sequences = await event_log.append_batch(batch, expected=[0, 0, None])
    assert sequences == [2, 3, 4]
    assert await event_log.last_sequence() == 4
    records = await collect(event_log.read(start_sequence=2))
    assert [r.sequence for r in records] == sequences
    assert [event_log.codec.decode(r.data) for r in records] == batch
    assert [r.subject for r in records] == [
        event_log.subjects.thread(TENANT, e.thread_id) for e in batch
    ]


async def test_batch_with_a_wrong_expectation_stores_nothing(event_log: EventLog) -> None:
    """One stale expectation in a batch raises ConflictError and none of its events is stored."""
    existing = await event_log.append(thread_created(thread_id="thread_a"))
    batch = [
        thread_created(thread_id="thread_b"),
        message_created("stale", thread_id="thread_a"),
        message_created("after", thread_id="thread_b"),
    ]
    with pytest.raises(ConflictError) as caught:
        await event_log.append_batch(batch, expected=[0, 0, None])
    assert caught.value.actual == existing
    assert await event_log.last_sequence() == existing
    assert await event_log.last_on_subject(event_log.subjects.thread(TENANT, "thread_b")) is None
    # The log still takes the same events once the expectation is right.
    assert await event_log.append_batch(batch, expected=[0, existing, None]) == [2, 3, 4]


@pytest.mark.parametrize("count", [0, 1001])
async def test_batch_size_is_validated(event_log: EventLog, count: int) -> None:
    """An empty batch and one over 1000 events raise ValidationError and store nothing."""
    events = [thread_created(thread_id=f"thread_{i}") for i in range(count)]
    with pytest.raises(ValidationError, match=str(count)):
        await event_log.append_batch(events)
    assert await event_log.last_sequence() == 0


# --- reading -------------------------------------------------------------------------------


async def test_read_from_a_sequence_yields_the_rest_in_order(event_log: EventLog) -> None:
    """read(start_sequence=k) yields records k..end, in order, decoding to what was appended."""
    events = [thread_created(), *(message_created(f"m{i}") for i in range(5))]
    for event in events:
        await event_log.append(event)
    records = await collect(event_log.read(start_sequence=3))
    assert [r.sequence for r in records] == [3, 4, 5, 6]
    assert [event_log.codec.decode(r.data) for r in records] == events[2:]
    assert {r.subject for r in records} == {event_log.subjects.thread(TENANT, "thread_1")}
    assert records[-1].pending == 0
    everything = await collect(event_log.read())
    assert [event_log.codec.decode(r.data) for r in everything] == events


async def test_read_of_an_empty_stream_yields_nothing(event_log: EventLog) -> None:
    """read() on an empty stream, or past its end, yields nothing and returns."""
    assert await collect(event_log.read()) == []
    await event_log.append(thread_created())
    assert await collect(event_log.read(start_sequence=2)) == []


async def test_read_filtered_on_a_thread(event_log: EventLog) -> None:
    """read(subject=thread subject) yields only that thread's records, in order."""
    mine = [thread_created(thread_id="thread_a"), message_created("a1", thread_id="thread_a")]
    other = [thread_created(thread_id="thread_b"), message_created("b1", thread_id="thread_b")]
    for pair in zip(mine, other, strict=True):
        for event in pair:
            await event_log.append(event)
    await event_log.append(message_created("a2", thread_id="thread_a"))
    subject = event_log.subjects.thread(TENANT, "thread_a")
    records = await collect(event_log.read(subject=subject))
    assert [r.sequence for r in records] == [1, 3, 5]
    assert {r.subject for r in records} == {subject}
    decoded = [event_log.codec.decode(r.data) for r in records]
    assert decoded[:2] == mine
    assert all(e.thread_id == "thread_a" for e in decoded)
    empty = event_log.subjects.thread(TENANT, "thread_none")
    assert await collect(event_log.read(subject=empty)) == []


# --- ids that are not plain tokens ---------------------------------------------------------

AWKWARD_IDS = ["tenant.a", "a*b", "x > y", "émoji 🚀", "_leading", " spaced "]


@pytest.mark.parametrize("tenant_id", AWKWARD_IDS)
async def test_awkward_ids_land_on_their_own_subject(event_log: EventLog, tenant_id: str) -> None:
    """Ids with '.', '*', '>', spaces, leading '_' or unicode round-trip through the subject."""
    thread_ids = [*AWKWARD_IDS, "thread_plain"]
    for thread_id in thread_ids:
        await event_log.append(thread_created(tenant_id, thread_id))
    records = await collect(event_log.read())
    assert len(records) == len(thread_ids)
    for record, thread_id in zip(records, thread_ids, strict=True):
        assert record.subject == event_log.subjects.thread(tenant_id, thread_id)
        assert record.subject.count(".") == event_log.subjects.prefix.count(".") + 2
        assert event_log.subjects.parse(record.subject) == (tenant_id, thread_id)
        assert Subjects(event_log.subjects.prefix).parse(record.subject) == (tenant_id, thread_id)
        event = event_log.codec.decode(record.data)
        assert (event.tenant_id, event.thread_id) == (tenant_id, thread_id)
    subject = event_log.subjects.thread(tenant_id, "x > y")
    only = await collect(event_log.read(subject=subject))
    assert [event_log.codec.decode(r.data).thread_id for r in only] == ["x > y"]


async def test_tenant_filter_never_yields_another_tenant(event_log: EventLog) -> None:
    """A read filtered on tenant "a" yields only "a" events, not "a.b", "a*" or "a.>"."""
    tenants = ["a", "a.b", "a*", "a.>", "a b", "_a", "A", "ab"]
    for tenant_id in tenants:
        for thread_id in ("t1", "b", ">", "*"):
            await event_log.append(thread_created(tenant_id, thread_id))
    records = await collect(event_log.read(subject=event_log.subjects.tenant("a")))
    tenants_seen = [event_log.codec.decode(r.data).tenant_id for r in records]
    assert tenants_seen == ["a"] * 4
    assert {event_log.subjects.parse(r.subject)[0] for r in records} == {"a"}
    for tenant_id in tenants[1:]:
        theirs = await collect(event_log.read(subject=event_log.subjects.tenant(tenant_id)))
        assert {event_log.codec.decode(r.data).tenant_id for r in theirs} == {tenant_id}
        assert len(theirs) == 4
