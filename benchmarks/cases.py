"""The benchmark cases. Each returns a Result: ours beside the raw nats-py baseline."""

from __future__ import annotations

from typing import TYPE_CHECKING

import nats
from nats.js.api import StreamConfig
from uuid_utils import uuid7

from benchmarks.harness import Result, Sample, now, percentile, repeat
from eventlog import Message, Thread
from projections import JetStreamMessageStore

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext

RAW_PAYLOAD = b"x" * 400
"""What a raw baseline publishes: about the size of one of our message events."""


async def raw_stream(url: str, *, atomic: bool = False) -> tuple[Client, JetStreamContext, str]:
    """A connection and a stream of its own for a raw baseline: (client, context, prefix)."""
    token = uuid7().hex[-10:]
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(
            name=f"RAW{token}", subjects=[f"raw{token}.>"], allow_atomic=True if atomic else None
        )
    )
    return nc, js, f"raw{token}"


async def fresh_store(url: str) -> JetStreamMessageStore:
    """Our store, on a stream of its own."""
    token = uuid7().hex[-10:]
    return await JetStreamMessageStore.connect(url, stream=f"B{token}", subject_prefix=f"b{token}")


async def _raw_publish_latencies(url: str, count: int) -> list[float]:
    """Latencies of awaited ``js.publish`` of ~400-byte messages, to a stream of its own."""
    nc, js, prefix = await raw_stream(url)
    latencies = []
    for i in range(count):
        start = now()
        await js.publish(f"{prefix}.t{i % 50}", RAW_PAYLOAD)
        latencies.append(now() - start)
    await nc.close()
    return latencies


async def _store_write_latencies(url: str, count: int) -> list[float]:
    """Latencies of awaited ``create_message``, read-your-writes included."""
    store = await fresh_store(url)
    threads = [Thread.new("bench", "user") for _ in range(50)]
    for thread in threads:
        await store.create_thread(thread)
    latencies = []
    for i in range(count):
        message = Message.user(threads[i % 50].id, "y" * 200)
        start = now()
        await store.create_message(message)
        latencies.append(now() - start)
    await store.close()
    return latencies


async def sequential_write(url: str, *, label: str, count: int, runs: int) -> Result:
    """Case 1: one awaited write at a time; p50 latency against awaited js.publish."""

    async def measure() -> Sample:
        baseline = percentile(await _raw_publish_latencies(url, count), 0.5)
        ours = percentile(await _store_write_latencies(url, count), 0.5)
        return ours * 1e6, baseline * 1e6

    ours, baseline = await repeat(runs, measure)
    return Result(
        case=f"sequential write p50 ({label})",
        unit="µs",
        ours=ours,
        baseline=baseline,
        target="<= 1.30x",
        higher_is_better=False,
    )
