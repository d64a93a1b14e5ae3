"""``convlog serve``: a replica of the query service, folding partitions and answering them."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import TYPE_CHECKING, TypeVar

from eventlog import ConvlogError
from projections.cli.options import EXIT_OK, positive_seconds
from projections.cli.server import kept_data_dir, nats_server, open_log
from projections.service.protocol import SERVICE_NAME
from projections.service.replica import Replica, parse_partitions
from projections.snapshot import SnapshotPolicy

if TYPE_CHECKING:
    import argparse
    from collections.abc import Awaitable

    from eventlog import EventLog
    from projections.cli.options import Commands, Target

__all__ = ["add_serve"]

_T = TypeVar("_T")


async def _until_stopped(stop: asyncio.Event, work: Awaitable[_T]) -> _T | None:
    """Await ``work``, or cancel it and return None once ``stop`` is set."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return None if task.cancelled() else task.result()


async def serve(target: Target, args: argparse.Namespace) -> int:
    """Fold and serve partitions of the stream until SIGINT or SIGTERM, reporting progress."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        async with nats_server(target, kept_data_dir(target)) as url:
            log = await _until_stopped(stop, open_log(target, url))
            if log is None:
                return EXIT_OK
            try:
                await _serve(log, args, stop, url)
            finally:
                await log.close()
        print("stopped", flush=True)
        return EXIT_OK
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


async def _serve(log: EventLog, args: argparse.Namespace, stop: asyncio.Event, url: str) -> None:
    count = log.subjects.partitions
    chosen = parse_partitions(args.partitions, count) if args.partitions else list(range(count))
    every = args.snapshot_every
    policy = SnapshotPolicy(every=every) if every else None
    replica = await _until_stopped(stop, Replica.start(log, chosen, snapshots=policy))
    if replica is None:
        return
    try:
        print(f"serving projection of stream {log.stream.name} at {url}", flush=True)
        print(
            f"partitions {_spans(chosen)} of {count}: service {SERVICE_NAME!r} on "
            f"{replica.subjects.root}.<partition>.<endpoint>",
            flush=True,
        )
        if not await replica.routes_by_thread():
            print(
                "convlog: this server does not route thread subjects to partitions; clients "
                "must name the partition, or add to the server config:\n"
                + replica.subjects.server_config(),
                file=sys.stderr,
                flush=True,
            )
        while not stop.is_set():
            health = await replica.health()
            print(
                f"applied sequence {health.applied_sequence}, health {health.status}, "
                f"{'connected' if health.connected else 'disconnected'}, "
                f"skipped {len(health.skipped)}",
                flush=True,
            )
            if health.status == "failed":
                raise ConvlogError(health.detail)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=args.interval)
    finally:
        await replica.close()


def _spans(numbers: list[int]) -> str:
    """``[0, 1, 2, 5]`` as ``0-2,5``."""
    spans: list[list[int]] = []
    for number in numbers:
        if spans and spans[-1][1] == number - 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def add_serve(commands: Commands) -> None:
    """Add ``convlog serve``."""
    parser = commands.add(
        "serve", serve, "fold partitions of the stream and answer queries on them over NATS"
    )
    parser.add_argument(
        "--partitions",
        metavar="LIST",
        help="the partitions to fold and serve, e.g. 0-15,32 (default: all)",
    )
    parser.add_argument(
        "--snapshot-every",
        metavar="EVENTS",
        type=int,
        help="write a snapshot of each partition after this many new events (default: none)",
    )
    parser.add_argument(
        "--interval",
        type=positive_seconds,
        default=10.0,
        help="seconds between status lines (default: %(default)s)",
    )
