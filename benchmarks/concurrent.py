"""Concurrent durable writes, and read-your-writes latency under that load.

Ours: ``writers`` tasks call ``create_message`` on one :class:`JetStreamMessageStore`,
spread over 1,000 threads created first, on a server that fsyncs every append. Each
write's latency runs from the call to its return (its own event folded), after which the
message must be in ``list_messages``; a miss is counted, and the threads' counts must add
up to every write, or the case fails.

The baselines, in the same run on the same server, write ~400-byte messages with raw
nats-py to a stream of their own: ``js.publish_async`` with as many acks awaited at once as
we have writers, and atomic batches of 500 (one ack, one fsync, per batch).
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
    """Writes whose message was not in list_messages right after the call returned."""


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
            if not any(m.id == message.id for m in await store.list_messages(thread.id)):
                misses += 1

    before = sum([await store.count_messages(thread.id) for thread in threads])
    start = now()
    await asyncio.gather(*(writer(number) for number in range(writers)))
    seconds = now() - start
    after = sum([await store.count_messages(thread.id) for thread in threads])
    if after - before != writers * per_writer:
        raise RuntimeError(
            f"{writers * per_writer} writes were acknowledged but the views count "
            f"{after - before}: writes were lost"
        )
    return WriteRun(len(latencies) / seconds, latencies, misses)


async def raw_pipelined(url: str, count: int, window: int) -> WriteRun:
    """``js.publish_async`` of ``count`` messages with up to ``window`` acks outstanding."""
    nc, js, prefix = await raw_stream(url)
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
    seconds = now() - start
    await nc.close()
    if failed:
        raise RuntimeError(f"{len(failed)} raw publishes failed, e.g. {failed[0]!r}")
    return WriteRun(count / seconds, latencies, 0)


async def raw_batches(url: Servers, count: int, *, replicas: int = 1) -> float:
    """Messages per second, sent as atomic batches of 500: plain publishes, then one commit."""
    nc, _, prefix = await raw_stream(url, atomic=True, replicas=replicas)
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
    seconds = now() - start
    await nc.close()
    return count / seconds


async def concurrent_cases(url: str, *, writers: int, per_writer: int, runs: int) -> list[Result]:
    """Case 2 (events/s against pipelined raw) and case 3 (read-your-writes latency)."""
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
            baseline=raw_rate,
            target=">= 50,000/s and >= 7x pipelined",
            higher_is_better=True,
            note=f"raw atomic batches of {_BATCH}: {batch_rate:,.0f}/s; {shape}",
        ),
        Result(
            case="read-your-writes p99 under case 2",
            unit="ms",
            ours=p99,
            baseline=raw_p99,
            target="p99 <= 10 ms",
            higher_is_better=False,
            note=(
                f"p50 {p50:.2f} ms (raw {raw_p50:.2f} ms); baseline: raw publish_async ack "
                f"latency, {writers} in flight; {misses} misses in list_messages over {runs} runs"
            ),
        ),
    ]
