"""Peer: the ``eventsourcing`` library with its SQLite recorder, on the same workload as ours.

Both sides hold 1,000 conversations and write ~200-byte messages durably (we fsync every
append; SQLite fsyncs every commit). Three pairings, each measured in the same run:

- one event per write: our sequential ``create_message`` against one event per ``save``;
- batched writes: our 256 concurrent ``create_message`` calls (the store may group them)
  against 100 events per ``save``, the batching a caller of eventsourcing would do by hand;
- replay all: our ``rebuild`` of the stream against ``repository.get`` of every aggregate.
"""

from __future__ import annotations

import importlib.util

from benchmarks.cases import fresh_store
from benchmarks.concurrent import THREADS, create_threads, store_writes
from benchmarks.harness import Result, medians
from projections import rebuild

_PER_SAVE = 100


async def _ours(url: str, single: int, writers: int, per_writer: int) -> list[float]:
    """Events/s: sequential writes, concurrent writes, then a rebuild of what they wrote."""
    store = await fresh_store(url)
    try:
        threads = await create_threads(store, THREADS)
        sequential = await store_writes(store, threads, writers=1, per_writer=single)
        concurrent = await store_writes(store, threads, writers=writers, per_writer=per_writer)
        rebuilt = await rebuild(store.log)
    finally:
        await store.close()
    return [sequential.rate, concurrent.rate, rebuilt.rate]


def _theirs(single: int, batched: int) -> list[float]:
    """The peer's three figures, or NaNs when eventsourcing is not installed."""
    if importlib.util.find_spec("eventsourcing") is None:
        return [float("nan")] * 3
    from benchmarks import es_sqlite  # noqa: PLC0415 - an optional dependency

    return list(es_sqlite.run(THREADS, single, batched, _PER_SAVE))


async def peer_cases(
    url: str, *, single: int, writers: int, per_writer: int, runs: int
) -> list[Result]:
    """Ours beside eventsourcing + SQLite: events/s for the three pairings."""
    batched = writers * per_writer

    async def measure() -> list[float]:
        return [*await _ours(url, single, writers, per_writer), *_theirs(single, batched)]

    figures = await medians(runs, measure)
    installed = importlib.util.find_spec("eventsourcing") is not None
    missing = "" if installed else "eventsourcing not installed (pip install -e .[bench]); "
    pairings = (
        ("peer: one event per write", f"{single:,} sequential create_message vs 1 per save"),
        (
            "peer: batched writes",
            f"{batched:,} writes: {writers} concurrent create_message vs {_PER_SAVE} per save",
        ),
        ("peer: replay all", "our rebuild of that stream vs repository.get of every aggregate"),
    )
    return [
        Result(
            case=case,
            unit="events/s",
            ours=figures[index],
            baseline=figures[index + 3],
            target="none (eventsourcing 9 + SQLite beside ours)",
            higher_is_better=True,
            note=missing + note,
        )
        for index, (case, note) in enumerate(pairings)
    ]
