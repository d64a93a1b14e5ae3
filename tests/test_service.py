"""The query service: real ``convlog serve`` replicas answering RemoteMessageStore over NATS.

Each test gets its own stream and its own replica processes, stopped by their pids. The
contract suite runs against RemoteMessageStore with two replicas sharing every partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from typing import TYPE_CHECKING, Any

import msgspec
import nats
import nats.errors
import pytest
from helpers import OutputLines, ended, start_convlog
from uuid_utils import uuid7

from eventlog import (
    EventLog,
    Message,
    StreamSettings,
    Thread,
    UnavailableError,
)
from projections import JetStreamMessageStore
from projections.service.protocol import PARTITION_HEADER, ServiceSubjects
from projections.service.remote import RemoteMessageStore
from projections.testing import MessageStoreContract

if TYPE_CHECKING:
    import subprocess
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

    from conftest import ServerFactory
    from nats.aio.msg import Msg

STARTED = "serving projection of stream "
START_WITHIN = 60.0
"""Seconds a replica may take to fold and register, on a loaded machine."""


class Replicas:
    """Replica processes of one stream: start them, kill one, stop them all by pid."""

    def __init__(self, url: str, settings: StreamSettings) -> None:
        self.url = url
        self.settings = settings
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, *args: str) -> subprocess.Popen[str]:
        """Start a replica and return once it serves (its partitions caught up)."""
        process = start_convlog(
            "serve",
            "--nats-url",
            self.url,
            "--stream",
            self.settings.name,
            "--subject-prefix",
            self.settings.subject_prefix,
            "--interval",
            "3600",
            *args,
        )
        self.processes.append(process)
        OutputLines(process).until(STARTED, time.monotonic() + START_WITHIN)
        return process

    async def start_many(self, count: int, *args: str) -> None:
        """Start ``count`` replicas at once."""
        await asyncio.gather(*(asyncio.to_thread(self.start, *args) for _ in range(count)))

    def kill(self, process: subprocess.Popen[str]) -> None:
        """SIGKILL one replica and reap it."""
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM every replica still running; kill any that does not stop."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            with contextlib.suppress(Exception):
                process.wait(timeout=30)
            ended(process)


def _settings(partitions: int) -> StreamSettings:
    token = uuid7().hex[-12:]
    return StreamSettings(name=f"S{token}", subject_prefix=f"s{token}", partitions=partitions)


async def _stream(
    url: str, partitions: int, settings: StreamSettings | None = None
) -> StreamSettings:
    """Create a stream of this test's own with ``partitions`` partitions."""
    settings = settings or _settings(partitions)
    log = await EventLog.connect(url, stream=settings)
    await log.close()
    return settings


@pytest.fixture
def replicas_on() -> Iterator[Callable[[str, StreamSettings], Replicas]]:
    """Make :class:`Replicas` for a stream; all stopped at the end of the test."""
    made: list[Replicas] = []

    def make(url: str, settings: StreamSettings) -> Replicas:
        made.append(Replicas(url, settings))
        return made[-1]

    yield make
    for replicas in made:
        replicas.stop()


@pytest.fixture
async def remote_on() -> AsyncIterator[Callable[[str, str], Awaitable[RemoteMessageStore]]]:
    """Connect RemoteMessageStores; all closed at the end of the test."""
    opened: list[RemoteMessageStore] = []

    async def connect(url: str, stream: str) -> RemoteMessageStore:
        opened.append(await RemoteMessageStore.connect(url, stream=stream))
        return opened[-1]

    yield connect
    for store in opened:
        await store.close()


class TestRemoteMessageStore(MessageStoreContract):
    """The contract, through two replicas that share each of four partitions."""

    store_name = "remote-message-store"
    requires_network = True

    @pytest.fixture
    async def store(
        self,
        nats_url: str,
        replicas_on: Callable[[str, StreamSettings], Replicas],
        remote_on: Callable[[str, str], Awaitable[RemoteMessageStore]],
    ) -> RemoteMessageStore:
        settings = await _stream(nats_url, partitions=4)
        await replicas_on(nats_url, settings).start_many(2)
        return await remote_on(nats_url, settings.name)


