"""Memory: resident bytes the views take per message, beside plain dicts of the same events.

Each side folds the same records (:mod:`benchmarks.workload`, ~200 bytes of text a message)
in a fresh Python process, so the growth of its resident set is the views and nothing else:
RSS is read from ``/proc/self/statm`` after a full collection, before and after the fold.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks import workload
from benchmarks.harness import Result, in_subprocess
from projections._gc import paused_gc
from projections.fold import Projection

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
    what a read made (as our views keep a message's model) grows with use.
    """
    _FOLDS[how](100)  # imports, codec and validators: allocated before the first reading
    before = _rss()
    read = _FOLDS[how](count)
    folded = _rss()
    for index in range(count):
        read(workload.message_id(index))
    return (folded - before) / count, (_rss() - before) / count


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
    """Bytes per message beyond its text, folded then all read: ours and plain dicts."""
    runs = await bytes_per_message(count)
    text = workload.TEXT_BYTES
    return [
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
        for index, when in enumerate(("as folded", "every message read once"))
    ]


if __name__ == "__main__":  # python -m benchmarks.memory ours|dicts COUNT
    print(*measure(sys.argv[1], int(sys.argv[2])))
