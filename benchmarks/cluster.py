"""A replicated log: durable writes at R1 and at R3, and write downtime when a leader fails.

R1 is the stream on one nats-server (what ``docker compose up`` runs), R3 the stream on a
three-node :class:`~eventlog.cluster.EmbeddedCluster` on loopback (what
``docker compose --profile cluster`` runs), both with ``sync_interval: always`` and measured
back to back in each repetition. An R3 append is acknowledged once two of the three nodes
have it in their Raft log, fsynced.

- **Sequential writes**: p50 of one awaited ``create_message`` at a time (with its id claim
  and read-your-writes) beside an awaited raw ``js.publish`` to a stream of the same
  replication, as ``--case write`` measures them.
- **Concurrent writes**: events/s of 256 writers on one store beside raw atomic batches of
  500, the server's ceiling, as ``--case concurrent`` measures them.
- **Write downtime**: a writer awaiting ``create_message`` over and over, retrying the same
  message while the cluster answers nothing, beside a raw ``js.publish`` writer retrying the
  same ``Nats-Msg-Id`` on a stream of its own, after the same timeout as our store's
  (``write_timeout``, 5 s: an append in flight when a leader goes is never answered, and
  waits that long); both are connected to a follower, and every
  leader they write through (our stream, its id-claim bucket, the raw stream) is moved to
  one node first. That node is then killed (SIGKILL), stopped (SIGTERM: it hands its
  leaderships over before exiting) or asked through the API to step down. Downtime is the
  longest gap between two acknowledgements from the fault on. A killed or stopped node is
  started again and caught up before the next run. At the end every acknowledged event must
  be in the stream, read back by a new store (ours: the case fails otherwise) and counted
  in the raw stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import nats
import nats.errors

from benchmarks import workload
from benchmarks.cases import RAW_PAYLOAD, first_message, fresh_store, raw_stream, write_p50s
from benchmarks.concurrent import THREADS, create_threads, raw_batches, store_writes
from benchmarks.harness import Result, medians, now
from eventlog import ConnectOptions, EmbeddedNats, Message, Thread, UnavailableError
from eventlog.cluster import EmbeddedCluster, stream_leader
from projections import JetStreamMessageStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from nats.aio.client import Client
    from nats.js import JetStreamContext

    from eventlog.cluster import ClusterNode

FAULTS: Final = ("SIGKILL", "SIGTERM", "step-down")
"""How the leader goes away, in the order the rows are printed."""
_BEFORE: Final = 0.5
"""Seconds of steady writing before each fault."""
_AFTER: Final = 0.5
"""Seconds both writers keep writing once each is acknowledged again after the fault."""
_OUTAGE: Final = 60.0
"""Seconds after a fault by which both writers must be acknowledged again, or the case fails."""
_TIMEOUT: Final = ConnectOptions().write_timeout
"""Seconds a raw publish waits for its ack before it is sent again: our store's default.

