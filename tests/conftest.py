"""Fixtures: one real nats-server per test session, and a fresh stream for every test.

Each test gets its own stream name and subject prefix, so tests share a server but never
each other's events. The server is started on a port it picks and stopped by its pid.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

import pytest
from uuid_utils import uuid7

from eventlog import DEFAULT_MAX_PAYLOAD, EmbeddedNats, EventLog, StreamSettings
from eventlog.cluster import EmbeddedCluster
from projections import InMemoryMessageStore, JetStreamMessageStore, MessageStore

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """The server the tests share, for the whole session; each test has its own stream."""
    server = EmbeddedNats(data_dir=tmp_path_factory.mktemp("nats"))
    asyncio.run(server.start())
    try:
        yield server
    finally:
        asyncio.run(server.stop())


ServerFactory = Callable[..., Awaitable[EmbeddedNats]]


@pytest.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """Start servers of this test's own, each on its own store dir; all stopped at the end.

    For tests that kill, restart or configure a server: ``server = await start_server()``.
    """
    started: list[EmbeddedNats] = []

    async def start(
        *, extra_config: str = "", max_payload: int = DEFAULT_MAX_PAYLOAD
    ) -> EmbeddedNats:
        server = EmbeddedNats(
            data_dir=tmp_path / f"server-{len(started)}",
            extra_config=extra_config,
            max_payload=max_payload,
        )
        started.append(server)
        return await server.start()

    yield start
    for server in reversed(started):
        await server.stop()


@pytest.fixture
def nats_url(nats_server: EmbeddedNats) -> str:
    return nats_server.url


@pytest.fixture
def stream_settings() -> StreamSettings:
    """A stream of this test's own: unique name and subject prefix."""
    token = uuid7().hex[-12:]
    return StreamSettings(name=f"T{token}", subject_prefix=f"t{token}")


@pytest.fixture
async def event_log(nats_url: str, stream_settings: StreamSettings) -> AsyncIterator[EventLog]:
    log = await EventLog.connect(nats_url, stream=stream_settings)
    yield log
    await log.close()


StoreFactory = Callable[[], Awaitable[JetStreamMessageStore]]


@pytest.fixture
async def connect_store(
    nats_url: str, stream_settings: StreamSettings
) -> AsyncIterator[StoreFactory]:
    """Connect any number of stores to this test's stream; all are closed at the end."""
    opened: list[JetStreamMessageStore] = []

    async def connect() -> JetStreamMessageStore:
        store = await JetStreamMessageStore.connect(
            nats_url, stream=stream_settings.name, subject_prefix=stream_settings.subject_prefix
        )
        opened.append(store)
        return store

    yield connect
    for store in opened:
        await store.close()


@pytest.fixture(params=["in-memory", "jetstream"])
async def store(request: pytest.FixtureRequest, connect_store: StoreFactory) -> MessageStore:
    """Every contract test runs against both stores."""
    if request.param == "in-memory":
        return InMemoryMessageStore()
    return await connect_store()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[EmbeddedCluster]:
    """Three nats-servers clustered on loopback, of this test's own; each stopped by its pid.

    Started on ports of a block no other cluster on the machine holds; returns once they
    have elected a meta leader. At the end each node still running is stopped (SIGTERM).
    """
    async with EmbeddedCluster(data_dir=tmp_path / "cluster") as started:
        yield started
