"""An R3 stream on a real three-node NATS cluster: its leader killed, stopped and moved.

Replication is NATS's own Raft; these tests hold convlog to its promises on top of it. No
acknowledged event is lost when the stream's leader dies, and none is stored twice when
writers retry; writers are back within a bounded time; the projection follows on from where
it stood; a node that was away catches up; reads answer while any one node is down.

Each test has a cluster of its own (``cluster`` in conftest). Bounds on time are generous
correctness limits for a loaded machine, not benchmarks; each scenario prints its figures.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

import nats
import nats.errors
import pytest
from helpers import Retried, is_running, report, until_acknowledged
from uuid_utils import uuid7

from eventlog import (
    ConnectOptions,
    EmbeddedServerError,
    Message,
    MessageCreated,
    Thread,
    ThreadCreated,
    UnavailableError,
    ValidationError,
)
from eventlog.cluster import EmbeddedCluster, _PortBlock
from eventlog.events import new_event_id
from projections import JetStreamMessageStore

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from eventlog import EventLog, LogRecord
    from eventlog.cluster import ClusterNode
    from eventlog.connection import ConnectionState

pytestmark = pytest.mark.timeout(300)

T = TypeVar("T")

WRITE_TIMEOUT = 2.0
"""Seconds an append waits for its ack here: an election outlasts several of them."""
SLACK = 5.0
"""Seconds a loaded machine may add to any timed step before a bound counts as broken."""
PAUSE = 0.05
"""Seconds between a failed attempt and the next: nothing answers until a leader is elected."""
RETRY_FOR = 90.0
"""Seconds a write is retried before the test gives up on it."""


def stream_name() -> tuple[str, str]:
    token = uuid7().hex[-12:]
    return f"R{token}", f"r{token}"


async def connect(
    urls: list[str],
    stream: tuple[str, str],
    *,
    replicas: int | None = 3,
    write_timeout: float = WRITE_TIMEOUT,
) -> JetStreamMessageStore:
    """A store given every node's URL, as production's would be.

    Asked again if the cluster is slow to answer (a new R3 stream elects its own leader
    before the create is answered, which a loaded machine can make outlast the timeout).
    """
    name, prefix = stream
    deadline = time.monotonic() + RETRY_FOR
    while True:
        try:
            return await JetStreamMessageStore.connect(
                urls,
                stream=name,
                subject_prefix=prefix,
                replicas=replicas,
                options=ConnectOptions(write_timeout=write_timeout),
            )
        except UnavailableError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(PAUSE)


async def consumer_host(store: JetStreamMessageStore) -> str:
    """The node that runs the consumer the store's projection follows the stream with.

    The server places that R1 consumer on any replica of the stream, not on the node the
    client is connected to.
    """
    follower = store._worker._follower
    assert follower is not None
    info = await follower._subscription.consumer_info()
    assert info.cluster is not None
    return info.cluster.leader or ""


async def connect_placed(
    cluster: EmbeddedCluster,
    stream: tuple[str, str],
    node: ClusterNode,
    *,
    connected: bool,
    consumer: bool | None = None,
) -> JetStreamMessageStore:
    """A store given every URL, connected to ``node`` or not, its consumer on ``node`` or not.

    The client picks a server at random, and the server a replica for the consumer:
    connect again until both are as asked (``consumer`` None: wherever).
    """
    for _ in range(200):
        store = await connect(cluster.urls, stream)
        url = store.log.client.connected_url
        through = url is not None and url.port == node.client_port
        hosted = (await consumer_host(store)) == node.name
        if through == connected and consumer in (None, hosted):
            return store
        await store.close()
    pytest.fail(f"no store placed as asked on {node.name}")


class Traffic:
    """Writes repeated until acknowledged, each attempt timed: acks, failures, downtimes."""

    def __init__(self) -> None:
        self.acks: list[tuple[float, float]] = []
        """(attempt started, acknowledged) of every write that was acknowledged."""
        self.slow_failures: list[str] = []
        """Failed attempts that took longer than their bound: none may."""
        self.retried = Retried()
        self.longest_failure = 0.0
        """Seconds the slowest failed attempt took to fail."""
        self.failures: list[tuple[float, float, str]] = []
        """(attempt started, failed, why) of every failed attempt: what a broken bound shows."""
        self._writers: dict[tuple[str, int], list[tuple[float, float]]] = {}
        """(attempt started, acknowledged) of each writer's writes, by its kind and task."""

    async def write(
        self,
        call: Callable[[], Awaitable[T]],
        connection: ConnectionState,
        *,
        bound: float,
        kind: str = "store",
    ) -> T:
        """``call`` until acknowledged; an attempt that fails must fail within ``bound`` s.

        Each task that writes is a writer of ``kind``: a store call, or a bare append.
        """
        writer = (kind, id(asyncio.current_task()))

        async def attempt() -> T:
            started = time.monotonic()
            try:
                result = await call()
            except UnavailableError as err:
                took = time.monotonic() - started
                self.failures.append((started, started + took, str(err)))
                self.longest_failure = max(self.longest_failure, took)
                if took > bound + SLACK:
                    self.slow_failures.append(f"{took:.1f}s > {bound}s: {err}")
                await asyncio.sleep(PAUSE)
                raise
            acked = time.monotonic()
            self.acks.append((started, acked))
            self._writers.setdefault(writer, []).append((started, acked))
            return result

        return await until_acknowledged(
            attempt, connection, seconds=RETRY_FOR, retried=self.retried
        )

    def downtime(self, since: float) -> float:
        """Seconds from ``since`` to the first ack of a write attempted after it."""
        after = [acked for started, acked in self.acks if started >= since]
        assert after, "no write attempted after the fault was acknowledged"
        return min(after) - since

    def fewest_acked_after(self, moment: float) -> int:
        """The fewest writes attempted after ``moment`` that any one writer had acknowledged."""
        return min(
            (sum(1 for started, _ in acks if started >= moment) for acks in self._writers.values()),
            default=0,
        )

    def failed_after(self, since: float) -> list[str]:
        """What failed attempts made after ``since`` said, with their times relative to it."""
        return [
            f"+{started - since:.2f}s..+{failed - since:.2f}s {why}"
            for started, failed, why in self.failures
            if started >= since
        ]

    def longest_gap(self, since: float, kind: str = "store") -> float:
        """The longest time a writer of ``kind`` went without an ack, around and after ``since``.

        Per writer: a writer stalled while others write on is what its caller sees.
        """
        gaps = []
        for (writer_kind, _), acks in self._writers.items():
            times = [acked for _, acked in acks]
            before = [t for t in times if t < since][-1:]
            after = [t for t in times if t >= since]
            if writer_kind != kind or not after:
                continue  # done before the fault
            points = before + after if before else [since, *after]
            gaps.append(max(b - a for a, b in itertools.pairwise(points)))
        assert gaps, f"no {kind} write was acknowledged after the fault"
        return max(gaps)