An append in flight when a leader goes is never answered; both writers send it again only
after this. (With 0.5 s for both, a step-down cost 0.04-0.53 s on this machine.)"""
_RETRY_PAUSE: Final = 0.02
_WRITE_THREADS: Final = 10
"""Threads the downtime writers write to, in turn."""
_STEP_DOWN: Final = "$JS.API.STREAM.LEADER.STEPDOWN.{}"
_LEADER_MOVED_WITHIN: Final = 30.0


async def cluster_cases(
    *, count: int, writers: int, per_writer: int, runs: int, fault_runs: int, faults: Sequence[str]
) -> list[Result]:
    """Every row of the case: ``faults`` (a subset of :data:`FAULTS`) ``fault_runs`` times each."""
    async with EmbeddedNats(sync_always=True) as single, EmbeddedCluster() as cluster:
        results = await _sequential(single, cluster.urls, count=count, runs=runs)
        results += await _concurrent(
            single, cluster.urls, writers=writers, per_writer=per_writer, runs=runs
        )
        if faults:
            results += await _downtimes(cluster, faults=faults, runs=fault_runs)
    return results


async def _sequential(single: str, urls: list[str], *, count: int, runs: int) -> list[Result]:
    async def measure() -> list[float]:
        return [
            *await write_p50s(single, count, replicas=1),
            *await write_p50s(urls, count, replicas=3),
        ]

    r1, r1_raw, r3, r3_raw = await medians(runs, measure)
    shape = f"{count:,} writes, median of {runs}"
    return [
        Result(
            case="sequential write p50, R1 (one server)",
            unit="µs",
            ours=r1,
            baseline=r1_raw,
            target="<= 1.30x",
            higher_is_better=False,
            note=f"baseline: js.publish to an R1 stream; {shape}",
        ),
        Result(
            case="sequential write p50, R3 (3-node cluster)",
            unit="µs",
            ours=r3,
            baseline=r3_raw,
            target="<= 1.30x",
            higher_is_better=False,
            note=(
                f"R3/R1: ours {r3 / r1:.2f}x, js.publish {r3_raw / r1_raw:.2f}x; "
                f"baseline: js.publish to an R3 stream; {shape}"
            ),
        ),
    ]


async def _concurrent(
    single: str, urls: list[str], *, writers: int, per_writer: int, runs: int
) -> list[Result]:
    total = writers * per_writer

    async def rates(url: str | list[str], replicas: int) -> list[float]:
        batched = await raw_batches(url, total, replicas=replicas)
        store = await fresh_store(url, replicas=replicas)
        try:
            threads = await create_threads(store, THREADS)
            # The first write makes the id-claim bucket: not 256 writers at once (on R3 their
            # bucket lookups and creations time out), and not within the timing.
            await first_message(store, threads[0])
            ours = await store_writes(store, threads, writers=writers, per_writer=per_writer)
        finally:
            await store.close()
        return [ours.rate, batched]

    async def measure() -> list[float]:
        return [*await rates(single, 1), *await rates(urls, 3)]

    r1, r1_raw, r3, r3_raw = await medians(runs, measure)
    shape = f"{total:,} writes, {writers} writers, {THREADS:,} threads, median of {runs}"
    return [
        Result(
            case="concurrent durable writes, R1 (one server)",
            unit="events/s",
            ours=r1,
            baseline=r1_raw,
            target="none: batches are the ceiling",
            higher_is_better=True,
            note=f"baseline: raw atomic batches of 500 to an R1 stream; {shape}",
        ),
        Result(
            case="concurrent durable writes, R3 (3-node cluster)",
            unit="events/s",
            ours=r3,
            baseline=r3_raw,
            target="none: batches are the ceiling",
            higher_is_better=True,
            note=(
                f"R3/R1: ours {r3 / r1:.2f}x, batches {r3_raw / r1_raw:.2f}x; "
                f"baseline: raw atomic batches of 500 to an R3 stream; {shape}"
            ),
        ),
    ]


# --- write downtime ----------------------------------------------------------------------


@dataclass
class _Writer:
    """One writer's acknowledgements: when each came, and what was acknowledged."""

    acks: list[float] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    since: float = float("inf")
    """When the fault came (set then)."""
    again: asyncio.Event = field(default_factory=asyncio.Event)
    """Set at the first acknowledgement after ``since``."""

    def ack(self, what: str) -> None:
        moment = now()
        self.acks.append(moment)
        self.acked.append(what)
        if moment >= self.since:
            self.again.set()

    def downtime(self, fault: float) -> float:
        """The longest gap between two acknowledgements from ``fault`` on."""
        gaps = [b - a for a, b in itertools.pairwise(self.acks) if b >= fault]
        return max(gaps, default=float("nan"))


async def _ours(
    store: JetStreamMessageStore, threads: list[Thread], stop: asyncio.Event, writer: _Writer
) -> None:
    """Awaited ``create_message`` in turn over ``threads``; a write that fails is sent again."""
    index = 0
    while not stop.is_set():
        message = Message.user(threads[index % len(threads)].id, workload.text(index))
        while True:
            try:
                await store.create_message(message)  # a retry of the same create is a no-op
                break
            except (UnavailableError, TimeoutError):
                await asyncio.sleep(_RETRY_PAUSE)
        writer.ack(message.id)
        index += 1


