"""``convlog serve``: a projection of the stream kept running, reporting how far it got."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING, TypeVar

from eventlog import ConvlogError
from projections.cli.options import EXIT_OK, positive_seconds
from projections.cli.server import connect, kept_data_dir, nats_server

if TYPE_CHECKING:
    import argparse
    from collections.abc import Awaitable

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
    """Keep a projection of the stream running until SIGINT or SIGTERM, reporting progress."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        async with nats_server(target, kept_data_dir(target)) as url:
            store = await _until_stopped(stop, connect(target, url))
            if store is None:
                return EXIT_OK
            async with store:
                print(f"serving projection of stream {target.stream} at {url}", flush=True)
                while not stop.is_set():
                    health = await store.health_check()
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
        print("stopped", flush=True)
        return EXIT_OK
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def add_serve(commands: Commands) -> None:
    """Add ``convlog serve``."""
    parser = commands.add("serve", serve, "run a projection of the stream until interrupted")
    parser.add_argument(
        "--interval",
        type=positive_seconds,
        default=10.0,
        help="seconds between status lines (default: %(default)s)",
    )