async def done(store: JetStreamMessageStore, call: Callable[[], Awaitable[T]]) -> T:
    """A write the test needs made, repeated until acknowledged (an election may be on)."""
    return await Traffic().write(call, store.log.connection, bound=2 * WRITE_TIMEOUT)


def thread_created(tenant_id: str = "acme") -> ThreadCreated:
    thread = Thread.new(tenant_id, "writer")
    return ThreadCreated(
        event_id=new_event_id(),
        occurred_at=datetime.now(UTC),
        tenant_id=tenant_id,
        thread_id=thread.id,
        thread=thread,
    )


async def read_all(log: EventLog) -> list[LogRecord]:
    """Every record of the stream, read again if an election cuts the read short."""

    async def once() -> list[LogRecord]:
        return [record async for record in log.read()]

    return await until_acknowledged(once, log.connection, seconds=RETRY_FOR)


class Stored:
    """The stream read back raw: where each event id is, and the ids of messages created."""

    def __init__(self, records: list[LogRecord], log: EventLog) -> None:
        decoded = [(record.sequence, log.codec.decode(record.data)) for record in records]
        self.event_ids = [event.event_id for _, event in decoded]
        self.sequences = {event.event_id: sequence for sequence, event in decoded}
        self.created = [e.message_id for _, e in decoded if isinstance(e, MessageCreated)]

    @classmethod
    async def read(cls, log: EventLog, cluster: EmbeddedCluster) -> Stored:
        """Read once every running node's copy holds the whole stream."""
        await copies_at(cluster, log.stream.name, await last_sequence(log))
        return cls(await read_all(log), log)

    @property
    def duplicates(self) -> int:
        """Event ids stored more than once, and message ids created more than once."""
        twice = len(self.event_ids) - len(self.sequences)
        return twice + len(self.created) - len(set(self.created))