# --- routing ---------------------------------------------------------------------------


async def _threads_in_every_partition(
    store: JetStreamMessageStore, partitions: int
) -> dict[int, Thread]:
    """A thread with one message in each partition, written through an embedded store."""
    found: dict[int, Thread] = {}
    while len(found) < partitions:
        thread = Thread.new("acme", "alice")
        partition = store.log.subjects.partition_of(thread.id)
        if partition in found:
            continue
        await store.create_thread(thread)
        await store.create_message(Message.user(thread.id, f"in partition {partition}"))
        found[partition] = thread
    return found


async def _request(nc: nats.NATS, subject: str, body: dict[str, Any]) -> Msg:
    return await nc.request(subject, msgspec.json.encode(body), timeout=10)


async def test_every_partition_is_answered_by_its_owner_and_routed_by_the_server(
    start_server: ServerFactory,
    replicas_on: Callable[[str, StreamSettings], Replicas],
    remote_on: Callable[[str, str], Awaitable[RemoteMessageStore]],
) -> None:
    """Two replicas own half the partitions each; the server's mapping routes by thread."""
    settings = _settings(partitions=8)
    subjects = ServiceSubjects(settings.name, 8)
    server = await start_server(extra_config=subjects.server_config())
    await _stream(server.url, 8, settings)
    store = await JetStreamMessageStore.connect(
        server.url, stream=settings.name, subject_prefix=settings.subject_prefix
    )
    try:
        threads = await _threads_in_every_partition(store, 8)
    finally:
        await store.close()
    replicas = replicas_on(server.url, settings)
    await asyncio.gather(
        asyncio.to_thread(replicas.start, "--partitions", "0-3"),
        asyncio.to_thread(replicas.start, "--partitions", "4-7"),
    )
    nc = await nats.connect(server.url)
    try:
        for partition, thread in threads.items():
            routed = await _request(
                nc, subjects.routed("list_messages", thread.id), {"thread_id": str(thread.id)}
            )
            assert routed.headers[PARTITION_HEADER] == str(partition)
            assert [m["content"] for m in msgspec.json.decode(routed.data)] == [
                f"in partition {partition}"
            ]
        info = [
            msgspec.json.decode(m.data)["metadata"]
            async for m in _gathered(nc, "$SRV.INFO.convlog", count=8)
        ]
    finally:
        await nc.close()
    assert sorted(int(m["partition"]) for m in info if m["stream"] == settings.name) == list(
        range(8)
    )
    remote = await remote_on(server.url, settings.name)
    for thread in threads.values():
        assert await remote.count_messages(thread.id) == 1
    assert len(await remote.list_threads("acme", "alice", 100, 0)) == 8


async def _gathered(nc: nats.NATS, subject: str, *, count: int) -> AsyncIterator[Msg]:
    """Up to ``count`` replies to one discovery request on ``subject``.

    As every micro client does, it takes replies until none came for half a second.
    """
    inbox = nc.new_inbox()
    subscription = await nc.subscribe(inbox, max_msgs=count)
    await nc.publish(subject, b"", reply=inbox)
    with contextlib.suppress(nats.errors.TimeoutError):
        for received in range(count):
            yield await subscription.next_msg(timeout=10 if received == 0 else 0.5)


async def _instances(nc: nats.NATS, stream: str) -> int:
    """How many service instances (one per partition per replica) of ``stream`` answer a ping."""
    pings = [
        msgspec.json.decode(m.data) async for m in _gathered(nc, "$SRV.PING.convlog", count=64)
    ]
    return sum(ping["metadata"]["stream"] == stream for ping in pings)


