"""Queries through the service: ``convlog serve`` replicas, beside the store in-process and echo.

The stream holds conversations of 50 realistic messages (:func:`benchmarks.replay.populate`,
the default 64 partitions). One, then two, real ``convlog serve`` processes serve every
partition, sharing each partition's requests through its queue group. Each query is asked
four ways, back to back on the same targets:

- ``service``: :class:`~projections.service.remote.RemoteMessageStore`, what an application
  calls: the request, the replica's work, and the client turning the reply into models;
- ``raw``: the same request on the same subject with bare nats-py, the reply not decoded:
  the service as a client in any language sees it;
- ``in-process``: a :class:`~projections.JetStreamMessageStore` of the whole stream in this
  process, the design the service replaces (no network, no encoding);
- ``echo``: bare nats-py requests to :mod:`benchmarks.echo` responders (as many as there
  are replicas) that answer at once with as many bytes as the service's reply: the floor.

Serial p50 and p99 of one awaited call, and throughput with 256 requests in flight (a
``list_threads`` asks all 64 partitions, so 4 of those are in flight). Every reader is
warmed over every target first: a replica makes a message's model on its first read and
keeps it, so cold reads would measure that instead (the query case reports warm figures
too). The client, the replicas and the server share this machine's cores, so throughput
is the whole system's; a two-replica gain needs cores the replicas can spread over.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import msgspec
import nats

from benchmarks import echo
from benchmarks.harness import Result, medians, now, percentile
from benchmarks.processes import convlog_command, running
from benchmarks.replay import USERS, populate
from eventlog.stream import DEFAULT_PARTITIONS
from eventlog.subjects import Subjects
from projections import JetStreamMessageStore
from projections.service.protocol import SERVICE_NAME, ServiceSubjects
from projections.service.remote import RemoteMessageStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from nats.aio.client import Client
    from nats.aio.msg import Msg

    from benchmarks.replay import Populated

STREAM = "SERVICE"
"""The stream's name: fixed, so the server's config can map its routed subjects."""
PER_THREAD = 50
"""Messages in each thread: what list_messages returns."""
FULL_THREADS = 500
"""Threads of the full run: 25,500 events, 37 MB stored. Not more, because a replica that
folds all 64 partitions of a larger stream is cut off as a slow consumer as it catches up
(64 push consumers on one connection outrun the 64 MB the server lets it fall behind) and
fails to start; the figures per query do not depend on the thread count."""
TENANT = "bench"
IN_FLIGHT = 256
"""Requests in flight in the throughput runs."""
_READY_WITHIN = 120.0
"""Seconds a replica may take to fold its partitions and register them."""


class _Reader(Protocol):
    """The queries measured, as every reader answers them."""

    async def get_thread(self, thread_id: str) -> object: ...
    async def list_messages(self, thread_id: str) -> object: ...
    async def list_threads(
        self, tenant_id: str, user_id: str, limit: int, offset: int
    ) -> object: ...


class _RawReader:
    """The service's requests sent with bare nats-py; each call returns its reply's bytes.

    ``subject(partition, endpoint)`` is where a request goes: the service's endpoint, or
    the echo subject of that endpoint's reply size. The body is the one RemoteMessageStore
    sends; a routed call asks the thread's partition, ``list_threads`` every partition.
    """

    def __init__(self, nc: Client, subject: Callable[[int, str], str]) -> None:
        self._nc = nc
        self._subject = subject
        self._layout = Subjects(partitions=DEFAULT_PARTITIONS)

    async def _ask(self, endpoint: str, partition: int, params: dict[str, object]) -> int:
        body = msgspec.json.encode({**params, "min_sequence": 0})
        reply: Msg = await self._nc.request(self._subject(partition, endpoint), body, timeout=30)
        if reply.headers and "Nats-Service-Error-Code" in reply.headers:
            raise RuntimeError(f"{endpoint} failed: {reply.headers}")
        return len(reply.data)

    async def get_thread(self, thread_id: str) -> int:
        partition = self._layout.partition_of(thread_id)
        return await self._ask("get_thread", partition, {"thread_id": thread_id})

    async def list_messages(self, thread_id: str) -> int:
        partition = self._layout.partition_of(thread_id)
        return await self._ask("list_messages", partition, {"thread_id": thread_id})

    async def list_threads(self, tenant_id: str, user_id: str, limit: int, offset: int) -> int:
        params = {"tenant_id": tenant_id, "user_id": user_id, "limit": limit + offset}
        pages = await asyncio.gather(
            *(self._ask("list_threads", p, params) for p in range(DEFAULT_PARTITIONS))
        )
        return sum(pages)


@dataclass(frozen=True)
class _Query:
    """A query, its endpoint, the targets it picks from, and its share of the call budget."""

    name: str
    endpoint: str
    call: Callable[[_Reader, str], Awaitable[object]]
    targets: Callable[[Populated], list[str]]
    fan_out: int = 1
    """Requests one call makes: 1 routed to the thread's partition, or every partition."""
    serial: float = 1.0
    """Serial calls, as a share of the case's budget of calls."""
    loaded: float = 4.0
    """Calls of the throughput run, as a share of the budget."""