async def last_sequence(log: EventLog) -> int:
    return await until_acknowledged(log.last_sequence, log.connection, seconds=RETRY_FOR)


async def caught_up(
    node: ClusterNode, stream: str, last: int, *, seconds: float = 60.0, growing: bool = False
) -> float:
    """Wait until ``node``'s own copy of ``stream`` ends at ``last``; how long it took.

    ``growing``: the stream is still written, so at ``last`` or past it will do.
    """
    started = time.monotonic()
    deadline = started + seconds
    while True:
        copy = await node.stream_copy(stream)
        if (
            copy is not None
            and copy.messages == copy.last_seq
            and (copy.last_seq == last or (growing and copy.last_seq > last))
        ):
            return time.monotonic() - started
        if time.monotonic() > deadline:
            pytest.fail(
                f"{node.name}'s copy of {stream} is {copy}, not at {last}, after {seconds}s"
            )
        await asyncio.sleep(0.1)  # another process's Raft catch-up: nothing to await here


async def copies_at(cluster: EmbeddedCluster, stream: str, end: int) -> None:
    """Wait until each running node's copy of ``stream`` ends at ``end``.

    A reader's consumer runs on any replica and reads that replica's copy, which may trail
    the leader's for a moment after the last write: a read that must see the end waits.
    """
    await asyncio.gather(*(caught_up(node, stream, end) for node in cluster.running))


async def assert_views_are_a_rebuild(
    stores: list[JetStreamMessageStore], cluster: EmbeddedCluster, stream: tuple[str, str]
) -> int:
    """Each store has folded the whole stream, equal to a rebuild and to a fresh store's."""
    end = await last_sequence(stores[0].log)
    await copies_at(cluster, stream[0], end)
    for store in stores:
        await asyncio.wait_for(store.wait_for(end), 60)  # it followed on after the fault
        rebuilt = await store.rebuild(verify=True)
        assert rebuilt.sequence == end
    fresh = await connect(cluster.urls, stream, replicas=None)
    try:
        assert fresh.sequence == end
        assert {store.views.digest() for store in stores} == {fresh.views.digest()}
    finally:
        await fresh.close()
    return end


# --- replication --------------------------------------------------------------------------


async def test_an_r3_stream_and_its_buckets_are_kept_on_every_node(
    cluster: EmbeddedCluster,
) -> None:
    """replicas=3 makes the stream, its id claims and its snapshots R3; R1 of it is refused.

    The first messages, written at once, make the claims bucket once between them and wait
    for its leader: none fails (a generous write timeout, for a loaded machine).
    """
    stream = stream_name()
    store = await connect(cluster.urls, stream, write_timeout=20.0)
    try:
        assert store.log.replicas == 3
        thread = Thread.new("acme", "alice")
        await store.create_thread(thread)
        messages = [Message.user(thread.id, f"kept three times {n}") for n in range(20)]
        await asyncio.gather(*(store.create_message(message) for message in messages))
        assert {m.id for m in await store.list_messages(thread.id)} == {m.id for m in messages}
        await store.snapshot()
        js = store.log.jetstream
        info = await js.stream_info(stream[0])
        assert info.config.num_replicas == 3
        assert info.cluster is not None
        assert len(info.cluster.replicas or []) == 2  # beside the leader
        for bucket in (f"KV_{stream[0]}_ids", f"OBJ_{stream[0]}_snapshots"):
            assert (await js.stream_info(bucket)).config.num_replicas == 3, bucket
        for node in cluster.nodes:  # each holds a copy of its own
            await caught_up(node, stream[0], store.sequence)

        again = await connect(cluster.urls, stream, replicas=None)  # what it has
        assert again.log.replicas == 3
        await again.close()
        with pytest.raises(ValidationError) as refused:
            await connect(cluster.urls, stream, replicas=1)
        assert "kept in 3 replica(s), not the 1 asked for" in str(refused.value)

        single = await connect(cluster.urls, stream_name(), replicas=None)  # a new stream: R1
        assert single.log.replicas == 1
        assert (await js.stream_info(single.log.stream.name)).config.num_replicas == 1
        await single.close()
    finally:
        await store.close()


