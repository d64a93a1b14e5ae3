"""Concurrent updates of a message: one wins per expected_version; without one, the last wins."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from eventlog import ConflictError, Message, Thread
from projections import InMemoryMessageStore, JetStreamMessageStore

if TYPE_CHECKING:
    from conftest import StoreFactory

WRITERS = 16


async def _a_message(store: InMemoryMessageStore | JetStreamMessageStore) -> Message:
    thread = Thread.new("acme", "alice")
    await store.create_thread(thread)
    message = Message.user(thread.id, "draft")
    await store.create_message(message)
    return message


def _edit(message: Message, content: str) -> Message:
    return message.model_copy(update={"content": content})


@pytest.fixture(params=["in-memory", "jetstream"])
async def versioned(
    request: pytest.FixtureRequest, connect_store: StoreFactory
) -> InMemoryMessageStore | JetStreamMessageStore:
    if request.param == "in-memory":
        return InMemoryMessageStore()
    return await connect_store()


async def test_a_version_is_the_sequence_of_the_last_change(
    versioned: InMemoryMessageStore | JetStreamMessageStore,
) -> None:
    message = await _a_message(versioned)
    created = versioned.message_version(message.id)
    assert created == versioned.sequence
    await versioned.update_message(_edit(message, "second"), expected_version=created)
    updated = versioned.message_version(message.id)
    assert updated == versioned.sequence > created
    assert versioned.message_version("msg_unknown") is None


async def test_one_writer_wins_per_version(
    versioned: InMemoryMessageStore | JetStreamMessageStore,
) -> None:
    message = await _a_message(versioned)
    for round_number in range(3):
        version = versioned.message_version(message.id)
        attempts = [
            versioned.update_message(
                _edit(message, f"round {round_number} writer {writer}"), expected_version=version
            )
            for writer in range(WRITERS)
        ]
        results = await asyncio.gather(*attempts, return_exceptions=True)
        winners = [i for i, result in enumerate(results) if result is None]
        assert len(winners) == 1
        losers = [result for result in results if result is not None]
        assert all(isinstance(result, ConflictError) for result in losers)
        assert all(result.expected == version for result in losers)  # type: ignore[union-attr]
        stored = await versioned.get_message(message.id)
        assert stored is not None
        assert stored.content == f"round {round_number} writer {winners[0]}"


async def test_stores_racing_with_a_version_let_one_win(connect_store: StoreFactory) -> None:
    """Two processes' stores: the stream's per-thread order decides, the loser is told."""
    left, right = await connect_store(), await connect_store()
    message = await _a_message(left)
    await right.wait_for(left.sequence)
    version = left.message_version(message.id)
    assert right.message_version(message.id) == version
    results = await asyncio.gather(
        left.update_message(_edit(message, "left"), expected_version=version),
        right.update_message(_edit(message, "right"), expected_version=version),
        return_exceptions=True,
    )
    assert sorted(type(result).__name__ for result in results) == ["ConflictError", "NoneType"]


async def test_without_a_version_the_last_writer_wins_and_every_version_is_kept(
    connect_store: StoreFactory,
) -> None:
    left, right = await connect_store(), await connect_store()
    message = await _a_message(left)
    await right.wait_for(left.sequence)
    contents = [f"edit {i}" for i in range(WRITERS)]
    await asyncio.gather(
        *(
            (left if i % 2 else right).update_message(_edit(message, content))
            for i, content in enumerate(contents)
        )
    )
    await left.wait_for(right.sequence)
    history = await left.history(message.id)
    updates = [entry.state.content for entry in history[1:] if isinstance(entry.state, Message)]
    assert sorted(updates) == sorted(contents)  # every write is a version in the log
    stored = await left.get_message(message.id)
    assert stored is not None
    assert stored.content == updates[-1]  # the last in log order is the current one
    assert left.message_version(message.id) == history[-1].sequence
