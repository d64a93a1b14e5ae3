"""``convlog migrate``: a legacy stream copied into a partitioned one on another real server."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import nats
import nats.js.errors
import pytest
from helpers import CONVLOG, env_without_nats_url

from eventlog import EventLog, Message, StreamSettings, Thread, ValidationError, verify_chains
from eventlog.stream import partitions_of
from eventlog.transfer import MigrateReport, MigrationRefusedError, migrate_events
from projections import JetStreamMessageStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from conftest import ServerFactory

    from eventlog import LogRecord

TENANTS = ("acme", "globex", "initech")
EVENTS = 46
"""What :func:`populate` writes: 3 tenants x 3 threads x (create, 3 messages, an edit), and
one thread deleted."""


async def populate(store: JetStreamMessageStore) -> None:
    """Several tenants, threads and messages, edits and a deletion: :data:`EVENTS` events."""
    for tenant in TENANTS:
        for user in ("ann", "bob", "cy"):
            thread = Thread.new(tenant, user)
            await store.create_thread(thread)
            for n in range(3):
                message = Message.user(thread.id, f"{tenant} {user} {n}")
                await store.create_message(message)
            await store.update_message(message.model_copy(update={"content": "edited"}))
    await store.delete_thread(thread.id)


@pytest.fixture
async def legacy(
    nats_url: str, stream_settings: StreamSettings
) -> AsyncIterator[JetStreamMessageStore]:
    """A store on an unpartitioned stream (made before partitions), holding EVENTS events."""
    log = await EventLog.connect(
        nats_url, stream=dataclasses.replace(stream_settings, partitions=1)
    )
    await log.close()
    store = await JetStreamMessageStore.connect(
        nats_url, stream=stream_settings.name, subject_prefix=stream_settings.subject_prefix
    )
    async with store:
        assert not store.log.subjects.partitioned
        await populate(store)
        yield store


@pytest.fixture
async def elsewhere(start_server: ServerFactory) -> str:
    """The URL of a server of this test's own: where the target stream goes."""
    return (await start_server()).url


async def records(log: EventLog) -> list[LogRecord]:
    return [record async for record in log.read()]


