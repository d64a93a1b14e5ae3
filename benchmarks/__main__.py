"""``python -m benchmarks [--quick] [--json PATH]``: run the suite on an embedded nats-server."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
from pathlib import Path

from benchmarks.cases import sequential_write
from benchmarks.concurrent import concurrent_cases
from benchmarks.harness import Result, print_table, write_json
from benchmarks.memory import memory_cases
from benchmarks.peer import peer_cases
from benchmarks.queries import query_cases
from benchmarks.replay import replay_cases
from eventlog import EmbeddedNats


async def run(*, quick: bool, case: str) -> list[Result]:
    """Run the cases asked for; ``quick`` shrinks counts and repetitions to a smoke test."""
    count, runs = (200, 3) if quick else (2000, 5)
    results = []
    if case in ("all", "write"):
        for label, sync_always in (("fsync always", True), ("fsync default", False)):
            async with EmbeddedNats(sync_always=sync_always) as url:
                results.append(await sequential_write(url, label=label, count=count, runs=runs))
    if case in ("all", "concurrent"):
        async with EmbeddedNats(sync_always=True) as url:
            results += await concurrent_cases(
                url, writers=256, per_writer=20 if quick else 100, runs=runs
            )
    if case in ("all", "replay"):
        sizes = [(10_000, 1)] if quick else [(100_000, 3), (1_000_000, 1)]
        for events, repeats in sizes:
            async with EmbeddedNats() as url:
                results += await replay_cases(url, count=events, runs=repeats)
    if case in ("all", "queries"):
        stored = [10_000, 30_000] if quick else [10_000, 100_000, 1_000_000]
        results += await query_cases(stored, calls=500 if quick else 2000, runs=runs)
    if case in ("all", "memory"):
        results += await memory_cases(20_000 if quick else 1_000_000)
    if case in ("all", "peer"):
        async with EmbeddedNats(sync_always=True) as url:
            results += await peer_cases(
                url, single=count, writers=256, per_writer=10 if quick else 100, runs=runs
            )
    return results


def main() -> None:
    """Parse options, run, print the table, write JSON if asked."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts, for CI smoke runs")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    parser.add_argument(
        "--case",
        choices=("all", "write", "concurrent", "replay", "queries", "memory", "peer"),
        default="all",
        help=(
            "which cases: sequential writes, concurrent writes and read-your-writes, rebuild "
            "and cold start (replay), queries by store size, memory per message, the "
            "eventsourcing peer, or all (default)"
        ),
    )
    options = parser.parse_args()
    results = asyncio.run(run(quick=options.quick, case=options.case))
    print_table(results)
    if options.json:
        machine = {
            "cpus": str(os.cpu_count()),
            "python": platform.python_version(),
            "platform": platform.platform(),
        }
        write_json(results, options.json, machine)


main()