async def _raw(
    nc: Client, names: tuple[str, str, str], stop: asyncio.Event, writer: _Writer
) -> None:
    """Awaited ``js.publish`` with a ``Nats-Msg-Id``; a publish not acknowledged is sent again.

    ``names``: the stream, its subject prefix, and this run's prefix of message ids.
    """
    js = nc.jetstream()
    stream, prefix, run = names
    index = 0
    while not stop.is_set():
        msg_id = f"{run}-{index}"
        while True:
            try:
                await js.publish(
                    f"{prefix}.t{index % _WRITE_THREADS}",
                    RAW_PAYLOAD,
                    timeout=_TIMEOUT,
                    stream=stream,
                    headers={"Nats-Msg-Id": msg_id},
                )
                break
            except nats.errors.Error:  # no ack in time, no responders, reconnecting
                await asyncio.sleep(_RETRY_PAUSE)
        writer.ack(msg_id)
        index += 1


async def _lead_on(nc: Client, streams: list[str], node: ClusterNode) -> None:
    """Move each stream's leadership to ``node``: a step-down that names it as preferred."""
    request = json.dumps({"placement": {"preferred": node.name}}).encode()
    async with asyncio.timeout(_LEADER_MOVED_WITHIN):
        for stream in streams:
            while (leader := await stream_leader(nc, stream)) != node.name:
                if leader is not None:
                    with contextlib.suppress(nats.errors.Error):
                        await nc.request(_STEP_DOWN.format(stream), request, timeout=2)
                await asyncio.sleep(0.1)


async def _step_down_all(nc: Client, streams: list[str]) -> None:
    """Ask every one of ``streams``' leaders to step down at once (the new one is elected after)."""
    await asyncio.gather(*(nc.request(_STEP_DOWN.format(s), b"", timeout=2) for s in streams))


async def _fault(how: str, leader: ClusterNode, nc: Client, streams: list[str]) -> None:
    if how == "SIGKILL":
        await leader.kill()
    elif how == "SIGTERM":
        await leader.terminate()
    else:
        await _step_down_all(nc, streams)


@dataclass
class _Outage:
    """One fault's runs: each writer's downtime per run."""

    ours: list[float] = field(default_factory=list)
    raw: list[float] = field(default_factory=list)


