"""Cold start of one partition's replica beside the whole stream's, and what a replica holds.

A replica of ``convlog serve --partitions k`` folds partition k only: the server filters
the stream by the partition's subjects, so its cold start should shrink with its share of
the stream (1/64 by default) rather than with the stream. The stream is
:func:`benchmarks.replay.populate`'s: conversations of 20 realistic events in atomic
batches, hash-chained, on the default 64 partitions. Each start is timed in a fresh
process (:func:`benchmarks.replay.fresh_cold_start`), by full replay and from a snapshot
(a partition store writes and restores its own, ``partition-<k>-<seq>``).

Memory is the memory case's measure (:func:`benchmarks.memory.bytes_per_message`): resident
bytes per message of the views, text included, so the docs can say what a replica holding
1/64 of 10^9 messages needs. That row is an estimate, labelled so: bytes per message
measured at ``memory_count`` messages, multiplied out.
"""

from __future__ import annotations

import statistics
import time

from benchmarks.harness import Result
from benchmarks.memory import bytes_per_message
from benchmarks.replay import fresh_cold_start, populate
from eventlog.stream import DEFAULT_PARTITIONS
from eventlog.subjects import Subjects
from projections import JetStreamMessageStore

PARTITION = 0
"""The partition whose replica is started: any one holds about 1/64 of the threads."""
FLEET_MESSAGES = 10**9
"""The stream the estimate is for: a billion messages over the default partitions."""


async def _snapshot(url: str, stream: str, prefix: str, partition: int | None) -> float:
    """Write a snapshot of the stream's views (or the partition's); its size in MB."""
    store = await JetStreamMessageStore.connect(
        url, stream=stream, subject_prefix=prefix, partition=partition
    )
    try:
        info = await store.snapshot()
    finally:
        await store.close()
    return info.size / 1e6


async def coldstart_cases(
    url: str, *, count: int, runs: int, whole_runs: int, memory_count: int
) -> list[Result]:
    """Partition and whole-stream cold starts of ``count`` events; memory per message.

    Medians of ``runs`` starts of the partition, ``whole_runs`` of the whole stream (at a
    million events one takes half a minute).
    """
    label = f"{count:,} events"
    written = time.perf_counter()
    populated = await populate(url, count)
    settings = populated.settings
    print(f"  ({label} written in {time.perf_counter() - written:.1f}s)", flush=True)
    layout = Subjects(partitions=DEFAULT_PARTITIONS)
    held = sum(layout.partition_of(t) == PARTITION for t in populated.thread_ids)
    share = f"partition {PARTITION} holds {held:,} of {len(populated.thread_ids):,} threads"

    async def starts(*, restore: bool, partition: int | None) -> float:
        repeats = whole_runs if partition is None else runs
        return statistics.median(
            [
                await fresh_cold_start(url, settings, restore=restore, partition=partition)
                for _ in range(repeats)
            ]
        )

    whole = await starts(restore=False, partition=None)
    part = await starts(restore=False, partition=PARTITION)
    name, prefix = settings.name, settings.subject_prefix
    whole_mb = await _snapshot(url, name, prefix, None)
    part_mb = await _snapshot(url, name, prefix, PARTITION)
    whole_restored = await starts(restore=True, partition=None)
    part_restored = await starts(restore=True, partition=PARTITION)
    memory = await bytes_per_message(memory_count)
    return [
        Result(
            case=f"cold start, 1 partition of {DEFAULT_PARTITIONS}, full replay ({label})",
            unit="s",
            ours=part,
            baseline=whole,
            target=f"~1/{DEFAULT_PARTITIONS}x (its share)",
            higher_is_better=False,
            note=f"baseline: the whole stream, same way; {share}",
        ),
        Result(
            case=f"cold start, 1 partition of {DEFAULT_PARTITIONS}, from snapshot ({label})",
            unit="s",
            ours=part_restored,
            baseline=whole_restored,
            target=f"~1/{DEFAULT_PARTITIONS}x (its share)",
            higher_is_better=False,
            note=f"snapshots {part_mb:,.2f} MB (partition) and {whole_mb:,.1f} MB (stream)",
        ),
        *_memory_rows(memory, memory_count),
    ]


def _memory_rows(memory: dict[str, list[float]], count: int) -> list[Result]:
    """Views' MB per million messages, and the estimate for one partition of 10^9 messages."""
    (folded, read), (dicts_folded, dicts_read) = memory["ours"], memory["dicts"]
    messages = FLEET_MESSAGES // DEFAULT_PARTITIONS
    basis = f"RSS growth per message at {count:,} messages, ~200 B of text each, text included"
    return [
        Result(
            case=f"view memory per million messages, as folded ({count:,} msgs)",
            unit="MB",
            ours=folded,  # bytes per message = MB per million
            baseline=dicts_folded,
            target="none (plain dicts beside ours)",
            higher_is_better=False,
            note=f"{basis}; after every message was read once: {read:,.0f} MB "
            f"(dicts {dicts_read:,.0f} MB)",
        ),
        Result(
            case=f"ESTIMATE: replica of 1 partition of {FLEET_MESSAGES:,} messages",
            unit="GB",
            ours=folded * messages / 1e9,
            baseline=dicts_folded * messages / 1e9,
            target="derived, not measured",
            higher_is_better=False,
            note=f"{messages:,} messages x the row above; after every message was read "
            f"once: {read * messages / 1e9:,.1f} GB",
        ),
    ]