_QUERIES = (
    _Query(
        f"list_messages ({PER_THREAD})",
        "list_messages",
        lambda reader, thread: reader.list_messages(thread),
        lambda populated: populated.thread_ids,
    ),
    _Query(
        "get_thread",
        "get_thread",
        lambda reader, thread: reader.get_thread(thread),
        lambda populated: populated.thread_ids,
    ),
    _Query(
        f"list_threads (limit 20, scatter to {DEFAULT_PARTITIONS})",
        "list_threads",
        lambda reader, user: reader.list_threads(TENANT, user, 20, 0),
        lambda _: [f"user{i}" for i in range(USERS)],
        fan_out=DEFAULT_PARTITIONS,
        serial=0.2,
        loaded=0.2,
    ),
)
_READERS = ("service", "raw", "in-process", "echo")


async def _latencies(reader: _Reader, query: _Query, targets: list[str]) -> list[float]:
    """Seconds of each awaited call, one at a time."""
    times = []
    for target in targets:
        start = now()
        await query.call(reader, target)
        times.append(now() - start)
    return times


async def _rate(reader: _Reader, query: _Query, targets: list[str]) -> float:
    """Calls per second with ``IN_FLIGHT`` requests in flight."""
    pending = iter(targets)

    async def worker() -> None:
        for target in pending:
            await query.call(reader, target)

    start = now()
    await asyncio.gather(*(worker() for _ in range(max(1, IN_FLIGHT // query.fan_out))))
    return len(targets) / (now() - start)


async def _registered(nc: Client, replicas: int) -> None:
    """Return once every partition of STREAM answers ``$SRV.PING`` from ``replicas`` replicas."""
    expected = DEFAULT_PARTITIONS * replicas
    heard: set[str] = set()

    async def pong(msg: Msg) -> None:
        answer = msgspec.json.decode(msg.data)
        if answer.get("metadata", {}).get("stream") == STREAM:
            heard.add(answer["id"])

    inbox = nc.new_inbox()
    subscription = await nc.subscribe(inbox, cb=pong)
    try:
        async with asyncio.timeout(_READY_WITHIN):
            while len(heard) < expected:
                heard.clear()
                await nc.publish(f"$SRV.PING.{SERVICE_NAME}", b"", reply=inbox)
                await asyncio.sleep(0.5)
    except TimeoutError:
        raise RuntimeError(
            f"{len(heard)} of the {expected} partition services of {replicas} replica(s) "
            f"answered $SRV.PING within {_READY_WITHIN:.0f}s"
        ) from None
    finally:
        await subscription.unsubscribe()


@contextlib.asynccontextmanager
async def _serving(url: str, prefix: str, replicas: int) -> AsyncIterator[None]:
    """``replicas`` convlog serve processes and as many echo responders, each ready."""
    serve = [convlog_command(), "serve", "--nats-url", url, "--stream", STREAM]
    serve += ["--subject-prefix", prefix, "--interval", "3600"]
    echoing = [sys.executable, "-m", "benchmarks.echo", url]
    async with contextlib.AsyncExitStack() as stack:
        for number in range(replicas):  # one at a time: each folds the stream at full speed
            await stack.enter_async_context(
                running(
                    serve,
                    name=f"convlog serve #{number + 1}",
                    ready="serving projection of stream",
                    within=_READY_WITHIN,
                )
            )
            await stack.enter_async_context(
                running(echoing, name=f"echo #{number + 1}", ready=echo.READY, within=30)
            )
        nc = await nats.connect(url)
        try:
            await _registered(nc, replicas)
        finally:
            await nc.close()
        yield


def _readers(
    remote: RemoteMessageStore,
    store: JetStreamMessageStore,
    nc: Client,
    sizes: dict[str, int],
) -> dict[str, _Reader]:
    """The four readers, by name, over the replicas now serving."""
    service = ServiceSubjects(STREAM, DEFAULT_PARTITIONS)
    return {
        "service": remote,
        "raw": _RawReader(nc, service.endpoint),
        "in-process": store,
        "echo": _RawReader(nc, lambda _, endpoint: echo.subject(sizes[endpoint])),
    }


async def _warm(readers: dict[str, _Reader], populated: Populated, replicas: int) -> None:
    """Ask every routed query of every target: models made on first read exist before timing.

    Requests spread over the replicas at random, so the service is asked 4 times per
    replica: the share of targets a replica never saw is (1 - 1/replicas)^(4 * replicas),
    none with 1 replica, 1/256 with 2. A scatter reads the thread models get_thread made.
    Then each reader asks once more, so no client's first calls are timed either.
    """
    for query in _QUERIES:
        if query.fan_out > 1:
            continue
        targets = query.targets(populated)
        await _rate(readers["raw"], query, targets * 4 * replicas)
        for name in _READERS:
            await _rate(readers[name], query, targets)


async def _reply_sizes(raw: _RawReader, populated: Populated) -> dict[str, int]:
    """Each endpoint's reply size, from the service itself: what the echo sends back."""
    sizes = {}
    for query in _QUERIES:
        size = await query.call(raw, query.targets(populated)[0])
        if not isinstance(size, int):
            raise TypeError(f"a raw reader returned {size!r}, not a size")
        sizes[query.endpoint] = size // query.fan_out
    return sizes


Figures = dict[tuple[str, str, str], float]
"""(query, reader, "p50" | "p99" | "rate") -> µs or calls/s; (query, "reply", "bytes")."""


async def _measure(
    readers: dict[str, _Reader], populated: Populated, rng: random.Random, calls: int
) -> Figures:
    """One run: each query's serial p50 and p99, then its throughput, reader after reader."""
    figures: Figures = {}
    for query in _QUERIES:
        everything = query.targets(populated)
        serial = rng.choices(everything, k=max(10, int(calls * query.serial)))
        loaded = rng.choices(everything, k=max(10, int(calls * query.loaded)))
        for name in _READERS:
            times = await _latencies(readers[name], query, serial)
            figures[query.name, name, "p50"] = percentile(times, 0.5) * 1e6
            figures[query.name, name, "p99"] = percentile(times, 0.99) * 1e6
            figures[query.name, name, "rate"] = await _rate(readers[name], query, loaded)
    return figures


async def _phase(
    url: str,
    populated: Populated,
    store: JetStreamMessageStore,
    *,
    replicas: int,
    calls: int,
    runs: int,
) -> Figures:
    """Every figure with ``replicas`` replicas serving: medians over ``runs``."""
    rng = random.Random(7)
    started = now()
    async with _serving(url, populated.settings.subject_prefix, replicas):
        ready = now()
        nc = await nats.connect(url)
        try:
            service = ServiceSubjects(STREAM, DEFAULT_PARTITIONS)
            sizes = await _reply_sizes(_RawReader(nc, service.endpoint), populated)
            async with await RemoteMessageStore.connect(
                url, stream=STREAM, request_timeout=30
            ) as remote:
                readers = _readers(remote, store, nc, sizes)
                await _warm(readers, populated, replicas)
                warmed = now()
                runs_figures: list[Figures] = []

                async def measure() -> list[float]:
                    runs_figures.append(await _measure(readers, populated, rng, calls))
                    return list(runs_figures[-1].values())

                values = await medians(runs, measure)
        finally:
            await nc.close()
    print(
        f"  ({replicas} replica(s) ready in {ready - started:.1f}s, warmed in "
        f"{warmed - ready:.1f}s, measured in {now() - warmed:.1f}s)",
        flush=True,
    )
    figures = dict(zip(runs_figures[0], values, strict=True))
    for query in _QUERIES:
        figures[query.name, "reply", "bytes"] = sizes[query.endpoint] * query.fan_out
    return figures


async def service_cases(url: str, *, threads: int, calls: int, runs: int) -> list[Result]:
    """Each query's p50, p99 and throughput through 1 and 2 replicas, beside echo's.

    ``url``'s server must map the service's routed subjects of STREAM (see
    :func:`server_config`); ``calls`` is the serial calls per query and run.
    """
    started = now()
    populated = await populate(
        url, threads * (PER_THREAD + 1), per_thread=PER_THREAD + 1, name=STREAM
    )
    print(
        f"  ({threads:,} threads of {PER_THREAD} messages written in {now() - started:.1f}s)",
        flush=True,
    )
    settings = populated.settings
    store = await JetStreamMessageStore.connect(
        url, stream=settings.name, subject_prefix=settings.subject_prefix
    )
    try:
        phases = {
            replicas: await _phase(url, populated, store, replicas=replicas, calls=calls, runs=runs)
            for replicas in (1, 2)
        }
    finally:
        await store.close()
    return [
        row
        for query in _QUERIES
        for replicas, figures in phases.items()
        for row in _rows(query, replicas, figures)
    ]


def server_config() -> str:
    """The nats-server config the case needs: the service's routed subjects mapped."""
    return ServiceSubjects(STREAM, DEFAULT_PARTITIONS).server_config()


def _rows(query: _Query, replicas: int, figures: Figures) -> list[Result]:
    """p50, p99 and throughput of ``query`` with ``replicas`` replicas: the service beside echo."""

    def figure(reader: str, metric: str) -> float:
        return figures[query.name, reader, metric]

    where = f"{replicas} replica{'s' if replicas > 1 else ''}"
    flight = (
        f"{IN_FLIGHT // query.fan_out} calls x {query.fan_out} partitions"
        if query.fan_out > 1
        else f"{IN_FLIGHT} calls"
    )
    shown = {
        "p50": f"RemoteMessageStore vs echo of the reply's {figure('reply', 'bytes'):,.0f} B; ",
        "p99": "",
        "rate": f"{flight} in flight; ",
    }
    rows = []
    for metric, unit in (("p50", "µs"), ("p99", "µs"), ("rate", "calls/s")):
        raw, echoed, local = (figure(r, metric) for r in ("raw", "echo", "in-process"))
        latency = metric != "rate"
        if latency:
            raw_text, local_text = f"{raw:,.0f} µs", f"{local:,.1f} µs"
        else:
            raw_text, local_text = f"{raw:,.0f}/s", f"{local:,.0f}/s"
        rows.append(
            Result(
                case=f"service {query.name} {metric if latency else 'throughput'}, {where}",
                unit=unit,
                ours=figure("service", metric),
                baseline=echoed,
                target="none: echo is the floor" if latency else "none: echo is the ceiling",
                higher_is_better=not latency,
                note=(
                    f"{shown[metric]}raw request, reply not decoded: {raw_text} "
                    f"({raw / echoed:.2f}x); in-process store: {local_text}"
                ),
            )
        )
    return rows