class _Rig:
    """Our store and a raw stream at R3, both written through the cluster's first node."""

    def __init__(
        self,
        cluster: EmbeddedCluster,
        nc: Client,
        store: JetStreamMessageStore,
        raw: tuple[Client, JetStreamContext, str],
    ) -> None:
        self.cluster = cluster
        self.nc = nc
        """For the JetStream API: leaders, step-downs."""
        self.store = store
        self.raw_nc, self.raw_js, self.prefix = raw
        self.raw_name = f"RAW{self.prefix.removeprefix('raw')}"
        self.threads = [Thread.new("bench", f"user{i}") for i in range(_WRITE_THREADS)]
        ours = store.log.stream.name
        self.streams = [ours, f"KV_{ours}_ids", self.raw_name]
        """Every stream the writers write through: ours, its id-claim bucket's, the raw one."""
        self.acked: list[str] = []
        self.raw_acked: set[str] = set()

    @classmethod
    @contextlib.asynccontextmanager
    async def opened(cls, cluster: EmbeddedCluster) -> AsyncIterator[_Rig]:
        """Connected to the first node, with both streams, the threads and the claim bucket."""
        url = cluster.nodes[0].url  # the writers' node: never the one that fails
        async with contextlib.AsyncExitStack() as closing:
            nc = await nats.connect(
                url, max_reconnect_attempts=-1, reconnect_time_wait=0.25, error_cb=_quiet
            )
            closing.push_async_callback(nc.close)
            store = await fresh_store([url], replicas=3)
            closing.push_async_callback(store.close)
            raw = await raw_stream([url], replicas=3)
            closing.push_async_callback(raw[0].close)
            rig = cls(cluster, nc, store, raw)
            for thread in rig.threads:
                await store.create_thread(thread)
            await first_message(store, rig.threads[0])  # makes the id-claim bucket
            yield rig

    async def run(self, how: str, number: int) -> tuple[float, float]:
        """One fault on a node leading every stream; both writers' downtimes."""
        nodes = self.cluster.nodes
        leader = nodes[1 + number % (len(nodes) - 1)]
        await _lead_on(self.nc, self.streams, leader)
        stop, ours, raw = asyncio.Event(), _Writer(), _Writer()
        writing = asyncio.gather(
            _ours(self.store, self.threads, stop, ours),
            _raw(self.raw_nc, (self.raw_name, self.prefix, f"r{number}"), stop, raw),
        )
        try:
            await asyncio.sleep(_BEFORE)
            fault = ours.since = raw.since = now()
            await _fault(how, leader, self.nc, self.streams)
            try:
                async with asyncio.timeout(_OUTAGE):
                    await asyncio.gather(ours.again.wait(), raw.again.wait())
            except TimeoutError:
                raise RuntimeError(
                    f"a writer was not acknowledged within {_OUTAGE:.0f}s of a {how}"
                ) from None
            await asyncio.sleep(_AFTER)
        finally:
            stop.set()
            await writing
        self.acked += ours.acked
        self.raw_acked.update(raw.acked)
        if not leader.running:
            await leader.start()
        await self.cluster.wait_healthy()
        return ours.downtime(fault), raw.downtime(fault)

    async def lost(self) -> tuple[int, int]:
        """Acknowledged writes not in the streams: ours (read by a new store), raw (counted)."""
        log = self.store.log
        async with await JetStreamMessageStore.connect(
            self.cluster.urls, stream=log.stream.name, subject_prefix=log.subjects.prefix
        ) as reader:
            present = {m.id for t in self.threads for m in await reader.list_messages(t.id)}
        stored = (await self.raw_js.stream_info(self.raw_name)).state.messages
        ours = sum(1 for message_id in self.acked if message_id not in present)
        return ours, max(0, len(self.raw_acked) - stored)


async def _downtimes(cluster: EmbeddedCluster, *, faults: Sequence[str], runs: int) -> list[Result]:
    """Each fault ``runs`` times, in turn; then check that every acknowledged write is stored."""
    outages = {how: _Outage() for how in faults}
    async with _Rig.opened(cluster) as rig:
        for number, how in enumerate(h for _ in range(runs) for h in faults):
            ours, raw = await rig.run(how, number)
            outages[how].ours.append(ours)
            outages[how].raw.append(raw)
        lost, raw_lost = await rig.lost()
    if lost:
        raise RuntimeError(f"{lost} of {len(rig.acked)} acknowledged writes are not in the stream")
    totals = (
        f"acked lost, all runs: ours {lost} of {len(rig.acked):,}, raw {raw_lost} of "
        f"{len(rig.raw_acked):,}"
    )
    return [
        Result(
            case=f"write downtime, {_FAULT_TEXT[how]} (R3)",
            unit="s",
            ours=statistics.median(outage.ours),
            baseline=statistics.median(outage.raw),
            target="0 acked writes lost",
            higher_is_better=False,
            note=(
                f"runs: {_seconds(outage.ours)} (raw {_seconds(outage.raw)}); {totals}; "
                f"baseline: js.publish resent with its Nats-Msg-Id after {_TIMEOUT:.0f} s, "
                "as ours; writers on a follower, their leaders on the failed node"
            ),
        )
        for how, outage in outages.items()
    ]


_FAULT_TEXT: Final = {
    "SIGKILL": "SIGKILL of the leader",
    "SIGTERM": "SIGTERM of the leader",
    "step-down": "API step-down of the leaders",
}


def _seconds(values: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values) + " s"


async def _quiet(_: Exception) -> None:
    """A node killed under a connection is what this case does: not worth a log line."""
