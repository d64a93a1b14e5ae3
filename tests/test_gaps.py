"""Gaps never hang: a stream that starts above 1, a truncated or a damaged block.

Each fold over the stream (the projection at start-up and while it follows, rebuild) and
each command (verify, stats, rebuild, snapshot) answers within a bounded time, with an
error or a report naming the sequences the stream cannot return. The damaged stores are
copies made with the server stopped, on which a new server is started.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import nats
import pytest
from nats.js import api

from eventlog import (
    EmbeddedNats,
    EventLog,
    Gap,
    Message,
    MissingRecordsError,
    StreamSettings,
    Thread,
    verify_chains,
)
from projections import JetStreamMessageStore
from projections.cli import main
from projections.rebuild import rebuild

BOUND = 30.0
"""Seconds within which every answer must come: generous, a correctness bound."""

_BIG = "x" * 450_000
"""A message of about 900 kB as an event: nine of them fill one 8 MB block of the store."""


async def _write(url: str, messages: int, content: str) -> None:
    """A thread and ``messages`` messages in the default stream: sequences 1 to messages + 1."""
    async with await JetStreamMessageStore.connect(url) as store:
        thread = Thread.new("acme", "alice")
        await store.create_thread(thread)
        for number in range(messages):
            await store.create_message(Message.user(thread.id, f"{number} {content}"))


def _block(data_dir: Path, number: int) -> Path:
    """Block ``number`` of the default stream in a store dir that EmbeddedNats keeps."""
    return (
        data_dir
        / "jetstream"
        / "jetstream"
        / "$G"
        / "streams"
        / "CONVLOG"
        / "msgs"
        / f"{number}.blk"
    )


def _truncate(block: Path, size: int) -> None:
    with block.open("r+b") as file:
        file.truncate(size)


def _overwrite(block: Path, offset: int) -> None:
    with block.open("r+b") as file:
        file.seek(offset)
        file.write(b"A" * 400)


Damage = Callable[..., Awaitable[EmbeddedNats]]


@pytest.fixture
def damaged(tmp_path: Path) -> Damage:
    """Write a store, stop its server, damage a copy of its store dir: a server for the copy."""

    async def serve(*, messages: int, content: str, damage: Callable[[Path], None]) -> EmbeddedNats:
        original, copy = tmp_path / "original", tmp_path / "copy"
        async with EmbeddedNats(data_dir=original) as url:
            await _write(url, messages, content)
        shutil.copytree(original, copy)
        damage(copy)
        return EmbeddedNats(data_dir=copy)

    return serve


def _convlog(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``convlog`` command on ``url``'s default stream, within :data:`BOUND`."""
    command = [str(Path(sys.executable).parent / "convlog"), *args, "--nats-url", url]
    return subprocess.run(  # noqa: S603 - our own command
        command, capture_output=True, text=True, timeout=BOUND, check=False
    )


async def _every_command_names(url: str, named: str) -> None:
    """Every command on the damaged stream exits 1 within the bound, naming the sequences."""
    for command in ("stats", "rebuild", "snapshot", "verify"):
        done = await asyncio.to_thread(_convlog, url, command)
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        assert named in done.stdout + done.stderr, (command, done.stdout, done.stderr)


async def _every_fold_raises(url: str, gaps: tuple[tuple[int, int], ...]) -> None:
    """Store start-up and rebuild raise MissingRecordsError with exactly these spans."""
    async with asyncio.timeout(BOUND):
        with pytest.raises(MissingRecordsError) as started:
            await JetStreamMessageStore.connect(url)
        assert [gap[:2] for gap in started.value.gaps] == list(gaps)
        log = await EventLog.connect(url)
        try:
            with pytest.raises(MissingRecordsError) as rebuilt:
                await rebuild(log)
        finally:
            await log.close()
    assert [gap[:2] for gap in rebuilt.value.gaps] == list(gaps)


@pytest.fixture
async def log_above_one(nats_url: str, stream_settings: StreamSettings) -> AsyncIterator[EventLog]:
    """A stream whose first sequence is 100, holding four events a store wrote elsewhere."""
    source = StreamSettings(
        name=stream_settings.name + "_src", subject_prefix="src" + stream_settings.subject_prefix
    )
    async with await JetStreamMessageStore.connect(
        nats_url, stream=source.name, subject_prefix=source.subject_prefix
    ) as store:
        thread = Thread.new("acme", "alice")
        await store.create_thread(thread)
        for number in range(3):
            await store.create_message(Message.user(thread.id, f"turn {number}"))
        records = [record async for record in store.log.read()]
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    prefix = stream_settings.subject_prefix
    await js.add_stream(
        api.StreamConfig(
            name=stream_settings.name,
            subjects=[f"{prefix}.>"],
            storage=api.StorageType.FILE,
            duplicate_window=120,
            deny_delete=True,
            deny_purge=True,
            allow_direct=True,
            allow_atomic=True,
            first_seq=100,
        )
    )
    for record in records:
        subject = prefix + record.subject.removeprefix(source.subject_prefix)
        await js.publish(subject, record.data, stream=stream_settings.name)
    await nc.close()
    log = await EventLog.connect(nats_url, stream=stream_settings)
    yield log
    await log.close()


