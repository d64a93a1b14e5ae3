"""Queries do not grow with the store: each query's p50 at several store sizes.

Ours are the MessageStore queries every store answers (:class:`projections.ViewQueries`),
over views folded from :mod:`benchmarks.workload`'s records, without NATS: how the views
were filled does not change what a query costs. The baseline is the seed's design
(:mod:`benchmarks.naive`), holding the very same model objects.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from benchmarks import workload
from benchmarks.harness import Result, Sample, now, percentile, repeat
from benchmarks.naive import NaiveStore
from projections.fold import Projection
from projections.queries import ViewQueries

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from eventlog import Message, Thread
    from projections.views import Views

_NAIVE_WORK = 2_000_000
"""Messages the baseline may scan per run and query: at 1,000,000, two calls (but >= 3)."""


class _Reader(Protocol):
    """The queries measured, as both stores answer them."""

    async def get_message(self, message_id: str) -> Message | None: ...
    async def list_threads(
        self, tenant_id: str, user_id: str, limit: int, offset: int
    ) -> list[Thread]: ...
    async def list_messages(self, thread_id: str) -> list[Message]: ...
    async def get_messages_by_execution(self, execution_id: str) -> list[Message]: ...
    async def count_messages(self, thread_id: str) -> int: ...


@dataclass(frozen=True)
class _Query:
    """A query, and how to pick a random target among ``size`` messages."""

    name: str
    target: Callable[[random.Random, int], str]
    call: Callable[[_Reader, str], Awaitable[object]]
    target_text: str = "p50 flat across sizes (within 1.5x)"


def _thread(rng: random.Random, size: int) -> str:
    return workload.thread_id(rng.randrange(size // workload.PER_THREAD))


_QUERIES = (
    _Query(
        "get_message",
        lambda rng, size: workload.message_id(rng.randrange(size)),
        lambda store, target: store.get_message(target),
    ),
    _Query(
        f"list_messages ({workload.PER_THREAD})",
        _thread,
        lambda store, target: store.list_messages(target),
        "<= 100 µs, flat within 1.5x",
    ),
    _Query(
        "list_threads (page of 20)",
        lambda rng, size: workload.user_id(
            rng.randrange(size // workload.PER_THREAD // workload.THREADS_PER_USER)
        ),
        lambda store, target: store.list_threads(workload.TENANT, target, 20, 0),
    ),
    _Query(
        "get_messages_by_execution",
        lambda rng, size: workload.execution_id(rng.randrange(size // workload.PER_EXECUTION)),
        lambda store, target: store.get_messages_by_execution(target),
    ),
    _Query("count_messages", _thread, lambda store, target: store.count_messages(target)),
)


async def _p50(store: _Reader, query: _Query, targets: list[str]) -> float:
    """Median µs of one awaited call, over ``targets``."""
    times = []
    for target in targets:
        start = now()
        await query.call(store, target)
        times.append(now() - start)
    return percentile(times, 0.5) * 1e6


async def _compare(
    ours: _Reader,
    naive: _Reader,
    query: _Query,
    *,
    size: int,
    rng: random.Random,
    calls: int,
    naive_calls: int,
    runs: int,
) -> Sample:
    """Median over ``runs`` of each store's p50, on the same random targets."""

    async def measure() -> Sample:
        targets = [query.target(rng, size) for _ in range(calls)]
        return await _p50(ours, query, targets), await _p50(naive, query, targets[:naive_calls])

    return await repeat(runs, measure)


def _naive_copy(views: Views, size: int) -> NaiveStore:
    """The seed's two dicts, holding the very objects our views hold."""
    naive = NaiveStore()
    for index in range(size // workload.PER_THREAD):
        thread = views.thread(workload.thread_id(index))
        if thread is None:
            raise RuntimeError(f"thread {index} is missing from the views")
        naive.threads[thread.id] = thread
    for index in range(size):
        message = views.message(workload.message_id(index))
        if message is None:
            raise RuntimeError(f"message {index} is missing from the views")
        naive.messages[message.id] = message
    return naive


async def query_cases(sizes: list[int], *, calls: int, runs: int) -> list[Result]:
    """Each query's p50 at each size, ours beside the seed's scan, same targets for both."""
    rng = random.Random(7)
    p50s: dict[str, list[Sample]] = {query.name: [] for query in _QUERIES}
    for size in sizes:
        started = now()
        projection = Projection()
        workload.fill(projection, size)
        ours = ViewQueries(projection)
        naive = _naive_copy(projection.views, size)
        print(f"  ({size:,} messages folded in {now() - started:.1f}s)", flush=True)
        naive_calls = max(3, min(calls, _NAIVE_WORK // size))
        for query in _QUERIES:
            sample = await _compare(
                ours,
                naive,
                query,
                size=size,
                rng=rng,
                calls=calls,
                naive_calls=naive_calls,
                runs=runs,
            )
            p50s[query.name].append(sample)
        del projection, ours, naive
    lookups = [naive for _, naive in p50s[_QUERIES[0].name]]  # the seed's get: a bare dict.get
    return [
        Result(
            case=f"{query.name} p50 ({size:,} msgs)",
            unit="µs",
            ours=ours,
            baseline=naive,
            target=query.target_text,
            higher_is_better=False,
            note=_growth(index, sizes, [s[0] for s in p50s[query.name]], lookups),
        )
        for query in _QUERIES
        for index, (size, (ours, naive)) in enumerate(zip(sizes, p50s[query.name], strict=True))
    ]


def _growth(index: int, sizes: list[int], p50s: list[float], lookups: list[float]) -> str:
    """How much slower than at the smallest size; a bare dict lookup's growth beside it.

    The lookup shows what the memory hierarchy alone adds: a small store fits in the CPU's
    caches, a large one does not, so even one dict.get slows down as the store grows.
    """
    if index == 0:
        return ""
    return (
        f"{p50s[index] / p50s[0]:.2f}x its p50 at {sizes[0]:,} "
        f"(a bare dict.get: {lookups[index] / lookups[0]:.2f}x)"
    )
