"""Run cases several times, take medians, print one table and optionally write JSON."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path


@dataclass(frozen=True)
class Result:
    """One case: our median next to the baseline's median, from the same run."""

    case: str
    unit: str
    ours: float
    baseline: float
    target: str
    higher_is_better: bool
    note: str = ""
    """What else the run showed, e.g. a snapshot's size."""

    @property
    def ratio(self) -> float:
        """Ours / baseline (a rate) or baseline / ours... always 'ours relative to baseline'."""
        return self.ours / self.baseline if self.baseline else float("nan")


Sample = tuple[float, float]
"""(ours, baseline) measured back to back in one repetition."""


async def repeat(runs: int, measure: Callable[[], Awaitable[Sample]]) -> Sample:
    """Run ``measure`` ``runs`` times; return the medians of ours and of the baseline."""
    samples = [await measure() for _ in range(runs)]
    return (
        statistics.median(s[0] for s in samples),
        statistics.median(s[1] for s in samples),
    )


def percentile(values: list[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` fall."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def now() -> float:
    """A monotonic clock in seconds."""
    return time.perf_counter()


def print_table(results: list[Result]) -> None:
    """Print case, ours, baseline, ratio and target as one aligned table."""
    header = ("case", "ours", "baseline", "ratio", "target", "note")
    rows = [
        (
            r.case,
            f"{r.ours:,.{_decimals(r.ours)}f} {r.unit}",
            f"{r.baseline:,.{_decimals(r.baseline)}f} {r.unit}",
            f"{r.ratio:.2f}x",
            r.target,
            r.note,
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def _decimals(value: float) -> int:
    """Two decimals for small figures (seconds), one for large ones."""
    return 2 if abs(value) < 100 else 1


def write_json(results: list[Result], path: Path, machine: dict[str, str]) -> None:
    """Write the same table as JSON, with the machine it ran on."""
    document = {
        "machine": machine,
        "results": [{**asdict(r), "ratio": r.ratio} for r in results],
    }
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