async def test_a_cluster_runs_nodes_on_fixed_ports_and_stops_them_by_pid(tmp_path: Path) -> None:
    """Nodes come back on their ports and stores; the leader is named and moved; stop ends all.

    Its port block is held while it runs (no other cluster may take it) and free after.
    """
    stream = stream_name()
    async with EmbeddedCluster(data_dir=tmp_path / "cluster") as cluster:
        ports = [node.client_port for node in cluster.nodes] + [
            node.route_port for node in cluster.nodes
        ]
        assert len(set(ports)) == 6
        assert all(7000 <= port < 10000 for port in ports)
        assert [node.url for node in cluster.nodes] == cluster.urls
        with pytest.raises(EmbeddedServerError, match="no block of 6 free loopback ports"):
            _PortBlock.reserve(6, cluster.nodes[0].client_port)
        store = await connect(cluster.urls, stream)
        try:
            leader = await cluster.stream_leader(stream[0])
            assert leader.running
            moved = await cluster.step_down(stream[0])
            assert moved is not leader
            assert (await cluster.stream_leader(stream[0])) is moved

            thread = Thread.new("acme", "alice")
            await done(store, lambda: store.create_thread(thread))
            node = cluster.node("n1")
            before = node.pid
            assert before is not None
            await node.terminate()
            assert node.pid is None
            assert not node.running
            await node.start()
            assert node.pid not in (None, before)
            assert node.url == cluster.urls[1]
            config = (node.server.data_dir / "nats-server.conf").read_text(encoding="utf-8")
            assert f"listen: 127.0.0.1:{node.client_port}\n" in config
            assert f"listen: 127.0.0.1:{node.route_port}\n" in config
            assert str(node.server.data_dir / "jetstream") in config  # the same store
            await node.wait_healthy()
            await caught_up(node, stream[0], store.sequence)
        finally:
            await store.close()
        pids = [node.pid for node in cluster.nodes]
        with pytest.raises(EmbeddedServerError):
            cluster.node("n9")
    assert all(pid is not None and not is_running(pid) for pid in pids)
    block = _PortBlock.reserve(6, ports[0])  # free again
    block.release()


def test_a_port_block_in_use_is_passed_over() -> None:
    """A block another cluster holds, or one port of which something listens on, is not taken.

    The listener goes on a port of a block this test holds, so no other run's cluster is on
    it; the block is then let go with the port still taken.
    """
    first = _PortBlock.reserve(6)
    try:
        second = _PortBlock.reserve(6)
        assert second.base != first.base
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", second.base + 3))
            listener.listen()
            second.release()
            with pytest.raises(EmbeddedServerError):
                _PortBlock.reserve(6, second.base)
    finally:
        first.release()


# --- the leader killed, stopped and moved -------------------------------------------------