async def stored_subjects(url: str, stream: str) -> list[str]:
    """The subject the server keeps each record of ``stream`` under, read raw, in order."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        last = (await js.stream_info(stream)).state.last_seq
        return [(await js.get_msg(stream, sequence)).subject for sequence in range(1, last + 1)]
    finally:
        await nc.close()


async def opened(url: str, stream: str, prefix: str) -> EventLog:
    """The existing ``stream`` on ``url``, in whatever layout it has."""
    return await EventLog.connect(url, stream=StreamSettings(name=stream, subject_prefix=prefix))


async def test_migrate_copies_a_legacy_stream_into_partitions_byte_for_byte(
    legacy: JetStreamMessageStore, elsewhere: str
) -> None:
    """Every record in order with its bytes, under its partition: the same chains and root."""
    source = legacy.log
    report = await migrate_events(source, elsewhere, stream="MIGRATED", partitions=8)
    before = await verify_chains(source)
    assert before.ok
    assert report == MigrateReport(
        events=EVENTS,
        threads=9,
        appended=EVENTS,
        already_present=0,
        partitions=8,
        root=before.root,
        source_root=before.root,
        not_migrated=(),
        verified=True,
    )
    target = await opened(elsewhere, "MIGRATED", source.subjects.prefix)
    try:
        assert target.subjects.partitions == 8
        after = await verify_chains(target)
        assert (after.ok, after.root, after.events) == (True, before.root, EVENTS)
        copied, original = await records(target), await records(source)
        assert [(r.sequence, r.subject, r.data) for r in copied] == [
            (r.sequence, r.subject, r.data) for r in original
        ]
        raw = await stored_subjects(elsewhere, "MIGRATED")
        assert await stored_subjects(legacy.log.url, source.stream.name) == [
            r.subject for r in original
        ]
        for record, subject in zip(copied, raw, strict=True):
            tenant_id, thread_id = target.subjects.parse(record.subject)
            assert subject == target.subjects.stored(tenant_id, thread_id) != record.subject
            assert subject.split(".")[-3] == str(target.subjects.partition_of(thread_id))
        assert len({subject.split(".")[-3] for subject in raw}) > 1
        config = (await target.jetstream.stream_info("MIGRATED")).config
        mine = (await source.jetstream.stream_info(source.stream.name)).config
        assert (config.num_replicas, config.duplicate_window) == (
            mine.num_replicas,
            mine.duplicate_window,
        )
    finally:
        await target.close()


async def test_a_store_on_the_target_answers_as_one_on_the_source(
    legacy: JetStreamMessageStore, elsewhere: str
) -> None:
    """The same views (digest, threads, messages) folded from the partitioned copy."""
    await migrate_events(legacy.log, elsewhere, stream="MIGRATED", partitions=8)
    copy = await JetStreamMessageStore.connect(
        elsewhere, stream="MIGRATED", subject_prefix=legacy.log.subjects.prefix
    )
    async with copy:
        assert copy.log.subjects.partitions == 8
        assert copy.views.digest() == legacy.views.digest()
        for tenant in TENANTS:
            for user in ("ann", "bob", "cy"):
                threads = await legacy.list_threads(tenant, user, 10, 0)
                assert await copy.list_threads(tenant, user, 10, 0) == threads
                for thread in threads:
                    assert await copy.list_messages(thread.id, True) == (
                        await legacy.list_messages(thread.id, True)
                    )


async def test_migrating_again_appends_only_what_the_source_gained(
    legacy: JetStreamMessageStore, elsewhere: str
) -> None:
    """A second run appends nothing; after a new event, just that one; both still verify."""
    source = legacy.log
    await migrate_events(source, elsewhere, stream="MIGRATED", partitions=8)
    again = await migrate_events(source, elsewhere, stream="MIGRATED", partitions=8)
    assert (again.appended, again.already_present, again.verified) == (0, EVENTS, True)
    thread = (await legacy.list_threads("acme", "ann", 1, 0))[0]
    await legacy.create_message(Message.user(thread.id, "later"))
    later = await migrate_events(source, elsewhere, stream="MIGRATED", partitions=8)
    assert (later.appended, later.already_present, later.verified) == (1, EVENTS, True)
    assert later.root == (await verify_chains(source)).root


class StoppedError(Exception):
    """Stands for a Ctrl-C or a lost connection in the middle of a migration."""


async def test_an_interrupted_migration_run_again_appends_only_the_rest(
    legacy: JetStreamMessageStore, elsewhere: str
) -> None:
    """Stopped after its first batch, run again: it appends the rest, and the copy is whole."""
    source = legacy.log

    def interrupt(done: int, _: int) -> None:
        if done:
            raise StoppedError

    with pytest.raises(StoppedError):
        await migrate_events(
            source, elsewhere, stream="MIGRATED", partitions=8, on_progress=interrupt, batch_size=8
        )
    progress: list[tuple[int, int]] = []
    report = await migrate_events(
        source,
        elsewhere,
        stream="MIGRATED",
        partitions=8,
        on_progress=lambda *seen: progress.append(seen),
        batch_size=32,
    )
    assert (report.appended, report.already_present, report.verified) == (EVENTS - 8, 8, True)
    assert progress == [(0, EVENTS - 8), (32, EVENTS - 8), (EVENTS - 8, EVENTS - 8)]
    target = await opened(elsewhere, "MIGRATED", source.subjects.prefix)
    try:
        assert [r.data for r in await records(target)] == [r.data for r in await records(source)]
    finally:
        await target.close()


async def test_migrate_refuses_a_target_with_another_partition_count(
    legacy: JetStreamMessageStore, elsewhere: str
) -> None:
    """An existing target of 16 partitions is not made to take 8: refused, both named, untouched."""
    prefix = legacy.log.subjects.prefix
    existing = await EventLog.connect(
        elsewhere, stream=StreamSettings(name="MIGRATED", subject_prefix=prefix, partitions=16)
    )
    try:
        with pytest.raises(
            MigrationRefusedError,
            match=r"^migrate refused: stream 'MIGRATED' exists with 16 partition\(s\), not the 8 ",
        ):
            await migrate_events(legacy.log, elsewhere, stream="MIGRATED", partitions=8)
        assert await existing.last_sequence() == 0
        config = (await existing.jetstream.stream_info("MIGRATED")).config
        assert partitions_of(config) == 16
    finally:
        await existing.close()


async def test_migrate_refuses_the_source_and_the_sources_server(
    legacy: JetStreamMessageStore, nats_url: str, elsewhere: str
) -> None:
    """The source itself, a stream beside it (both would take its subjects), a count no stream
    may have: refused, nothing created; the source's name on another server is another stream."""
    source = legacy.log
    name = source.stream.name
    with pytest.raises(MigrationRefusedError, match=f"stream '{name}' is the source itself"):
        await migrate_events(source, nats_url, stream=name, partitions=8)
    with pytest.raises(MigrationRefusedError, match="is on the target's server") as caught:
        await migrate_events(source, nats_url, stream=f"{name}_8", partitions=8)
    assert "--to-nats-url" in str(caught.value)
    nc = await nats.connect(nats_url)
    try:
        with pytest.raises(nats.js.errors.NotFoundError):
            await nc.jetstream().stream_info(f"{name}_8")
    finally:
        await nc.close()
    assert await source.last_sequence() == EVENTS
    for partitions in (0, 1025):
        with pytest.raises(ValidationError, match=f"1 to 1024 partitions, not {partitions}$"):
            await migrate_events(source, elsewhere, stream=name, partitions=partitions)
    report = await migrate_events(source, elsewhere, stream=name, partitions=8)
    assert (report.appended, report.verified) == (EVENTS, True)


