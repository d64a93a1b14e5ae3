"""Each nats-py failure raises the same convlog error in every operation (issue 11).

Every cell of this table runs on a real nats-server:

```
                      append                 read       subscribe  object store
permission refused    PermissionDeniedError  (same)     (same)     (same)
no responders         UnavailableError       (same)     (same)     (same)
timeout               UnavailableError       (same)     (same)     (same)
connection closed     UnavailableError       (same)     (same)     (same)
buffer full           UnavailableError       (same)     (same)     (same)
```

Permission refused: a tenant's user (TenantPermissions) reaching for everything. No
responders: a server with JetStream disabled. Timeout: the server SIGSTOPped. Connection
closed: the log closed first. Buffer full: the server killed and the client's reconnect
buffer filled to its limit. The object store operation opens the snapshot bucket
(eventlog/blobs.py) and stores a blob.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import DEFAULT_PENDING_SIZE

from eventlog import (
    ConnectOptions,
    ConvlogError,
    EventLog,
    PermissionDeniedError,
    StreamSettings,
    TenantPermissions,
    Thread,
    ThreadCreated,
    UnavailableError,
    ValidationError,
)
from eventlog._connect import open_client
from eventlog.blobs import BlobBucket
from eventlog.connection import ConnectionState
from eventlog.events import new_event_id

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from conftest import ServerFactory

    Operation = Callable[[EventLog], Awaitable[None]]
    Failure = Callable[
        [ServerFactory, str, StreamSettings], contextlib.AbstractAsyncContextManager[EventLog]
    ]

WRITE_TIMEOUT = 0.5


# --- the operations -------------------------------------------------------------------------


async def _append(log: EventLog) -> None:
    thread = Thread.new("globex", "bob")
    await log.append(
        ThreadCreated(
            event_id=new_event_id(),
            occurred_at=thread.created_at,
            tenant_id=thread.tenant_id,
            thread_id=thread.id,
            thread=thread,
        )
    )


async def _read(log: EventLog) -> None:
    async with contextlib.aclosing(log.read()) as records:
        await anext(records, None)


async def _subscribe(log: EventLog) -> None:
    async with log.subscribe(start="beginning", follow=False):
        pass


async def _store_blob(log: EventLog) -> None:
    bucket = await BlobBucket.open(log, "snapshots", create=True)
    assert bucket is not None
    await bucket.put("blob", b"data")


OPERATIONS = {
    "append": _append,
    "read": _read,
    "subscribe": _subscribe,
    "object store": _store_blob,
}


# --- the failures ---------------------------------------------------------------------------


def _options(**credentials: str) -> ConnectOptions:
    return ConnectOptions(write_timeout=WRITE_TIMEOUT, **credentials)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def _permission_refused(
    start_server: ServerFactory, _: str, stream: StreamSettings
) -> AsyncIterator[EventLog]:
    acme = TenantPermissions.for_tenant("acme", stream=stream.name)
    config = (
        'authorization { users: [ { user: "admin", password: "a" }\n'
        f'{{ user: "acme", password: "b"\n{acme.server_config()} }} ] }}'
    )
    server = await start_server(extra_config=config)
    admin = await EventLog.connect(
        server.url,
        stream=stream,
        options=_options(user="admin", password="a"),  # noqa: S106
    )
    await admin.close()  # the operator creates the stream; the tenant may not
    log = await EventLog.connect(
        server.url,
        stream=stream,
        options=_options(user="acme", password="b", inbox_prefix=acme.inbox_prefix),  # noqa: S106
    )
    try:
        yield log
    finally:
        await log.close()


@contextlib.asynccontextmanager
async def _no_responders(
    start_server: ServerFactory, _: str, stream: StreamSettings
) -> AsyncIterator[EventLog]:
    server = await start_server(extra_config="jetstream: disabled")
    options, connection = _options(), ConnectionState()
    nc = await open_client([server.url], server.url, options, connection)
    await connection.on_connected()
    log = EventLog(
        nc,
        url=server.url,
        stream=stream,
        options=options,
        connection=connection,
        supports_atomic=False,
    )  # built by hand: connect() would refuse this server before any operation
    try:
        yield log
    finally:
        await log.close()


@contextlib.asynccontextmanager
async def _timeout(
    start_server: ServerFactory, _: str, stream: StreamSettings
) -> AsyncIterator[EventLog]:
    server = await start_server()
    log = await EventLog.connect(server.url, stream=stream, options=_options())
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)
    await _stopped(server.pid)
    try:
        yield log
    finally:
        os.kill(server.pid, signal.SIGCONT)
        await log.close()


async def _stopped(pid: int) -> None:
    """Return once every thread of ``pid`` is stopped: SIGSTOP reaches each thread in turn,
    and a thread still running on the other core could answer one more request."""
    deadline = time.monotonic() + 30
    while not all(
        stat.read_text(encoding="ascii").rsplit(")", 1)[1].split()[0] in "Tt"
        for stat in Path(f"/proc/{pid}/task").glob("*/stat")  # noqa: ASYNC240 - /proc, instant
    ):
        assert time.monotonic() < deadline, f"nats-server {pid} did not stop"
        await asyncio.sleep(0.01)  # another process's state: nothing to await


@contextlib.asynccontextmanager
async def _connection_closed(
    _: ServerFactory, nats_url: str, stream: StreamSettings
) -> AsyncIterator[EventLog]:
    log = await EventLog.connect(nats_url, stream=stream, options=_options())
    await log.close()
    yield log


@contextlib.asynccontextmanager
async def _buffer_full(
    start_server: ServerFactory, _: str, stream: StreamSettings
) -> AsyncIterator[EventLog]:
    server = await start_server()
    log = await EventLog.connect(server.url, stream=stream, options=_options())
    try:
        await server.kill()
        await log.connection.wait_disconnected()
        nc = log._nc
        # Publishes fit while payload + pending <= the limit; the protocol line then tips
        # the buffer over it, so that every later publish, even of nothing, is refused.
        while room := DEFAULT_PENDING_SIZE - nc.pending_data_size:
            if room < 0:
                break
            await nc.publish("junk", b"x" * min(room, nc.max_payload))
        yield log
    finally:
        await log.close()


FAILURES: dict[str, tuple[Failure, type[ConvlogError], tuple[type[Exception], ...]]] = {
    "permission refused": (_permission_refused, PermissionDeniedError, (nats.errors.TimeoutError,)),
    "no responders": (
        _no_responders,
        UnavailableError,
        (nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError),
    ),
    "timeout": (_timeout, UnavailableError, (nats.errors.TimeoutError,)),
    "connection closed": (
        _connection_closed,
        UnavailableError,
        (nats.errors.ConnectionClosedError,),
    ),
    "buffer full": (_buffer_full, UnavailableError, (nats.errors.OutboundBufferLimitError,)),
}
"""Each failure: how to bring it about, the convlog error it raises, and nats-py's cause."""


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("failure", FAILURES)
async def test_a_failure_raises_the_same_error_in_every_operation(
    start_server: ServerFactory,
    nats_url: str,
    stream_settings: StreamSettings,
    failure: str,
    operation: str,
) -> None:
    """The cell (failure, operation) of the table: its convlog error, chained to nats-py's."""
    setup, expected, cause = FAILURES[failure]
    async with setup(start_server, nats_url, stream_settings) as log:
        with pytest.raises(ConvlogError) as caught:
            await OPERATIONS[operation](log)
    assert type(caught.value) is expected, caught.value
    assert isinstance(caught.value.__cause__, cause)
    if expected is UnavailableError:
        assert caught.value.url == log.url  # type: ignore[attr-defined]


# --- JetStream API errors, by code --------------------------------------------------------------


async def test_a_bad_start_is_a_validation_error(event_log: EventLog) -> None:
    """Both kinds of subscription refuse a start that is no position, before asking the server."""
    with pytest.raises(ValidationError, match=r"^start must be 'new', 'beginning', a sequence"):
        await event_log.subscribe(start=-1)
    with pytest.raises(ValidationError, match=r"^start must be"):
        await event_log.subscribe_durable("worker", start="yesterday")  # type: ignore[arg-type]


async def test_a_request_the_server_calls_bad_is_a_validation_error(event_log: EventLog) -> None:
    """A JetStream API 400 (here: a negative ack wait) is a ValidationError with its reason."""
    with pytest.raises(
        ValidationError,
        match=r"^JetStream refused to open durable 'worker': consumer ack wait needs to be "
        r"positive \(error \d+\)$",
    ):
        await event_log.subscribe_durable("worker", ack_wait=timedelta(seconds=-1))
