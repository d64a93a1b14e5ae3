"""``python -m benchmarks [--quick] [--json PATH]``: run the suite on an embedded nats-server."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks import service
from benchmarks.cases import sequential_write
from benchmarks.cluster import FAULTS, cluster_cases
from benchmarks.coldstart import coldstart_cases
from benchmarks.concurrent import concurrent_cases
from benchmarks.harness import Result, print_table, write_json
from benchmarks.memory import memory_cases
from benchmarks.peer import peer_cases
from benchmarks.queries import query_cases
from benchmarks.replay import replay_cases
from benchmarks.turns import turn_cases
from benchmarks.writers import writers_cases
from eventlog import EmbeddedNats

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


@dataclass(frozen=True)
class Scale:
    """How big a run is: ``quick`` shrinks counts and repetitions to a smoke test."""

    quick: bool

    @property
    def count(self) -> int:
        """Writes in the write and peer cases."""
        return 200 if self.quick else 2000

    @property
    def runs(self) -> int:
        """Repetitions whose median is reported."""
        return 3 if self.quick else 5


async def _write(scale: Scale) -> list[Result]:
    results = []
    for label, sync_always, partitions in (
        ("fsync always", True, None),
        ("fsync default", False, None),
        ("fsync always, 1 partition: no id claim", True, 1),
    ):
        async with EmbeddedNats(sync_always=sync_always) as url:
            results.append(
                await sequential_write(
                    url, label=label, count=scale.count, runs=scale.runs, partitions=partitions
                )
            )
    return results


async def _concurrent(scale: Scale) -> list[Result]:
    async with EmbeddedNats(sync_always=True) as url:
        return await concurrent_cases(
            url, writers=256, per_writer=20 if scale.quick else 100, runs=scale.runs
        )


async def _turns(scale: Scale) -> list[Result]:
    async with EmbeddedNats(sync_always=True) as url:
        return await turn_cases(url, turns=50 if scale.quick else 300, runs=scale.runs)


async def _writers(scale: Scale) -> list[Result]:
    """The server is kept by name: its pid is what the case reads its CPU time from."""
    server = EmbeddedNats(sync_always=True)
    async with server as url:
        return await writers_cases(
            url,
            server=server.pid,
            processes=(4, 1),
            tasks=64,
            per_task=10 if scale.quick else 50,
            runs=3,
        )


async def _replay(scale: Scale) -> list[Result]:
    results = []
    sizes = [(10_000, 1)] if scale.quick else [(100_000, 3), (1_000_000, 1)]
    for events, repeats in sizes:
        async with EmbeddedNats() as url:
            results += await replay_cases(url, count=events, runs=repeats)
    return results


async def _queries(scale: Scale) -> list[Result]:
    stored = [10_000, 30_000] if scale.quick else [10_000, 100_000, 1_000_000]
    return await query_cases(stored, calls=500 if scale.quick else 2000, runs=scale.runs)


async def _memory(scale: Scale) -> list[Result]:
    return await memory_cases(20_000 if scale.quick else 1_000_000)


async def _peer(scale: Scale) -> list[Result]:
    async with EmbeddedNats(sync_always=True) as url:
        return await peer_cases(
            url,
            single=scale.count,
            writers=256,
            per_writer=10 if scale.quick else 100,
            runs=scale.runs,
        )


async def _service(scale: Scale) -> list[Result]:
    async with EmbeddedNats(extra_config=service.server_config()) as url:
        return await service.service_cases(
            url,
            threads=64 if scale.quick else service.FULL_THREADS,
            calls=50 if scale.quick else 1000,
            runs=1 if scale.quick else 3,
        )


async def _coldstart(scale: Scale) -> list[Result]:
    async with EmbeddedNats() as url:
        return await coldstart_cases(
            url,
            count=20_000 if scale.quick else 1_000_000,
            runs=1 if scale.quick else 3,
            whole_runs=1,
            memory_count=20_000 if scale.quick else 1_000_000,
        )


async def _cluster(scale: Scale) -> list[Result]:
    return await cluster_cases(
        count=scale.count,
        writers=256,
        per_writer=10 if scale.quick else 100,
        runs=1 if scale.quick else scale.runs,
        fault_runs=1 if scale.quick else scale.runs,
        faults=FAULTS,
    )


_CASES: dict[str, Callable[[Scale], Awaitable[list[Result]]]] = {
    "write": _write,
    "concurrent": _concurrent,
    "turns": _turns,
    "writers": _writers,
    "replay": _replay,
    "queries": _queries,
    "memory": _memory,
    "peer": _peer,
    "service": _service,
    "coldstart": _coldstart,
    "cluster": _cluster,
}
"""The cases, in the order ``all`` runs them."""


async def run(*, quick: bool, case: str) -> list[Result]:
    """Run the cases asked for; ``quick`` shrinks counts and repetitions to a smoke test."""
    scale = Scale(quick)
    results = []
    for name, measure in _CASES.items():
        if case in ("all", name):
            results += await measure(scale)
    return results


def main() -> None:
    """Parse options, run, print the table, write JSON if asked."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts, for CI smoke runs")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    parser.add_argument(
        "--case",
        choices=("all", *_CASES),
        default="all",
        help=(
            "which cases: sequential writes, concurrent writes and read-your-writes, a turn "
            "of six writes in a transaction (turns), writer processes on one stream and "
            "where they limit (writers), rebuild "
            "and cold start (replay), queries by store size, memory per message, the "
            "eventsourcing peer, queries through convlog serve replicas (service), one "
            "partition's cold start and a replica's memory (coldstart), writes at R1 and R3 "
            "and write downtime when a leader fails (cluster), or all (default)"
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
