"""The query service: real ``convlog serve`` replicas answering RemoteMessageStore over NATS.

Each test gets its own stream and its own replica processes, stopped by their pids. The
contract suite runs against RemoteMessageStore with two replicas sharing every partition.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import msgspec
import nats
import nats.errors
import pytest
from helpers import Replicas, new_stream, stream_settings_of

from eventlog import (
    AlreadyExistsError,
    Message,
    StreamSettings,
    Thread,
    UnavailableError,
)
from eventlog.subjects import Subjects, partition_of
from projections import JetStreamMessageStore
from projections.service.protocol import PARTITION_HEADER, ServiceSubjects
from projections.service.remote import RemoteMessageStore
from projections.testing import MessageStoreContract

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

    from conftest import ServerFactory
    from nats.aio.msg import Msg


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
        settings = await new_stream(nats_url, partitions=4)
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
    """A request, sent again once if unanswered (a replica just killed may have held it)."""
    try:
        return await nc.request(subject, msgspec.json.encode(body), timeout=10)
    except nats.errors.TimeoutError:
        return await nc.request(subject, msgspec.json.encode(body), timeout=10)


async def test_every_partition_is_answered_by_its_owner_and_routed_by_the_server(
    start_server: ServerFactory,
    replicas_on: Callable[[str, StreamSettings], Replicas],
    remote_on: Callable[[str, str], Awaitable[RemoteMessageStore]],
) -> None:
    """Two replicas own half the partitions each; the server's mapping routes by thread."""
    settings = stream_settings_of(partitions=8)
    subjects = ServiceSubjects(settings.name, 8)
    server = await start_server(extra_config=subjects.server_config())
    await new_stream(server.url, 8, settings)
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
        info = await _gathered(nc, "$SRV.INFO.convlog", settings.name, count=8)
    finally:
        await nc.close()
    assert sorted(int(i["metadata"]["partition"]) for i in info) == list(range(8))
    remote = await remote_on(server.url, settings.name)
    for thread in threads.values():
        assert await remote.count_messages(thread.id) == 1
    assert len(await remote.list_threads("acme", "alice", 100, 0)) == 8


async def _gathered(
    nc: nats.NATS, subject: str, stream: str, *, count: int
) -> list[dict[str, Any]]:
    """The ``count`` replies of ``stream``'s service instances to one discovery request.

    Other tests' replicas on the shared server answer too; they are passed over.
    """
    inbox = nc.new_inbox()
    subscription = await nc.subscribe(inbox)
    try:
        await nc.publish(subject, b"", reply=inbox)
        found: list[dict[str, Any]] = []
        while len(found) < count:
            reply = msgspec.json.decode((await subscription.next_msg(timeout=30)).data)
            if reply["metadata"]["stream"] == stream:
                found.append(reply)
        return found
    finally:
        await subscription.unsubscribe()