# --- the command ----------------------------------------------------------------------------


async def convlog(*args: str) -> tuple[int, str, str]:
    """Run ``convlog ARGS`` as users do; its exit code, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        CONVLOG,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env_without_nats_url(),
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def documented_fields(command: str) -> set[str]:
    """The fields docs/cli.md's table lists for ``convlog COMMAND``."""
    text = (Path(__file__).parent.parent / "docs" / "cli.md").read_text(encoding="utf-8")
    section = text.split(f"### `convlog {command}`", 1)[1].split("\n### ", 1)[0]
    return set(re.findall(r"^\| `(\w+)` \|", section, flags=re.MULTILINE))


async def test_convlog_migrate_prints_the_documented_json_and_the_same_root_as_verify(
    legacy: JetStreamMessageStore, nats_url: str, elsewhere: str
) -> None:
    """--json has docs/cli.md's fields; verify prints the source's root on the target; a second
    run appends nothing; a refusal is one line and exit 1, a missing target server exit 2."""
    name, prefix = legacy.log.stream.name, legacy.log.subjects.prefix
    source = ("--nats-url", nats_url, "--stream", name, "--subject-prefix", prefix)
    to = ("--to", "MIGRATED", "--partitions", "8", "--to-nats-url", elsewhere)
    code, out, err = await convlog("migrate", *source, *to, "--json")
    assert code == 0, err
    document = json.loads(out)
    assert set(document) == documented_fields("migrate")
    assert (document["source"], document["target"], document["partitions"]) == (name, "MIGRATED", 8)
    assert (document["events"], document["appended"], document["verified"]) == (
        EVENTS,
        EVENTS,
        True,
    )
    assert f"migrate: {EVENTS} events in" in err
    roots = []
    for where in (
        source,
        ("--nats-url", elsewhere, "--stream", "MIGRATED", "--subject-prefix", prefix),
    ):
        code, out, err = await convlog("verify", *where, "--json")
        assert code == 0, err
        roots.append(json.loads(out)["root"])
    assert roots[0] == roots[1] == document["root"] == document["source_root"]
    code, out, err = await convlog("migrate", *source, *to, "--color", "never")
    assert code == 0, err
    assert f"migrated {EVENTS} events of 9 threads from stream {name} into stream MIGRATED" in out
    assert f"{EVENTS} were there already; root {roots[0]}, the source's" in out
    code, out, err = await convlog("migrate", *source, "--to", name, "--to-nats-url", nats_url)
    assert (code, out) == (1, "")
    assert err == (
        f"convlog: migrate refused: stream {name!r} is the source itself; nothing was "
        "written, name another stream with --to.\n"
    )
    code, out, err = await convlog("migrate", *source, "--to", "MIGRATED")
    assert code == 2
    assert "one of the arguments --to-nats-url --to-data-dir is required" in err


async def test_a_source_with_records_that_are_not_events_is_copied_but_does_not_verify(
    legacy: JetStreamMessageStore, nats_url: str, elsewhere: str
) -> None:
    """A record no import takes is left out and named; the sequences after it shift, so the
    target's root is not the source's: the library says so, the command exits 1."""
    source = legacy.log
    nc = await nats.connect(nats_url)
    try:
        junk = f"{source.subjects.prefix}.acme.junk"
        ack = await nc.jetstream().publish(junk, b"not an event", stream=source.stream.name)
    finally:
        await nc.close()
    await legacy.create_thread(Thread.new("acme", "after"))
    report = await migrate_events(source, elsewhere, stream="MIGRATED", partitions=8)
    assert (report.appended, report.not_migrated, report.verified) == (
        EVENTS + 1,
        (ack.seq,),
        False,
    )
    assert report.root != report.source_root
    name, prefix = source.stream.name, source.subjects.prefix
    code, out, err = await convlog(
        "migrate", "--nats-url", nats_url, "--stream", name, "--subject-prefix", prefix,
        "--to", "MIGRATED", "--partitions", "8", "--to-nats-url", elsewhere, "--color", "never",
    )  # fmt: skip
    assert code == 1, err
    assert "but the target does not verify to the source's root" in out
    assert "1 record(s) of the source that are not events were left out" in out


async def test_convlog_migrate_into_an_embedded_server_on_a_data_dir(
    legacy: JetStreamMessageStore, nats_url: str, tmp_path: Path
) -> None:
    """--to-data-dir starts a server on that store for the copy; verify there gives the root."""
    name, prefix = legacy.log.stream.name, legacy.log.subjects.prefix
    code, out, err = await convlog(
        "migrate", "--nats-url", nats_url, "--stream", name, "--subject-prefix", prefix,
        "--to", "MIGRATED", "--partitions", "4", "--to-data-dir", str(tmp_path), "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["verified"] is True
    code, out, err = await convlog(
        "verify", "--data-dir", str(tmp_path), "--stream", "MIGRATED", "--subject-prefix", prefix,
        "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["root"] == (await verify_chains(legacy.log)).root
