"""Run cases several times, take medians, print one table and optionally write JSON."""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
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


async def medians(runs: int, measure: Callable[[], Awaitable[Sequence[float]]]) -> list[float]:
    """Run ``measure`` ``runs`` times; return the median of each figure it gives."""
    samples = [await measure() for _ in range(runs)]
    return [statistics.median(figure) for figure in zip(*samples, strict=True)]


async def repeat(runs: int, measure: Callable[[], Awaitable[Sample]]) -> Sample:
    """Run ``measure`` ``runs`` times; return the medians of ours and of the baseline."""
    ours, baseline = await medians(runs, measure)
    return ours, baseline


async def in_subprocess(module: str, *args: str) -> str:
    """Run ``python -m module args`` and return what it printed: a heap that holds nothing else."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, *args, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"python -m {module} failed with code {process.returncode}")
    return out.decode()


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
            _figure(r.ours, r.unit),
            _figure(r.baseline, r.unit),
            _ratio_text(r.ratio),
            r.target,
            r.note,
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def _figure(value: float, unit: str) -> str:
    """``1,234.5 µs``, or a dash for a figure not measured (NaN: a peer not installed)."""
    return "-" if math.isnan(value) else f"{value:,.{_decimals(value)}f} {unit}"


def _ratio_text(ratio: float) -> str:
    """``1.52x``, or ``1/1,234x`` when ours is a small fraction of the baseline."""
    if math.isnan(ratio):
        return "-"
    if 0 < ratio < 0.01:
        return f"1/{1 / ratio:,.0f}x"
    return f"{ratio:.3g}x"


def _json_number(value: object) -> object:
    """NaN (not measured) as null: JSON has no NaN."""
    return None if isinstance(value, float) and math.isnan(value) else value


def _decimals(value: float) -> int:
    """Two decimals for small figures (seconds), one for large ones."""
    return 2 if abs(value) < 100 else 1


def write_json(results: list[Result], path: Path, machine: dict[str, str]) -> None:
    """Write the same table as JSON, with the machine it ran on."""
    document = {
        "machine": machine,
        "results": [
            {key: _json_number(value) for key, value in {**asdict(r), "ratio": r.ratio}.items()}
            for r in results
        ],
    }
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
