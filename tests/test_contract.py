"""The MessageStore contract (projections.testing) run against each of convlog's stores.

The in-memory store, and the JetStream store on a real nats-server, each on a fresh stream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

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

    @pytest.fixture
    async def store(self, connect_store: StoreFactory) -> JetStreamMessageStore:
        return await connect_store()