async def test_a_partition_with_two_owners_shares_its_requests(
    nats_url: str,
    replicas_on: Callable[[str, StreamSettings], Replicas],
    remote_on: Callable[[str, str], Awaitable[RemoteMessageStore]],
) -> None:
    """Both replicas of a partition answer some of its requests (the queue group)."""
    settings = await new_stream(nats_url, partitions=2)
    await replicas_on(nats_url, settings).start_many(2)
    remote = await remote_on(nats_url, settings.name)
    thread = Thread.new("acme", "alice")
    await remote.create_thread(thread)
    await asyncio.gather(*(remote.count_messages(thread.id) for _ in range(400)))
    nc = await nats.connect(nats_url)
    try:
        stats = await _gathered(nc, "$SRV.STATS.convlog", settings.name, count=4)
    finally:
        await nc.close()
    served = [
        endpoint["num_requests"]
        for stat in stats
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
    settings = await new_stream(nats_url, partitions=2)
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
    """SIGKILL one of two replicas mid-load: every request is answered, by the survivor."""
    settings = await new_stream(nats_url, partitions=4)
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
    gone.set()
    await asyncio.gather(*workers)
    assert set(before) == {1}
    assert len(after) >= 500
    assert set(after) == {1}
    assert not lost  # those in flight to the dead replica were asked again of the survivor


# --- catching up, read-your-writes, ids across partitions -------------------------------


async def _digests(nc: nats.NATS, settings: StreamSettings, partitions: int) -> dict[int, str]:
    """Each partition's views digest, as a replica that holds it answers."""
    subjects = ServiceSubjects(settings.name, partitions)
    digests = {}
    for partition in range(partitions):
        reply = await _request(nc, subjects.endpoint(partition, "digest"), {})
        digests[partition] = msgspec.json.decode(reply.data)["digest"]
    return digests


async def test_a_late_replica_catches_up_from_snapshots_and_the_stream_before_it_answers(
    nats_url: str,
    replicas_on: Callable[[str, StreamSettings], Replicas],
    remote_on: Callable[[str, str], Awaitable[RemoteMessageStore]],
) -> None:
    """A replica started after writes restores each partition's snapshot, folds the rest,
    and answers exactly as the first one does."""
    settings = await new_stream(nats_url, partitions=2)
    replicas = replicas_on(nats_url, settings)
    first = await asyncio.to_thread(replicas.start, "--snapshot-every", "10")
    remote = await remote_on(nats_url, settings.name)
    threads = _threads_in_each(settings.subjects(2), 3)  # 18 events each: past a snapshot
    for thread in threads:
        await remote.create_thread(thread)
        for n in range(5):
            await remote.create_message(Message.user(thread.id, f"message {n}"))
    nc = await nats.connect(nats_url)
    try:
        written = await _snapshots_written(nc, settings)
        assert written == {0, 1}, "each partition wrote a snapshot"
        for thread in threads:  # and more after the snapshots
            await remote.update_thread(thread.model_copy(update={"title": "later"}))
        before = await _digests(nc, settings, 2)
        await asyncio.to_thread(replicas.start)
        replicas.kill(first)
        assert await _digests(nc, settings, 2) == before  # now answered by the late one
        healths = [
            msgspec.json.decode(r.data)
            for r in [
                await _request(nc, ServiceSubjects(settings.name, 2).endpoint(p, "health"), {})
                for p in range(2)
            ]
        ]
    finally:
        await nc.close()
    assert all(h["snapshots"]["restored"].startswith("partition-") for h in healths), healths
    assert [t.title for t in await remote.list_threads("acme", threads[0].user_id, 10, 0)] == [
        "later"
    ]


def _threads_in_each(subjects: Subjects, count: int) -> list[Thread]:
    """``count`` new threads in each partition (new ids hash where they will)."""
    held: dict[int, list[Thread]] = {p: [] for p in range(subjects.partitions)}
    while any(len(threads) < count for threads in held.values()):
        thread = Thread.new("acme", f"user-{sum(map(len, held.values()))}")
        partition = subjects.partition_of(thread.id)
        if len(held[partition]) < count:
            held[partition].append(thread)
    return [thread for threads in held.values() for thread in threads]


async def _snapshots_written(nc: nats.NATS, settings: StreamSettings) -> set[int]:
    """The partitions whose replica has written a snapshot, once both have (within 60 s)."""
    subjects = ServiceSubjects(settings.name, 2)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        written = set()
        for partition in range(2):
            reply = await _request(nc, subjects.endpoint(partition, "health"), {})
            if msgspec.json.decode(reply.data)["snapshots"]["written"]:
                written.add(partition)
        if written == {0, 1}:
            return written
        await asyncio.sleep(0.05)  # polling the replica's own report: there is no event
    pytest.fail("the replica wrote no snapshot of some partition within 60 s")


async def test_a_write_through_one_client_is_read_through_another_with_its_sequences(
    nats_url: str,
    replicas_on: Callable[[str, StreamSettings], Replicas],
    remote_on: Callable[[str, str], Awaitable[RemoteMessageStore]],
) -> None:
    """Client B, given client A's write sequences, reads each of A's writes at once."""
    settings = await new_stream(nats_url, partitions=4)
    await replicas_on(nats_url, settings).start_many(2)
    writer = await remote_on(nats_url, settings.name)
    reader = await remote_on(nats_url, settings.name)
    thread = Thread.new("acme", "alice")
    await writer.create_thread(thread)
    for n in range(100):
        message = Message.user(thread.id, f"message {n}")
        await writer.create_message(message)
        reader.observe(writer.writes)
        assert await reader.get_message(message.id) == message
        assert await reader.count_messages(thread.id) == n + 1


async def test_an_id_held_in_another_partition_is_refused(
    nats_url: str,
    replicas_on: Callable[[str, StreamSettings], Replicas],
    remote_on: Callable[[str, str], Awaitable[RemoteMessageStore]],
) -> None:
    """A message id taken in one partition cannot be created in a thread of another, even
    when another replica holds it; a thread id is one partition's, whatever the tenant."""
    settings = await new_stream(nats_url, partitions=4)
    await asyncio.gather(
        asyncio.to_thread(replicas_on(nats_url, settings).start, "--partitions", "0-1"),
        asyncio.to_thread(replicas_on(nats_url, settings).start, "--partitions", "2-3"),
    )
    remote = await remote_on(nats_url, settings.name)
    subjects = settings.subjects(4)
    threads: dict[int, Thread] = {}
    while len(threads) < 4:
        thread = Thread.new("acme", "alice")
        threads.setdefault(subjects.partition_of(thread.id), thread)
    for thread in threads.values():
        await remote.create_thread(thread)
    taken = Message.user(threads[0].id, "first")
    await remote.create_message(taken)
    for partition in (1, 2, 3):  # held here, and across the other replica
        clash = taken.model_copy(update={"thread_id": threads[partition].id})
        with pytest.raises(AlreadyExistsError):
            await remote.create_message(clash)
    assert await remote.get_message(taken.id) == taken
    assert [await remote.count_messages(threads[p].id) for p in range(4)] == [1, 0, 0, 0]
    other_tenant = threads[2].model_copy(update={"tenant_id": "globex"})
    with pytest.raises(AlreadyExistsError):
        await remote.create_thread(other_tenant)


# --- bad requests ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "body", "reason"),
    [
        ("get_thread", b"{not json", "bad request"),
        ("get_thread", b"{}", "thread_id"),
        ("get_thread", b'{"thread_id": 7}', "Expected `str`"),
        ("list_threads", b'{"tenant_id": "a", "user_id": "u", "limit": 100000}', "limit"),
        ("list_threads", b'{"tenant_id": "a", "user_id": "u", "offset": -1}', "offset"),
        ("count_messages", b'{"thread_id": "t", "min_sequence": -5}', "min_sequence"),
        ("get_message", b'{"message_id": "m", "extra": 1}', "extra"),
        ("create_thread", b'{"thread": {"id": "t"}}', "thread"),
        ("create_message", b'{"message": [1, 2]}', "message"),
    ],
)
async def test_bad_requests_get_a_400_with_the_reason_and_the_service_keeps_serving(
    nats_url: str,
    replicas_on: Callable[[str, StreamSettings], Replicas],
    endpoint: str,
    body: bytes,
    reason: str,
) -> None:
    """Malformed JSON, missing, unknown or wrong-typed parameters, huge limits: 400."""
    settings = await new_stream(nats_url, partitions=1)
    await replicas_on(nats_url, settings).start_many(1)
    subjects = ServiceSubjects(settings.name, 1)
    nc = await nats.connect(nats_url)
    try:
        reply = await nc.request(subjects.endpoint(0, endpoint), body, timeout=10)
        headers = reply.headers or {}
        assert headers.get("Nats-Service-Error-Code") == "400", headers
        assert reason in headers["Nats-Service-Error"], headers
        assert headers["Convlog-Error"] == "ValidationError"
        with pytest.raises(nats.errors.NoRespondersError):  # an unknown endpoint
            await nc.request(subjects.endpoint(0, "drop_everything"), b"{}", timeout=10)
        fine = await _request(nc, subjects.endpoint(0, "count_messages"), {"thread_id": "t"})
        assert fine.data == b"0"
    finally:
        await nc.close()