async def test_a_partition_with_two_owners_shares_its_requests(
    nats_url: str,
    replicas_on: Callable[[str, StreamSettings], Replicas],
    remote_on: Callable[[str, str], Awaitable[RemoteMessageStore]],
) -> None:
    """Both replicas of a partition answer some of its requests (the queue group)."""
    settings = await _stream(nats_url, partitions=2)
    await replicas_on(nats_url, settings).start_many(2)
    remote = await remote_on(nats_url, settings.name)
    thread = Thread.new("acme", "alice")
    await remote.create_thread(thread)
    await asyncio.gather(*(remote.count_messages(thread.id) for _ in range(400)))
    nc = await nats.connect(nats_url)
    try:
        stats = [
            msgspec.json.decode(m.data) async for m in _gathered(nc, "$SRV.STATS.convlog", count=64)
        ]
    finally:
        await nc.close()
    served = [
        endpoint["num_requests"]
        for stat in stats
        if stat["metadata"]["stream"] == settings.name
        for endpoint in stat["endpoints"]
        if endpoint["name"] == "count_messages" and endpoint["num_requests"]
    ]
    assert len(served) == 2, f"count_messages served by {served}"  # both replicas took some
    assert sum(served) == 400


async def test_a_partition_nobody_serves_fails_fast_and_clearly(
    nats_url: str,
    replicas_on: Callable[[str, StreamSettings], Replicas],
    remote_on: Callable[[str, str], Awaitable[RemoteMessageStore]],
) -> None:
    """With partition 1 unserved, a call about one of its threads says so at once."""
    settings = await _stream(nats_url, partitions=2)
    await replicas_on(nats_url, settings).start_many(1, "--partitions", "0")
    remote = await remote_on(nats_url, settings.name)
    subjects = settings.subjects(2)
    thread = next(
        t for t in iter(lambda: Thread.new("a", "u"), None) if subjects.partition_of(t.id) == 1
    )
    started = time.monotonic()
    with pytest.raises(UnavailableError, match="no replica serves partition 1"):
        await remote.get_thread(thread.id)
    assert time.monotonic() - started < 2.0  # "no responders", not a timeout


async def test_killing_a_replica_moves_its_traffic_to_the_survivor(
    nats_url: str,
    replicas_on: Callable[[str, StreamSettings], Replicas],
    remote_on: Callable[[str, str], Awaitable[RemoteMessageStore]],
) -> None:
    """SIGKILL one of two replicas mid-load: every request sent after it died is answered."""
    settings = await _stream(nats_url, partitions=4)
    replicas = replicas_on(nats_url, settings)
    await replicas.start_many(2)
    remote = await remote_on(nats_url, settings.name)
    thread = Thread.new("acme", "alice")
    await remote.create_thread(thread)
    await remote.create_message(Message.user(thread.id, "hello"))
    loaded, gone = asyncio.Event(), asyncio.Event()
    before: list[int] = []
    after: list[int] = []
    lost: list[BaseException] = []

    async def load() -> None:
        while len(after) < 500:
            sent_after_kill = gone.is_set()
            try:
                count = await remote.count_messages(thread.id)
            except UnavailableError as err:
                if sent_after_kill:
                    raise
                lost.append(err)  # in flight when the replica died
                continue
            (after if sent_after_kill else before).append(count)
            if len(before) >= 100:
                loaded.set()

    workers = [asyncio.create_task(load()) for _ in range(8)]
    await loaded.wait()
    await asyncio.to_thread(replicas.kill, replicas.processes[0])
    nc = await nats.connect(nats_url)
    try:  # the server has seen the dead connection go once its instances stop answering
        while await _instances(nc, settings.name) != 4:
            pass
    finally:
        await nc.close()
    gone.set()
    await asyncio.gather(*workers)
    assert set(before) == {1}
    assert len(after) >= 500
    assert set(after) == {1}
    assert len(lost) <= 8  # at most the requests in flight