async def test_leader_killed_during_concurrent_writes_loses_no_acknowledged_event(
    cluster: EmbeddedCluster,
) -> None:
    """SIGKILL the stream's leader while two stores write: nothing acked lost, nothing twice.

    Each store runs writers of two kinds at once: store calls (messages into threads of
    their own: group commit, expected sequences, id claims) and bare appends of events with
    ids of their own. Every write is repeated until acknowledged: a store call as it was
    made, an append with the same event (so the same id). Once the stream has a new leader
    every acknowledged message and event is in it exactly once, each event at the sequence
    its ack gave, and both stores' views, which followed on, equal a rebuild. One store
    is connected to the leader's node (it reconnects elsewhere); the other stays connected
    to a follower, but the consumer its projection follows with ran on the leader's node.
    """
    stream = stream_name()
    await (await connect(cluster.urls, stream)).close()  # the stream, and so its leader
    leader = await cluster.stream_leader(stream[0])
    stores = [  # one loses its server with the leader, the other its consumer only
        await connect_placed(cluster, stream, leader, connected=True),
        await connect_placed(cluster, stream, leader, connected=False, consumer=True),
    ]
    traffic = Traffic()
    messages: list[str] = []
    events: dict[str, int] = {}
    start_killing = asyncio.Event()
    killed_at: list[float] = []

    async def messages_of(store: JetStreamMessageStore, count: int) -> None:
        thread = Thread.new("acme", "writer")
        connection = store.log.connection
        await traffic.write(
            lambda: store.create_thread(thread), connection, bound=2 * WRITE_TIMEOUT
        )
        for turn in range(count):
            message = Message.user(thread.id, f"turn {turn}")
            await traffic.write(
                lambda message=message: store.create_message(message),
                connection,
                bound=2 * WRITE_TIMEOUT,
            )
            messages.append(message.id)
            if len(traffic.acks) >= 150:
                start_killing.set()

    async def killer() -> str:
        await start_killing.wait()
        leading = await cluster.stream_leader(stream[0])
        killed_at.append(time.monotonic())
        await leading.kill()
        return leading.name

    try:
        killing = asyncio.create_task(killer())
        await asyncio.gather(
            *(messages_of(store, 80) for store in stores for _ in range(3)),
            *(
                events_of(
                    store,
                    50,
                    traffic=traffic,
                    events=events,
                    start_killing=start_killing,
                    killed_at=killed_at,
                )
                for store in stores
                for _ in range(2)
            ),
        )
        killed = await killing
        downtime = traffic.downtime(killed_at[0])
        gap = traffic.longest_gap(killed_at[0])
        append_gap = traffic.longest_gap(killed_at[0], "append")
        new_leader = await cluster.stream_leader(stream[0])
        assert new_leader.name != killed

        stored = await Stored.read(stores[0].log, cluster)
        report(
            "cluster-leader-sigkill",
            acknowledged=len(messages) + len(events),
            found=len(stored.sequences),
            duplicates=stored.duplicates,
            failed_attempts=traffic.retried.unavailable,
            downtime_ms=round(downtime * 1000),
            longest_gap_ms=round(gap * 1000),
            append_gap_ms=round(append_gap * 1000),
            slowest_failure_ms=round(traffic.longest_failure * 1000),
            batches=sum(store.group.batches for store in stores),
            reconnects=sum(store.log.connection.reconnects for store in stores),
        )
        assert traffic.retried.unavailable  # the kill really cut writes off
        assert not traffic.slow_failures  # each failed within its write timeout
        assert_group_commit_idle(stores)
        assert stored.duplicates == 0  # no event stored twice, no message created twice
        assert sorted(stored.created) == sorted(messages)  # each acknowledged message, no other
        assert {event_id: stored.sequences.get(event_id) for event_id in events} == events
        assert len(stored.sequences) == len(messages) + len(events) + 6  # and the 6 threads
        assert downtime < 20.0
        await assert_views_are_a_rebuild(stores, cluster, stream)
    finally:
        for store in stores:
            await store.close()


async def events_of(
    store: JetStreamMessageStore,
    count: int,
    *,
    traffic: Traffic,
    events: dict[str, int],
    start_killing: asyncio.Event,
    killed_at: list[float],
) -> None:
    """At least ``count`` bare appends, and on until five were acknowledged after the kill.

    Each is repeated until acknowledged, with the same event (so the same id); ``events``
    gets the sequence each ack gave.
    """
    done = after_kill = 0
    while done < count or not killed_at or after_kill < 5:
        done += 1
        after_kill += bool(killed_at)
        event = thread_created()
        events[event.event_id] = await traffic.write(
            lambda event=event: store.log.append(event),
            store.log.connection,
            bound=WRITE_TIMEOUT,
            kind="append",
        )
        if len(traffic.acks) >= 150:
            start_killing.set()


def assert_group_commit_idle(stores: list[JetStreamMessageStore]) -> None:
    """Group commit is not wedged: once its writers are done, nothing queued or in flight."""
    for store in stores:
        assert store.group.idle


async def writing(store: JetStreamMessageStore, traffic: Traffic, stop: asyncio.Event) -> int:
    """Messages into a thread of its own, each repeated until acknowledged, until ``stop``."""
    thread = Thread.new("acme", "steady")
    connection = store.log.connection
    await traffic.write(lambda: store.create_thread(thread), connection, bound=2 * WRITE_TIMEOUT)
    written = 0
    while not stop.is_set():
        message = Message.user(thread.id, f"steady {written}")
        await traffic.write(
            lambda message=message: store.create_message(message),
            connection,
            bound=2 * WRITE_TIMEOUT,
        )
        written += 1
    return written