async def test_racing_creates_of_one_message_id_in_two_partitions_store_one(
    nats_url: str,
    replicas_on: Callable[[str, StreamSettings], Replicas],
    remote_on: Callable[[str, str], Awaitable[RemoteMessageStore]],
) -> None:
    """Two clients create one message id at once in threads of different partitions, held
    by different replicas: one is stored, the other refused; an embedded store agrees."""
    settings = await new_stream(nats_url, partitions=2)
    await asyncio.gather(
        asyncio.to_thread(replicas_on(nats_url, settings).start, "--partitions", "0"),
        asyncio.to_thread(replicas_on(nats_url, settings).start, "--partitions", "1"),
    )
    first, second = [await remote_on(nats_url, settings.name) for _ in range(2)]
    subjects = settings.subjects(2)
    threads: dict[int, Thread] = {}
    while len(threads) < 2:
        thread = Thread.new("acme", "alice")
        threads.setdefault(subjects.partition_of(thread.id), thread)
    for thread in threads.values():
        await first.create_thread(thread)
    for _ in range(20):
        message = Message.user(threads[0].id, "one id")
        clash = message.model_copy(update={"thread_id": threads[1].id})
        outcomes = await asyncio.gather(
            first.create_message(message), second.create_message(clash), return_exceptions=True
        )
        refused = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(refused) == 1, outcomes
        assert isinstance(refused[0], AlreadyExistsError)
    counts = [await first.count_messages(threads[p].id) for p in range(2)]
    assert sum(counts) == 20
    embedded = await JetStreamMessageStore.connect(
        nats_url, stream=settings.name, subject_prefix=settings.subject_prefix
    )
    try:
        assert [await embedded.count_messages(threads[p].id) for p in range(2)] == counts
        assert not (await embedded.health_check()).skipped  # no create the fold refused
    finally:
        await embedded.close()


