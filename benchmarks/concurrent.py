"""Concurrent durable writes, and read-your-writes latency under that load.

Ours: ``writers`` tasks call ``create_message`` on one :class:`JetStreamMessageStore`,
spread over 1,000 threads created first, on a server that fsyncs every append. Each
write's latency runs from the call to its return (its own event folded), after which
``get_message(message.id)`` must return the message (read-your-writes: a read right after a
write returns sees it; one lookup, not ``list_messages``, whose 50 models a page would be
counted inside our rate); a miss is counted, and the threads' counts must add up to every
write, or the case fails.

The baselines, in the same run on the same server, write ~400-byte messages with raw
nats-py to a stream of their own: atomic batches of 500 (one ack, one fsync, per batch),
the ratio's baseline since issue 14, and ``js.publish_async`` with as many acks awaited at
once as we have writers, in the note.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nats.js import api
from uuid_utils import uuid7

from benchmarks import workload
from benchmarks.cases import RAW_PAYLOAD, fresh_store, raw_stream
from benchmarks.harness import Result, medians, now, percentile
from eventlog import Message, Thread

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext

    from benchmarks.cases import Servers
    from projections import JetStreamMessageStore

THREADS = 1000
_BATCH = 500
_STALLED = 30.0
"""Seconds after which a write is taken for hung: the case fails rather than wait forever."""


@dataclass(frozen=True)
class WriteRun:
    """What one round of concurrent writes showed."""

    rate: float
    """Writes per second, from the first call to the last return."""
    latencies: list[float]
    misses: int
    """Writes whose message get_message did not return right after the call returned."""
    started: float = 0.0
    """:func:`~benchmarks.harness.now` at the first call: the clock is the system's
    monotonic one, so runs in several processes add up to one span."""
    finished: float = 0.0
    """:func:`~benchmarks.harness.now` at the last return."""


async def create_threads(store: JetStreamMessageStore, count: int) -> list[Thread]:
    """``count`` new threads, created concurrently, before any timing starts."""
    threads = [Thread.new("bench", f"user{i % 100}") for i in range(count)]
    async with asyncio.timeout(_STALLED):
        await asyncio.gather(*(store.create_thread(thread) for thread in threads))
    return threads


async def store_writes(
    store: JetStreamMessageStore, threads: list[Thread], *, writers: int, per_writer: int
) -> WriteRun:
    """``writers`` tasks each awaiting ``per_writer`` create_message calls, round the threads."""
    latencies: list[float] = []
    misses = 0

    async def writer(number: int) -> None:
        nonlocal misses
        for step in range(per_writer):
            index = number + step * writers
            thread = threads[index % len(threads)]
            message = Message.user(thread.id, workload.text(index))
            start = now()
            try:
                async with asyncio.timeout(_STALLED):
                    await store.create_message(message)
            except TimeoutError as err:
                raise RuntimeError(f"a create_message hung for {_STALLED:.0f}s") from err
            latencies.append(now() - start)
            if await store.get_message(message.id) is None:
                misses += 1

    before = sum([await store.count_messages(thread.id) for thread in threads])
    start = now()
    await asyncio.gather(*(writer(number) for number in range(writers)))
    finished = now()
    after = sum([await store.count_messages(thread.id) for thread in threads])
    if after - before != writers * per_writer:
        raise RuntimeError(
            f"{writers * per_writer} writes were acknowledged but the views count "
            f"{after - before}: writes were lost"
        )
    return WriteRun(len(latencies) / (finished - start), latencies, misses, start, finished)


async def pipelined(js: JetStreamContext, prefix: str, count: int, window: int) -> WriteRun:
    """``js.publish_async`` of ``count`` messages under ``prefix``, ``window`` acks outstanding."""
    slots = asyncio.Semaphore(window)
    latencies: list[float] = []
    failed: list[BaseException] = []

    def acked(sent: float, future: asyncio.Future[api.PubAck]) -> None:
        latencies.append(now() - sent)
        slots.release()
        if (error := future.exception()) is not None:
            failed.append(error)

    start = now()
    async with asyncio.timeout(_STALLED + count / 1000):  # an ack never sent is a hang
        for index in range(count):
            await slots.acquire()
            sent = now()
            future = await js.publish_async(f"{prefix}.t{index % THREADS}", RAW_PAYLOAD)
            future.add_done_callback(functools.partial(acked, sent))
        await js.publish_async_completed()
    finished = now()
    if failed:
        raise RuntimeError(f"{len(failed)} raw publishes failed, e.g. {failed[0]!r}")
    return WriteRun(count / (finished - start), latencies, 0, start, finished)


async def raw_pipelined(url: str, count: int, window: int) -> WriteRun:
    """:func:`pipelined` on a raw stream of its own."""
    nc, js, prefix = await raw_stream(url)
    try:
        return await pipelined(js, prefix, count, window)
    finally:
        await nc.close()


async def batches(nc: Client, prefix: str, count: int) -> WriteRun:
    """``count`` messages under ``prefix`` as atomic batches of 500: publishes, then a commit."""
    start = now()
    for first in range(0, count, _BATCH):
        size = min(_BATCH, count - first)
        batch = uuid7().hex
        for index in range(1, size + 1):
            subject = f"{prefix}.t{(first + index) % THREADS}"
            headers: dict[str, str] = {
                api.Header.BATCH_ID: batch,
                api.Header.BATCH_SEQUENCE: str(index),
            }
            if index < size:
                await nc.publish(subject, RAW_PAYLOAD, headers=headers)
                continue
            headers[api.Header.BATCH_COMMIT] = "1"
            reply = await nc.request(subject, RAW_PAYLOAD, timeout=10, headers=headers)
            if b'"error"' in reply.data:
                raise RuntimeError(f"an atomic batch was refused: {reply.data!r}")
    finished = now()
    return WriteRun(count / (finished - start), [], 0, start, finished)


async def raw_batches(url: Servers, count: int, *, replicas: int = 1) -> float:
    """Messages per second of :func:`batches` on an atomic raw stream of its own."""
    nc, _, prefix = await raw_stream(url, atomic=True, replicas=replicas)
    try:
        return (await batches(nc, prefix, count)).rate
    finally:
        await nc.close()


async def concurrent_cases(url: str, *, writers: int, per_writer: int, runs: int) -> list[Result]:
    """Case 2 (events/s against raw atomic batches) and case 3 (read-your-writes latency)."""
    count = writers * per_writer
    misses = 0

    async def measure() -> list[float]:
        nonlocal misses
        pipelined = await raw_pipelined(url, count, writers)
        batched = await raw_batches(url, count)
        store = await fresh_store(url)
        try:
            threads = await create_threads(store, THREADS)
            ours = await store_writes(store, threads, writers=writers, per_writer=per_writer)
        finally:
            await store.close()
        misses += ours.misses
        return [
            ours.rate,
            pipelined.rate,
            batched,
            *(percentile(run.latencies, q) * 1e3 for run in (ours, pipelined) for q in (0.5, 0.99)),
        ]

    rate, raw_rate, batch_rate, p50, p99, raw_p50, raw_p99 = await medians(runs, measure)
    shape = f"{count:,} writes, {writers} writers, {THREADS:,} threads, fsync always"
    return [
        Result(
            case="concurrent durable writes",
            unit="events/s",
            ours=rate,
            baseline=batch_rate,
            target=f">= 20,000/s and >= 0.35x of raw atomic batches of {_BATCH}",  # issue 14
            higher_is_better=True,
            note=(
                f"baseline: raw atomic batches of {_BATCH}; raw publish_async pipelined "
                f"{raw_rate:,.0f}/s ({rate / raw_rate:.2f}x); {shape}"
            ),
        ),
        Result(
            case="read-your-writes p99 under case 2",
            unit="ms",
            ours=p99,
            baseline=raw_p99,
            target="p99 <= 20 ms",  # issue 14
            higher_is_better=False,
            note=(
                f"p50 {p50:.2f} ms (raw {raw_p50:.2f} ms); baseline: raw publish_async ack "
                f"latency, {writers} in flight; {misses} misses in get_message over {runs} runs"
            ),
        ),
    ]
