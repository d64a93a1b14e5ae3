"""Where a command's log lives: the servers it names, or the embedded one on a data dir.

Without servers a command uses the nats-server kept in ``--data-dir``: the one already
running there (another command started it), or one it starts, supervises and stops. It
also turns SIGINT and SIGTERM into a cancellation, so that every ``finally`` on the way
out runs and the server it started is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol, TypeVar

import platformdirs

from eventlog import EmbeddedNats, EmbeddedServerError, EventLog, StreamSettings
from eventlog.stream import DEFAULT_PARTITIONS
from projections.service.protocol import ServiceSubjects
from projections.store import JetStreamMessageStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine

    from projections.cli.options import Target

__all__ = [
    "LINGER",
    "connect",
    "kept_data_dir",
    "log_on",
    "nats_server",
    "open_log",
    "store_on",
    "supervised",
    "until_signalled",
]

logger = logging.getLogger(__name__)

LINGER: Final = 10.0
"""Seconds a command that started the embedded server waits, at exit, for other commands'
clients on it to finish."""

_CANCEL_AGAIN: Final = 2 * LINGER
"""Seconds after which a signalled command still running is cancelled once more."""


def kept_data_dir(target: Target) -> Path:
    """Where an embedded server keeps the log between runs: --data-dir, or the user data dir."""
    return target.data_dir or Path(platformdirs.user_data_dir("convlog")) / "nats"


@contextlib.asynccontextmanager
async def nats_server(target: Target, data_dir: Path | None) -> AsyncIterator[str]:
    """Yield the target's URL if it has one, else the URL of the server kept in ``data_dir``.

    That is the data dir's running server if another command started one (never a second
    server on the same store), else one started here, kept running while the block runs
    and stopped after it. Without ``data_dir`` the store is a temporary directory.
    """
    if target.nats_url:
        yield target.nats_url
        return
    embedded = EmbeddedNats(
        data_dir=data_dir,
        max_payload=target.max_payload,
        linger=LINGER,
        extra_config=ServiceSubjects(target.stream, DEFAULT_PARTITIONS).server_config(),
    )
    async with embedded as url, supervised(embedded):
        if not embedded.owner:
            logger.info("attached to the nats-server (pid %s) on %s", embedded.pid, data_dir)
        yield url


@contextlib.asynccontextmanager
async def supervised(embedded: EmbeddedNats) -> AsyncIterator[None]:
    """Keep the embedded server running while the block runs; fail the block if it cannot.

    If the server keeps dying, the block is cancelled and the supervisor's
    :class:`EmbeddedServerError` raised in its place.
    """
    block = asyncio.current_task()
    if block is None:  # pragma: no cover - always inside a task under asyncio.run
        raise RuntimeError("supervised() needs a running task")

    async def supervise() -> None:
        try:
            await embedded.keep_running(lambda said: print(f"convlog: {said}", file=sys.stderr))
        except EmbeddedServerError:
            block.cancel()
            raise

    supervisor = asyncio.create_task(supervise())
    try:
        yield
    except asyncio.CancelledError:
        failure = (
            supervisor.exception() if supervisor.done() and not supervisor.cancelled() else None
        )
        if failure is None:
            raise
        block.uncancel()
        raise failure from None
    finally:
        supervisor.cancel()
        with contextlib.suppress(asyncio.CancelledError, EmbeddedServerError):
            await supervisor


def _servers(url: str) -> list[str]:
    return url.split(",")


async def connect(target: Target, url: str) -> JetStreamMessageStore:
    """Connect a store to the target's stream, its views caught up with the log."""
    return await JetStreamMessageStore.connect(
        _servers(url),
        stream=target.stream,
        subject_prefix=target.subject_prefix,
        replicas=target.replicas,
        options=target.options,
    )


async def open_log(target: Target, url: str) -> EventLog:
    """Connect to the target's stream as a bare log, without views, to read or append."""
    return await EventLog.connect(
        _servers(url),
        stream=StreamSettings(
            name=target.stream, subject_prefix=target.subject_prefix, replicas=target.replicas
        ),
        options=target.options,
    )


class _Closing(Protocol):
    async def close(self) -> None: ...


_C = TypeVar("_C", bound=_Closing)


@contextlib.asynccontextmanager
async def _opened(
    target: Target, opener: Callable[[Target, str], Awaitable[_C]]
) -> AsyncIterator[_C]:
    """What ``opener`` opens on the target's server (embedded if need be), closed after."""
    async with nats_server(target, kept_data_dir(target)) as url:
        opened = await opener(target, url)
        try:
            yield opened
        finally:
            await opened.close()


def store_on(target: Target) -> contextlib.AbstractAsyncContextManager[JetStreamMessageStore]:
    """A store on the target's log (kept in the data dir without a URL), closed after."""
    return _opened(target, connect)


def log_on(target: Target) -> contextlib.AbstractAsyncContextManager[EventLog]:
    """The target's log without views (kept in the data dir without a URL), closed after."""
    return _opened(target, open_log)


async def until_signalled(command: Coroutine[object, object, int]) -> int:
    """Run ``command``; on SIGINT or SIGTERM cancel it, and return ``128 + signal``.

    Cancelling runs every ``finally`` on the way out, so the embedded server is stopped and
    its data dir freed; SIGTERM's default action would end Python at once instead. On
    Python 3.11 ``asyncio.wait_for`` can swallow a cancellation that lands just as its
    timeout fires (fixed in 3.12), so a command still running is cancelled again every
    few seconds. A command that handles the signals itself (``serve``) replaces these
    handlers while it runs.
    """
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    received: list[signal.Signals] = []

    def cancel_until_done() -> None:
        if task is not None and not task.done():
            task.cancel()
            loop.call_later(_CANCEL_AGAIN, cancel_until_done)

    def on_signal(signum: signal.Signals) -> None:
        received.append(signum)
        cancel_until_done()

    handled = (signal.SIGINT, signal.SIGTERM)
    for signum in handled:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        return await command
    except asyncio.CancelledError:
        if received:
            return 128 + received[0]
        raise
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
