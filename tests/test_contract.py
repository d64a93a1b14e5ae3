"""The MessageStore contract (projections.testing) run against each of convlog's stores.

The in-memory store, and the JetStream store on a real nats-server, each on a fresh stream:
a partitioned one (what new streams are) and an unpartitioned one (made before partitions).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import pytest

from eventlog import EventLog, StreamSettings
from projections import InMemoryMessageStore, JetStreamMessageStore
from projections.testing import MessageStoreContract

if TYPE_CHECKING:
    from conftest import StoreFactory


class TestInMemoryMessageStore(MessageStoreContract):
    store_name = "in-memory-message-store"
    requires_network = False

    @pytest.fixture
    def store(self) -> InMemoryMessageStore:
        return InMemoryMessageStore()


class TestJetStreamMessageStore(MessageStoreContract):
    store_name = "jetstream-message-store"
    requires_network = True

    @pytest.fixture(params=[None, 1], ids=["partitioned", "legacy"])
    async def store(
        self,
        request: pytest.FixtureRequest,
        nats_url: str,
        stream_settings: StreamSettings,
        connect_store: StoreFactory,
    ) -> JetStreamMessageStore:
        """A store on a new stream, or on one created unpartitioned before the store opens it."""
        if request.param is not None:
            legacy = dataclasses.replace(stream_settings, partitions=request.param)
            await (await EventLog.connect(nats_url, stream=legacy)).close()
        store = await connect_store()
        assert store.log.subjects.partitioned is (request.param is None)
        return store