async def appending(store: JetStreamMessageStore, traffic: Traffic, stop: asyncio.Event) -> int:
    """Bare appends of new threads' events, each repeated with its id until ``stop``."""
    appended = 0
    while not stop.is_set():
        event = thread_created()
        await traffic.write(
            lambda event=event: store.log.append(event),
            store.log.connection,
            bound=WRITE_TIMEOUT,
            kind="append",
        )
        appended += 1
    return appended


async def acked_after(traffic: Traffic, moment: float, count: int, *, seconds: float) -> None:
    """Wait until each writer has had ``count`` writes attempted after ``moment`` acknowledged."""
    deadline = time.monotonic() + seconds
    while (fewest := traffic.fewest_acked_after(moment)) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"a writer had {fewest} of {count} writes acknowledged within {seconds}s")
        await asyncio.sleep(0.05)  # the writers' acks land in lists: nothing to await


async def test_leader_stopped_or_stepping_down_pauses_writes_briefly(
    cluster: EmbeddedCluster,
) -> None:
    """SIGTERM of the leader, then an API step-down: no writer waits 5 s, either time.

    A stopping server hands its leaderships over, and a step-down is a handover asked for:
    neither waits out an election timeout, as a crash does. Each store has a writer of
    store calls (acknowledged once folded into its views) and one of bare appends; one
    store is connected to the leader's node, the other elsewhere with its projection's
    consumer on the leader's node, which goes with it.
    """
    stream = stream_name()
    await (await connect(cluster.urls, stream)).close()
    leader = await cluster.stream_leader(stream[0])
    stores = [
        await connect_placed(cluster, stream, leader, connected=True),
        await connect_placed(cluster, stream, leader, connected=False, consumer=True),
    ]
    traffic = Traffic()
    stop = asyncio.Event()
    writers = [asyncio.create_task(writing(store, traffic, stop)) for store in stores]
    appenders = [asyncio.create_task(appending(store, traffic, stop)) for store in stores]
    try:
        await acked_after(traffic, 0.0, 50, seconds=60)
        assert (await cluster.stream_leader(stream[0])) is leader
        stopped_at = time.monotonic()
        await leader.terminate()
        await acked_after(traffic, time.monotonic(), 20, seconds=60)
        stopped_gap = traffic.longest_gap(stopped_at)
        stopped_append_gap = traffic.longest_gap(stopped_at, "append")

        await leader.start()
        await caught_up(leader, stream[0], await last_sequence(stores[0].log), growing=True)
        stepped_at = time.monotonic()
        moved = await cluster.step_down(stream[0])
        await acked_after(traffic, time.monotonic(), 20, seconds=60)
        stepped_gap = traffic.longest_gap(stepped_at)
        stepped_append_gap = traffic.longest_gap(stepped_at, "append")
        stop.set()
        written = sum(await asyncio.gather(*writers, *appenders))
        report(
            "cluster-leader-sigterm-stepdown",
            acknowledged=written,
            failed_attempts=traffic.retried.unavailable,
            sigterm_gap_ms=round(stopped_gap * 1000),
            sigterm_append_gap_ms=round(stopped_append_gap * 1000),
            stepdown_gap_ms=round(stepped_gap * 1000),
            stepdown_append_gap_ms=round(stepped_append_gap * 1000),
        )
        assert moved.running
        assert not traffic.slow_failures
        assert max(stopped_gap, stopped_append_gap) < 5.0, traffic.failed_after(stopped_at)
        assert max(stepped_gap, stepped_append_gap) < 5.0, traffic.failed_after(stepped_at)
        await assert_views_are_a_rebuild(stores, cluster, stream)
    finally:
        stop.set()
        for writer in [*writers, *appenders]:
            writer.cancel()
        await asyncio.gather(*writers, *appenders, return_exceptions=True)
        for store in stores:
            await store.close()


# --- nodes away and back ------------------------------------------------------------------