async def test_a_request_for_another_partitions_thread_or_an_overlong_id_is_a_400(
    nats_url: str,
    replicas_on: Callable[[str, StreamSettings], Replicas],
) -> None:
    """A client that hashed wrongly gets the right partition named, not a wrong answer; an
    id too long for a subject is refused, and the replica keeps serving."""
    settings = await new_stream(nats_url, partitions=4)
    await replicas_on(nats_url, settings).start_many(1)
    subjects = ServiceSubjects(settings.name, 4)
    thread = Thread.new("acme", "alice")
    home = settings.subjects(4).partition_of(thread.id)
    elsewhere = (home + 1) % 4
    nc = await nats.connect(nats_url)
    try:
        for endpoint in ("get_thread", "list_messages", "count_messages", "delete_thread"):
            reply = await _request(
                nc, subjects.endpoint(elsewhere, endpoint), {"thread_id": str(thread.id)}
            )
            headers = reply.headers or {}
            assert headers.get("Nats-Service-Error-Code") == "400", (endpoint, headers)
            assert f"held by partition {home}" in headers["Nats-Service-Error"]
        long_id = "t" * 5000
        reply = await _request(
            nc,
            subjects.endpoint(partition_of(long_id, 4), "delete_thread"),
            {"thread_id": long_id},
        )
        assert (reply.headers or {}).get("Nats-Service-Error-Code") == "400"
        assert "too long" in (reply.headers or {})["Nats-Service-Error"]
        fine = await _request(
            nc, subjects.endpoint(home, "count_messages"), {"thread_id": str(thread.id)}
        )
        assert fine.data == b"0"
    finally:
        await nc.close()


async def test_a_page_deeper_than_one_request_takes_is_read_page_by_page(
    nats_url: str,
    replicas_on: Callable[[str, StreamSettings], Replicas],
    remote_on: Callable[[str, str], Awaitable[RemoteMessageStore]],
) -> None:
    """list_threads past the per-request limit answers as the embedded store does."""
    settings = await new_stream(nats_url, partitions=1)
    await replicas_on(nats_url, settings).start_many(1)
    remote = await remote_on(nats_url, settings.name)
    embedded = await JetStreamMessageStore.connect(
        nats_url, stream=settings.name, subject_prefix=settings.subject_prefix
    )
    try:
        for _ in range(1005):
            await embedded.create_thread(Thread.new("acme", "alice"))
        remote.observe({0: embedded.sequence})
        for limit, offset in ((1001, 0), (10, 998), (2000, 3)):
            assert await remote.list_threads("acme", "alice", limit, offset) == (
                await embedded.list_threads("acme", "alice", limit, offset)
            )
    finally:
        await embedded.close()
