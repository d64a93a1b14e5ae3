"""``python -m benchmarks [--quick] [--json PATH]``: run the suite on an embedded nats-server."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
from pathlib import Path

from benchmarks.cases import sequential_write
from benchmarks.harness import Result, print_table, write_json
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
    if case in ("all", "replay"):
        sizes = [(10_000, 1)] if quick else [(100_000, 3), (1_000_000, 1)]
        for events, repeats in sizes:
            async with EmbeddedNats() as url:
                results += await replay_cases(url, count=events, runs=repeats)
    return results


def main() -> None:
    """Parse options, run, print the table, write JSON if asked."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts, for CI smoke runs")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    parser.add_argument(
        "--case",
        choices=("all", "write", "replay"),
        default="all",
        help="which cases: writes, rebuild and cold start (replay), or all (default)",
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
