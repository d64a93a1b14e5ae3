"""The benchmark cases. Each returns a Result: ours beside the raw nats-py baseline."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

import nats
from nats.js.api import StreamConfig
from uuid_utils import uuid7

from benchmarks.harness import Result, Sample, now, percentile, repeat
from eventlog import EventLog, Message, StreamSettings, Thread, UnavailableError
from projections import JetStreamMessageStore

if TYPE_CHECKING:
    from collections.abc import Sequence

    from nats.aio.client import Client
    from nats.js import JetStreamContext

    Servers = str | Sequence[str]
    """One server's URL, or a cluster's."""

_FIRST_WRITE_WITHIN: Final = 30.0

RAW_PAYLOAD = b"x" * 400
"""What a raw baseline publishes: about the size of one of our message events."""


async def raw_stream(
    url: Servers, *, atomic: bool = False, replicas: int = 1
) -> tuple[Client, JetStreamContext, str]:
    """A connection and a stream of its own for a raw baseline: (client, context, prefix)."""
    token = uuid7().hex[-10:]
    nc = await nats.connect(url if isinstance(url, str) else list(url))
    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(
            name=f"RAW{token}",
            subjects=[f"raw{token}.>"],
            allow_atomic=True if atomic else None,
            num_replicas=replicas,
        )
    )
    return nc, js, f"raw{token}"


async def fresh_store(
    url: Servers, *, replicas: int | None = None, partitions: int | None = None
) -> JetStreamMessageStore:
    """Our store, on a stream of its own (64 partitions unless ``partitions`` says)."""
    token = uuid7().hex[-10:]
    settings = StreamSettings(
        name=f"B{token}", subject_prefix=f"b{token}", replicas=replicas, partitions=partitions
    )
    return await JetStreamMessageStore.open(
        await EventLog.connect(url, stream=settings), owns_log=True
    )


async def first_message(store: JetStreamMessageStore, thread: Thread) -> None:
    """One message, before any timing: the first write makes the store's id-claim bucket.

    A bucket just made at R3 may not answer at once (no responders, seen on this machine),
    so this write is retried for a while; a timed write that fails fails the case.
    """
    message = Message.user(thread.id, "first")
    async with asyncio.timeout(_FIRST_WRITE_WITHIN):
        while True:
            try:
                await store.create_message(message)  # a retry of the same create is a no-op
            except UnavailableError:
                await asyncio.sleep(0.1)
            else:
                return


async def _raw_publish_latencies(url: Servers, count: int, replicas: int) -> list[float]:
    """Latencies of awaited ``js.publish`` of ~400-byte messages, to a stream of its own."""
    nc, js, prefix = await raw_stream(url, replicas=replicas)
    latencies = []
    for i in range(count):
        start = now()
        await js.publish(f"{prefix}.t{i % 50}", RAW_PAYLOAD)
        latencies.append(now() - start)
    await nc.close()
    return latencies


async def _store_write_latencies(
    url: Servers, count: int, replicas: int, partitions: int | None
) -> list[float]:
    """Latencies of awaited ``create_message``, read-your-writes included."""
    store = await fresh_store(url, replicas=replicas, partitions=partitions)
    threads = [Thread.new("bench", "user") for _ in range(50)]
    for thread in threads:
        await store.create_thread(thread)
    await first_message(store, threads[0])
    latencies = []
    for i in range(count):
        message = Message.user(threads[i % 50].id, "y" * 200)
        start = now()
        await store.create_message(message)
        latencies.append(now() - start)
    await store.close()
    return latencies


async def write_p50s(
    url: Servers, count: int, *, replicas: int = 1, partitions: int | None = None
) -> Sample:
    """One repetition of case 1: p50 µs of ``create_message`` and of ``js.publish``."""
    baseline = percentile(await _raw_publish_latencies(url, count, replicas), 0.5)
    ours = percentile(await _store_write_latencies(url, count, replicas, partitions), 0.5)
    return ours * 1e6, baseline * 1e6


async def sequential_write(
    url: str, *, label: str, count: int, runs: int, partitions: int | None = None
) -> Result:
    """Case 1: one awaited write at a time; p50 latency against awaited js.publish.

    On a partitioned stream (the default) a create claims its message id first, a second
    durable write; ``partitions=1`` shows the write without it.
    """
    ours, baseline = await repeat(runs, lambda: write_p50s(url, count, partitions=partitions))
    return Result(
        case=f"sequential write p50 ({label})",
        unit="µs",
        ours=ours,
        baseline=baseline,
        target="<= 1.30x",
        higher_is_better=False,
    )