async def test_a_stream_starting_above_one_is_an_error_for_a_fold_from_one(
    nats_url: str, stream_settings: StreamSettings, log_above_one: EventLog
) -> None:
    """Records 1 to 99 are lost: start-up and rebuild raise naming them; verify reports them."""
    async with asyncio.timeout(BOUND):
        with pytest.raises(MissingRecordsError, match="1 to 99") as started:
            await JetStreamMessageStore.connect(
                nats_url, stream=stream_settings.name, subject_prefix=stream_settings.subject_prefix
            )
        with pytest.raises(MissingRecordsError) as rebuilt:
            await rebuild(log_above_one)
        report = await verify_chains(log_above_one)
    gap = Gap(1, 99, "before the stream's first sequence, 100")
    assert started.value.gaps == rebuilt.value.gaps == (gap,)
    assert "restore its store from a backup" in str(started.value)
    assert (report.ok, report.events, report.breaks, report.missing) == (False, 4, (), (gap,))
    assert report.summary().startswith("incomplete: 4 events in 1 threads, up to sequence 103")


@pytest.mark.usefixtures("log_above_one")
def test_verify_and_stats_name_the_lost_range_and_exit_1(
    nats_url: str,
    stream_settings: StreamSettings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The commands on a stream that starts above 1 answer with the range, exit 1."""
    options = ["--nats-url", nats_url, "--stream", stream_settings.name]
    options += ["--subject-prefix", stream_settings.subject_prefix]
    assert main(["verify", *options]) == 1
    assert "missing records 1 to 99 (before the stream's first sequence, 100)" in (
        capsys.readouterr().out
    )
    assert main(["stats", *options]) == 1
    assert "cannot return records 1 to 99" in capsys.readouterr().err


async def test_a_truncated_tail_is_reported_not_ok(damaged: Damage) -> None:
    """A last block cut in half: the stream records 200, about 100 can be read: not ok."""
    server = await damaged(
        messages=199,
        content="y" * 200,
        damage=lambda copy: _truncate(_block(copy, 1), 150_000),
    )
    async with server as url:
        log = await EventLog.connect(url)
        try:
            async with asyncio.timeout(BOUND):
                report = await verify_chains(log)
        finally:
            await log.close()
        readable = report.last_sequence
        assert 50 < readable < 200  # the cut falls about halfway
        await _every_fold_raises(url, ((readable + 1, 200),))
        await _every_command_names(url, f"{readable + 1} to 200")
    assert (report.events, report.stream_last_sequence, report.breaks) == (readable, 200, ())
    tail = Gap(readable + 1, 200, "a truncated tail: the stream records up to 200")
    assert (report.ok, report.missing) == (False, (tail,))


async def test_a_truncated_block_mid_stream_is_named(damaged: Damage) -> None:
    """The first block cut short mid-stream: the records lost are named by every path."""
    server = await damaged(
        messages=20, content=_BIG, damage=lambda copy: _truncate(_block(copy, 1), 4_000_000)
    )
    async with server as url:
        log = await EventLog.connect(url)
        try:
            async with asyncio.timeout(BOUND):
                report = await verify_chains(log)
        finally:
            await log.close()
        (lost,) = report.missing
        assert 1 < lost.first < lost.last < 21  # mid-stream: records after it can be read
        await _every_fold_raises(url, ((lost.first, lost.last),))
        await _every_command_names(url, f"{lost.first} to {lost.last} (damaged, lost)")
    assert lost.reason == "damaged, lost"
    assert report.breaks[0].sequence == lost.last + 1  # the next event's link names a lost one
    assert report.events == 21 - (lost.last - lost.first + 1)
    assert report.stream_last_sequence == 21


async def test_a_corrupted_block_is_named_by_every_path(
    damaged: Damage,
) -> None:
    """Bytes overwritten inside a block the server trusts: one record cannot be loaded.

    The server still counts it (its pending counts never reach 0), so a reader that waited
    for them would wait forever.
    """
    server = await damaged(
        messages=20, content=_BIG, damage=lambda copy: _overwrite(_block(copy, 1), 4_000_000)
    )
    async with server as url:
        log = await EventLog.connect(url)
        try:
            async with asyncio.timeout(BOUND):
                report = await verify_chains(log)
                records = [record.sequence async for record in log.read()]
        finally:
            await log.close()
        (unreadable,) = report.missing
        bad = unreadable.first
        assert unreadable == Gap(bad, bad, "unreadable, the server cannot load it")
        assert 1 < bad < 21
        await _every_fold_raises(url, ((bad, bad),))
        async with asyncio.timeout(BOUND):  # the projection meets it while following
            store = await JetStreamMessageStore.connect(url, wait_until_ready=False)
            try:
                with pytest.raises(MissingRecordsError, match=f"record {bad} ") as following:
                    await store.wait_for(21)
                health = await store.health_check()
            finally:
                await store.close()
        await _every_command_names(url, f" {bad} (unreadable")
    assert records == [sequence for sequence in range(1, 22) if sequence != bad]
    assert following.value.gaps == (unreadable,)
    assert (health.status, health.applied_sequence) == ("failed", bad - 1)


def test_the_dead_letter_list_is_capped(
    nats_url: str, stream_settings: StreamSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    """25 records that are not events: verify lists the first 20 and counts the rest."""

    async def publish() -> None:
        log = await EventLog.connect(nats_url, stream=stream_settings)
        await log.close()
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        for number in range(25):
            await js.publish(f"{stream_settings.subject_prefix}.acme.t{number}", b"not json")
        await nc.close()

    asyncio.run(publish())
    options = ["--nats-url", nats_url, "--stream", stream_settings.name]
    main(["verify", *options, "--subject-prefix", stream_settings.subject_prefix])
    lines = capsys.readouterr().out.splitlines()
    at = lines.index("dead letters: 25 record(s) the projection skips")
    listed = lines[at + 1 :]
    assert [line.split()[0] for line in listed[:20]] == [f"#{n}" for n in range(1, 21)]
    assert listed[20:] == ["  … and 5 more"]
