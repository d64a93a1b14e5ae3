"""Memory: resident bytes the views take per message, beside plain dicts of the same events.

Each side folds the same records (:mod:`benchmarks.workload`, ~200 bytes of text a message)
in a fresh Python process, so the growth of its resident set is the views and nothing else:
RSS is read from ``/proc/self/statm`` after a full collection, before and after the fold,
and again after every message was read once (our views then keep the models read last, at
most :data:`~projections.views.CACHED_MODELS`). What that bound costs is a read of a model
no longer cached, measured beside the same read warm in another fresh process.
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks import workload
from benchmarks.harness import Result, in_subprocess, now
from projections._gc import paused_gc
from projections.fold import Projection
from projections.views import CACHED_MODELS

if TYPE_CHECKING:
    from collections.abc import Callable


def _rss() -> int:
    """Resident bytes of this process now, after a full collection (Linux)."""
    gc.collect()
    pages = int(Path("/proc/self/statm").read_text(encoding="ascii").split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def _ours(count: int) -> Callable[[str], object]:
    """Fold ``count`` messages into our views; return how a query reads one by id."""
    projection = Projection()
    workload.fill(projection, count)
    return projection.views.message


def _dicts(count: int) -> Callable[[str], object]:
    """Fold ``count`` messages into plain dicts; return how to read one by id."""
    views = workload.RawViews()
    with paused_gc(freeze=True):
        for record in workload.records(count):
            views.apply(record.data)
    return views.messages.get


_FOLDS = {"ours": _ours, "dicts": _dicts}


def measure(how: str, count: int) -> tuple[float, float]:
    """Resident bytes per message after folding ``count`` the ``how`` way, and after reading.

    The second figure is after every message was read once by id: a store that keeps
    what a read made grows with use, ours up to its bound of models kept.
    """
    _FOLDS[how](100)  # imports, codec and validators: allocated before the first reading
    before = _rss()
    read = _FOLDS[how](count)
    folded = _rss()
    for index in range(count):
        read(workload.message_id(index))
    return (folded - before) / count, (_rss() - before) / count


READ_THREADS = 200
"""Threads whose first and second reads are timed: 10,000 messages, all kept warm."""


def read_costs(threads: int) -> tuple[float, float]:
    """µs a message of ``list_messages`` on a 50-message thread: cold, then warm.

    Cold is each thread's first read, which makes every model (as a read of a model the
    cache dropped does); warm is the second, which finds them cached. Medians over threads.
    """
    projection = Projection()
    workload.fill(projection, threads * workload.PER_THREAD)
    views = projection.views

    def per_message() -> float:
        times = []
        for index in range(threads):
            thread_id = workload.thread_id(index)
            start = now()
            views.list_messages(thread_id, include_deleted=False)
            times.append(now() - start)
        return statistics.median(times) / workload.PER_THREAD * 1e6

    return per_message(), per_message()


async def bytes_per_message(count: int) -> dict[str, list[float]]:
    """Resident bytes per message, as folded and after every message was read once.

    Text included, ``{"ours": [...], "dicts": [...]}``, each side in a fresh process.
    """
    return {
        how: [
            float(figure)
            for figure in (await in_subprocess("benchmarks.memory", how, str(count))).split()
        ]
        for how in _FOLDS
    }


async def memory_cases(count: int) -> list[Result]:
    """Bytes per message beyond its text, folded then all read: ours and plain dicts.

    And what a cold read costs beside a warm one: the price of keeping models bounded.
    """
    runs = await bytes_per_message(count)
    reads = await in_subprocess("benchmarks.memory", "reads", str(READ_THREADS))
    cold, warm = map(float, reads.split())
    text, per_thread = workload.TEXT_BYTES, workload.PER_THREAD
    memory = [
        Result(
            case=f"memory per message, {when} ({count:,} msgs)",
            unit="B",
            ours=runs["ours"][index] - text,
            baseline=runs["dicts"][index] - text,
            target="<= 1,024 B",
            higher_is_better=False,
            note=(
                f"RSS growth / message ({runs['ours'][index]:,.0f} B ours, "
                f"{runs['dicts'][index]:,.0f} B dicts) minus the {text} B of text, counted "
                f"once; threads (1 per {workload.PER_THREAD}) and indexes included"
            ),
        )
        for index, when in enumerate(
            ("as folded", f"every message read once, <= {CACHED_MODELS:,} models kept")
        )
    ]
    return [
        *memory,
        Result(
            case=f"list_messages of a {per_thread}-message thread, cold vs warm, per message",
            unit="µs",
            ours=cold,
            baseline=warm,
            target="none: warm is the floor",
            higher_is_better=False,
            note=(
                f"baseline: the same read warm; median of {READ_THREADS} threads read first "
                f"(every model made) then again (every model cached): a cold thread takes "
                f"{cold * per_thread:,.0f} µs, a warm one {warm * per_thread:,.0f} µs"
            ),
        ),
    ]


if __name__ == "__main__":  # python -m benchmarks.memory ours|dicts COUNT, or reads THREADS
    how, number = sys.argv[1], int(sys.argv[2])
    print(*(read_costs(number) if how == "reads" else measure(how, number)))