async def read_copy(node: ClusterNode, stream: str, last: int) -> list[tuple[int, bytes]]:
    """Sequences 1 to ``last`` as ``node`` alone returns them, by direct get.

    Any replica may answer a direct get, so the caller makes sure no other one runs.
    """
    nc = await nats.connect(node.url, max_reconnect_attempts=0)
    deadline = time.monotonic() + 60
    found = []
    try:
        for sequence in range(1, last + 1):
            while True:
                try:
                    reply = await nc.request(
                        f"$JS.API.DIRECT.GET.{stream}",
                        json.dumps({"seq": sequence}).encode(),
                        timeout=WRITE_TIMEOUT,
                    )
                except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)  # alone, it answers direct gets a moment later
                    continue
                assert (reply.headers or {}).get("Nats-Sequence") == str(sequence)
                found.append((sequence, reply.data))
                break
    finally:
        await nc.close()
    return found


async def test_a_killed_node_catches_up_and_holds_the_same_records(
    cluster: EmbeddedCluster,
) -> None:
    """The leader is killed, writes go on without it; restarted, it catches up on its own.

    Its own copy (its monitoring endpoint, not the leader's word) ends at the stream's last
    sequence; and with the other two nodes gone, the records it alone returns are the ones
    the store wrote.
    """
    stream = stream_name()
    store = await connect(cluster.urls, stream)
    traffic = Traffic()
    try:
        thread = Thread.new("acme", "alice")
        await done(store, lambda: store.create_thread(thread))
        for turn in range(100):
            message = Message.user(thread.id, f"before {turn}")
            await done(store, lambda message=message: store.create_message(message))
        killed = await cluster.stream_leader(stream[0])
        await killed.kill()
        missed = 0
        for turn in range(150):  # what the killed node misses, written once a leader is back
            message = Message.user(thread.id, f"while away {turn}")
            await traffic.write(
                lambda message=message: store.create_message(message),
                store.log.connection,
                bound=2 * WRITE_TIMEOUT,
            )
            missed += 1
        end = await last_sequence(store.log)
        behind = await killed.stream_copy(stream[0])
        assert behind is None  # it does not run

        restarted_at = time.monotonic()
        await killed.start()
        first_seen = await killed.stream_copy(stream[0])  # most likely still behind
        took = await caught_up(killed, stream[0], end)
        await killed.wait_healthy()
        await copies_at(cluster, stream[0], end)
        written = [(record.sequence, record.data) for record in await read_all(store.log)]
        assert len(written) == end
        for other in cluster.running:
            if other is not killed:
                await other.kill()
        alone = await read_copy(killed, stream[0], end)
        report(
            "cluster-node-catch-up",
            events=end,
            missed=missed,
            first_seen_at=first_seen.last_seq if first_seen is not None else 0,
            catch_up_ms=round(took * 1000),
            restart_to_caught_up_ms=round((time.monotonic() - restarted_at) * 1000),
            found=len(alone),
        )
        assert alone == written
    finally:
        await store.close()


async def test_all_three_nodes_killed_and_restarted_lose_nothing(
    cluster: EmbeddedCluster,
) -> None:
    """Every node SIGKILLed at once, then started again: every acked event is still there.

    Each node fsyncs every write (``sync_interval: always``); the first write after the
    restart is acknowledged within 30 s, and the store, which reconnected by itself, has
    views equal to a rebuild.
    """
    stream = stream_name()
    store = await connect(cluster.urls, stream)
    try:
        thread = Thread.new("acme", "alice")
        await done(store, lambda: store.create_thread(thread))
        written = [Message.user(thread.id, f"before {turn}") for turn in range(100)]
        await asyncio.gather(
            *(
                done(store, lambda message=message: store.create_message(message))
                for message in written[:50]
            )
        )
        for message in written[50:]:
            await done(store, lambda message=message: store.create_message(message))
        end = store.sequence
        await asyncio.gather(*(node.kill() for node in cluster.nodes))

        started_at = time.monotonic()
        await asyncio.gather(*(node.start() for node in cluster.nodes))
        traffic = Traffic()
        after = Message.user(thread.id, "after the restart")
        await traffic.write(
            lambda: store.create_message(after), store.log.connection, bound=2 * WRITE_TIMEOUT
        )
        first_write = traffic.acks[-1][1] - started_at
        await cluster.wait_meta_leader()
        listed = [message.id for message in await store.list_messages(thread.id)]
        await copies_at(cluster, stream[0], end + 1)
        records = await read_all(store.log)
        report(
            "cluster-all-restarted",
            acknowledged=len(written) + 1,
            found=len(listed),
            events=len(records),
            failed_attempts=traffic.retried.unavailable,
            first_write_ms=round(first_write * 1000),
        )
        assert listed == [message.id for message in written] + [after.id]
        assert len(records) == end + 1
        assert first_write < 30.0
        await assert_views_are_a_rebuild([store], cluster, stream)
    finally:
        await store.close()


class Reads:
    """A store's reads and health, asked over and over while a node is away."""

    def __init__(self, store: JetStreamMessageStore, thread_id: str) -> None:
        self._store = store
        self._thread_id = thread_id
        self.answered = 0
        self.statuses: dict[str, int] = {}

    async def watch(self, before: list[str], stop: asyncio.Event) -> None:
        """Until ``stop``: the thread lists ``before`` (and the one write due), health is asked.

        Reads come from the views, so they answer at once; health asks the server, which may
        take a write timeout to say nothing: each has a loop of its own.
        """

        async def reading() -> None:
            while not stop.is_set():
                listed = [m.id for m in await self._store.list_messages(self._thread_id)]
                assert listed[: len(before)] == before
                assert len(before) <= len(listed) <= len(before) + 1
                self.answered += 1
                await asyncio.sleep(0.05)  # a reader's pace

        async def asking() -> None:
            while not stop.is_set():
                status = (await self._store.health_check()).status
                self.statuses[status] = self.statuses.get(status, 0) + 1
                await asyncio.sleep(0.05)  # a monitor's pace

        await asyncio.gather(reading(), asking())


async def test_reads_answer_while_any_one_node_is_down(cluster: EmbeddedCluster) -> None:
    """Each node in turn SIGKILLed: the store answers reads, never fails, and writes again.

    While the node is away the store's reads answer all along and its health says ok or
    degraded, never failed; a write is acknowledged once the stream has a leader, and the
    history (read from the stream) answers again; the node restarted catches up before the
    next one goes.
    """
    stream = stream_name()
    store = await connect(cluster.urls, stream)
    traffic = Traffic()
    watchers: list[asyncio.Task[None]] = []
    try:
        thread = Thread.new("acme", "alice")
        await done(store, lambda: store.create_thread(thread))
        reads = Reads(store, thread.id)
        expected = []
        for turn in range(20):
            message = Message.user(thread.id, f"before {turn}")
            await done(store, lambda message=message: store.create_message(message))
            expected.append(message.id)
        downtimes = []
        for node in cluster.nodes:
            stop = asyncio.Event()
            watching = asyncio.create_task(reads.watch(list(expected), stop))
            watchers.append(watching)
            killed_at = time.monotonic()
            await node.kill()
            message = Message.user(thread.id, f"without {node.name}")
            await traffic.write(
                lambda message=message: store.create_message(message),
                store.log.connection,
                bound=2 * WRITE_TIMEOUT,
            )
            expected.append(message.id)
            downtimes.append(traffic.downtime(killed_at))
            await copies_at(cluster, stream[0], store.sequence)  # what the history reads
            history = await until_acknowledged(
                lambda message=message: store.history(message.id),
                store.log.connection,
                seconds=RETRY_FOR,
            )
            assert [entry.event_type for entry in history] == ["message.created"]
            stop.set()
            await watching
            assert [m.id for m in await store.list_messages(thread.id)] == expected
            await node.start()
            await caught_up(node, stream[0], store.sequence)
        health = await store.health_check()
        report(
            "cluster-one-node-down",
            nodes_killed=len(cluster.nodes),
            acknowledged=len(expected),
            failed_attempts=traffic.retried.unavailable,
            longest_downtime_ms=round(max(downtimes) * 1000),
            reads=reads.answered,
            health_ok=reads.statuses.get("ok", 0),
            health_degraded=reads.statuses.get("degraded", 0),
        )
        assert reads.answered >= len(cluster.nodes)
        assert set(reads.statuses) <= {"ok", "degraded"}
        assert max(downtimes) < 20.0
        assert health.ok, health
        assert not traffic.slow_failures
    finally:
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        await store.close()
