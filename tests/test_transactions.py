"""Transactions: several writes decided together, stored as one atomic batch or not at all."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from helpers import report, until_acknowledged

from eventlog import (
    AlreadyExistsError,
    ConflictError,
    ConnectOptions,
    ConvlogError,
    DeletedError,
    EventLog,
    ExecutionId,
    Message,
    MessageCreated,
    NotFoundError,
    PayloadTooLargeError,
    StreamSettings,
    Thread,
    UnavailableError,
    ValidationError,
)
from eventlog.log import MAX_BATCH
from projections import (
    EventRejectedError,
    InMemoryMessageStore,
    JetStreamMessageStore,
    TransactionError,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import ServerFactory, StoreFactory

    from projections import MessageStore, Transaction


def turn(thread: Thread, number: int) -> list[Message]:
    """A turn of an agent: a question, reasoning, a tool call, its result, and an answer."""
    execution = str(ExecutionId.new())
    return [
        Message.user(thread.id, f"question {number}"),
        *(
            Message.assistant(thread.id, execution, f"{kind} {number}")
            for kind in ("reasoning", "tool call", "tool result", "answer")
        ),
    ]


async def in_transaction(store: MessageStore, writes: Callable[[Transaction], None]) -> None:
    """Record ``writes`` in one transaction of ``store`` and write it."""
    async with store.transaction() as tx:  # type: ignore[attr-defined] # both stores have it
        writes(tx)


async def write_turn(store: JetStreamMessageStore, messages: list[Message]) -> None:
    async with store.transaction() as tx:
        for message in messages:
            tx.create_message(message)


async def test_a_turn_is_written_whole_and_read_back(store: MessageStore) -> None:
    """A thread and a turn of five messages in one transaction: all there, in order."""
    thread = Thread.new("acme", "alice")
    messages = turn(thread, 1)
    async with store.transaction() as tx:
        tx.create_thread(thread)
        for message in messages:
            tx.create_message(message)
    assert len(tx.sequences) == 6
    assert tx.sequences == list(range(tx.sequences[0], tx.sequences[0] + 6))
    stored = await store.get_thread(thread.id)
    assert stored is not None
    assert stored.model_copy(update={"updated_at": thread.updated_at}) == thread
    assert [m.id for m in await store.list_messages(thread.id)] == [m.id for m in messages]
    assert await store.count_messages(thread.id) == 5


async def test_each_write_is_decided_against_the_ones_before_it(store: MessageStore) -> None:
    """Created, then updated, then deleted in one transaction; a later thread's messages too."""
    thread = Thread.new("acme", "alice")
    await store.create_thread(thread)
    message = Message.user(thread.id, "draft")
    edited = message.model_copy(update={"content": "final"})
    other = Thread.new("acme", "alice")
    late = Message.user(other.id, "in a thread made in this transaction")
    async with store.transaction() as tx:
        tx.create_message(message)
        tx.update_message(edited)
        tx.create_thread(other)
        tx.create_message(late)
        tx.delete_message(message.id)
        tx.delete_message(message.id)  # again: a no-op, as alone
    assert len(tx.sequences) == 5
    stored = await store.get_message(message.id)
    assert stored is not None
    assert stored.content == "final"
    assert stored.deleted_at is not None
    assert await store.get_message(late.id) == late


async def test_a_write_that_breaks_a_rule_fails_the_whole_transaction(store: MessageStore) -> None:
    """Each failing write is named by its place; nothing of the transaction is stored."""
    thread = Thread.new("acme", "alice")
    await store.create_thread(thread)
    before = await store.list_messages(thread.id, include_deleted=True)
    good = Message.user(thread.id, "never stored")
    gone = Thread.new("acme", "bob")

    def writes(tx: Transaction) -> None:
        tx.create_message(good)
        tx.update_message(Message.user(thread.id, "unknown message"))
        tx.create_thread(gone)
        tx.delete_thread(gone.id)
        tx.create_message(Message.user(gone.id, "into a deleted thread"))

    with pytest.raises(TransactionError) as refused:
        await in_transaction(store, writes)
    failures = refused.value.failures
    assert [index for index, _ in failures] == [1, 4]
    assert isinstance(failures[0][1], NotFoundError)
    assert isinstance(failures[1][1], DeletedError)
    assert "write 1 (update_message" in str(refused.value)
    assert "nothing of it was written" in str(refused.value)
    assert await store.list_messages(thread.id, include_deleted=True) == before
    assert await store.get_message(good.id) is None
    assert await store.get_thread(gone.id) is None


async def test_an_exception_in_the_block_writes_nothing(store: MessageStore) -> None:
    thread = Thread.new("acme", "alice")

    def writes(tx: Transaction) -> None:
        tx.create_thread(thread)
        raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError, match="changed my mind"):
        await in_transaction(store, writes)
    assert await store.get_thread(thread.id) is None


async def test_a_transaction_past_a_batch_is_refused_as_it_is_built() -> None:
    store = InMemoryMessageStore()
    thread = Thread.new("acme", "alice")

    def writes(tx: Transaction) -> None:
        tx.create_thread(thread)
        for number in range(MAX_BATCH):
            tx.create_message(Message.user(thread.id, f"message {number}"))

    with pytest.raises(ValidationError, match=f"at most {MAX_BATCH} writes"):
        await in_transaction(store, writes)
    assert await store.get_thread(thread.id) is None


async def test_a_transaction_is_one_atomic_batch_in_the_stream(connect_store: StoreFactory) -> None:
    """Consecutive sequences, one batch id, chained to each other; a fresh store agrees."""
    store = await connect_store()
    thread = Thread.new("acme", "alice")
    await store.create_thread(thread)
    async with store.transaction() as tx:
        for message in turn(thread, 1):
            tx.create_message(message)
    js = store.log.jetstream
    batch_ids = set()
    for sequence in tx.sequences:
        stored = await js.get_msg(store.log.stream.name, sequence, direct=True)
        batch_ids.add((stored.headers or {}).get("Nats-Batch-Id"))
    assert len(batch_ids) == 1
    assert None not in batch_ids
    report_ = await store.verify(thread_id=thread.id)
    assert report_.ok, report_
    fresh = await connect_store()
    assert fresh.views.digest() == store.views.digest()


async def test_racing_transactions_on_one_thread_are_decided_again(
    connect_store: StoreFactory,
) -> None:
    """Two stores, one thread: every transaction lands whole, the chain holds."""
    first, second = await connect_store(), await connect_store()
    thread = Thread.new("acme", "alice")
    await first.create_thread(thread)
    await second.wait_for(first.sequence)

    async def turns(store: JetStreamMessageStore, offset: int) -> None:
        for number in range(offset, offset + 10):
            async with store.transaction() as tx:
                for message in turn(thread, number):
                    tx.create_message(message)

    await asyncio.gather(turns(first, 0), turns(second, 100))
    await first.wait_for(await first.log.last_sequence())
    await second.wait_for(await first.log.last_sequence())
    assert await first.count_messages(thread.id) == 100
    assert first.views.digest() == second.views.digest()
    assert first.conflicts + second.conflicts > 0  # they did race
    assert (await first.verify(thread_id=thread.id)).ok


async def test_an_id_claimed_by_another_thread_fails_its_write(
    connect_store: StoreFactory,
) -> None:
    store = await connect_store()
    one, two = Thread.new("acme", "alice"), Thread.new("acme", "bob")
    await store.create_thread(one)
    await store.create_thread(two)
    taken = Message.user(one.id, "mine")
    await store.create_message(taken)
    moved = taken.model_copy(update={"thread_id": two.id})
    with pytest.raises(TransactionError) as refused:
        await write_turn(store, [Message.user(two.id, "fine"), moved])
    assert [(i, type(e)) for i, e in refused.value.failures] == [(1, AlreadyExistsError)]
    assert await store.count_messages(two.id) == 0


async def test_transactions_cut_by_a_server_kill_are_whole_or_absent(
    start_server: ServerFactory,
) -> None:
    """SIGKILL of nats-server while transactions are in flight: none is stored in part.

    Every acknowledged transaction is in the stream whole; one that failed is either whole
    (its ack was lost) or absent, and retrying it stores it once.
    """
    server = await start_server()
    options = ConnectOptions(write_timeout=1.0)
    store = await JetStreamMessageStore.connect(server.url, options=options)
    threads = [Thread.new("acme", f"user{i}") for i in range(8)]
    for thread in threads:
        await store.create_thread(thread)
    acknowledged: list[list[Message]] = []
    failed: list[list[Message]] = []
    killed = asyncio.Event()

    async def writer(thread: Thread) -> None:
        for number in range(40):
            messages = turn(thread, number)
            try:
                async with store.transaction() as tx:
                    for message in messages:
                        tx.create_message(message)
            except UnavailableError:
                failed.append(messages)
                return
            acknowledged.append(messages)
            if len(acknowledged) >= 30 and not killed.is_set():
                killed.set()
                await server.kill()

    try:
        await asyncio.gather(*(writer(thread) for thread in threads))
        assert killed.is_set()
        assert failed  # the kill cut transactions off
        await server.start()
        await store.log.connection.wait()
        stored = await _created_ids(store)
        partial = [m for m in failed + acknowledged if 0 < len({x.id for x in m} & stored) < 5]
        absent = sum(1 for m in failed if not {x.id for x in m} & stored)
        assert partial == []
        assert all({m.id for m in messages} <= stored for messages in acknowledged)
        for messages in failed:  # retried: each message once, the turn whole
            await until_acknowledged(
                lambda messages=messages: write_turn(store, messages), store.log.connection
            )
        again = await _created_ids(store, counted=True)
        report(
            "transactions-under-sigkill",
            acknowledged=len(acknowledged),
            failed=len(failed),
            absent_after_kill=absent,
            messages_found=len(again),
        )
        assert len(again) == 5 * (len(acknowledged) + len(failed))
    finally:
        await store.close()


async def _created_ids(store: JetStreamMessageStore, *, counted: bool = False) -> set[str]:
    """The message ids created in the stream, read back raw; ``counted``: each exactly once."""
    created = [
        event.message_id or ""
        async for record in store.log.read()
        if isinstance(event := store.log.codec.decode(record.data), MessageCreated)
    ]
    if counted:
        assert len(created) == len(set(created)), "a message was created twice"
    return set(created)


async def test_a_version_changed_earlier_in_the_transaction_is_a_conflict(
    store: MessageStore,
) -> None:
    """A message updated in the transaction has no version anyone can expect; none below 1."""
    thread = Thread.new("acme", "alice")
    await store.create_thread(thread)
    message = Message.user(thread.id, "v1")
    await store.create_message(message)
    version = store.message_version(message.id)  # type: ignore[attr-defined]
    edits = [message.model_copy(update={"content": f"v{n}"}) for n in (2, 3)]

    def writes(tx: Transaction) -> None:
        tx.update_message(edits[0], expected_version=version)
        tx.update_message(edits[1], expected_version=version)

    with pytest.raises(TransactionError) as refused:
        await in_transaction(store, writes)
    assert [(i, type(e)) for i, e in refused.value.failures] == [(1, ConflictError)]
    with pytest.raises(ValidationError, match="1 or more"):
        await store.update_message(edits[0], expected_version=0)  # type: ignore[call-arg]
    assert (await store.get_message(message.id)).content == "v1"  # type: ignore[union-attr]


async def test_an_event_too_large_fails_its_write_before_any_claim(
    connect_store: StoreFactory,
) -> None:
    """Refused by its size, named by its place; its id is not claimed, so another may take it."""
    store = await connect_store()
    one, two = Thread.new("acme", "alice"), Thread.new("acme", "bob")
    await store.create_thread(one)
    await store.create_thread(two)
    small = Message.user(one.id, "fits")
    huge = Message.user(one.id, "x" * (store.log.payload_limit + 1))
    with pytest.raises(TransactionError) as refused:
        await write_turn(store, [small, huge])
    assert [(i, type(e)) for i, e in refused.value.failures] == [(1, PayloadTooLargeError)]
    assert not refused.value.written
    assert await store.count_messages(one.id) == 0
    await store.create_message(small.model_copy(update={"thread_id": two.id}))  # not claimed
    assert await store.count_messages(two.id) == 1


async def test_a_stream_without_atomic_batches_refuses_a_transaction_first(
    connect_store: StoreFactory,
) -> None:
    """Said before any id is claimed or any byte sent; single writes still go."""
    store = await connect_store()
    thread = Thread.new("acme", "alice")
    await store.create_thread(thread)
    store.log.supports_atomic = False  # what connect finds on a server older than 2.12
    message = Message.user(thread.id, "alone")
    with pytest.raises(ConvlogError, match="does not take atomic batches"):
        await write_turn(store, [message, Message.user(thread.id, "together")])
    other = Thread.new("acme", "bob")
    await store.create_thread(other)
    await store.create_message(message.model_copy(update={"thread_id": other.id}))
    assert await store.count_messages(thread.id) == 0


async def test_a_write_that_lost_its_id_in_a_stored_transaction_is_named(
    nats_url: str, stream_settings: StreamSettings
) -> None:
    """Without id claims (a stream of one partition): stored, the loser skipped, said so.

    Store B's follower is held while A creates the id, so B decides without knowing it; B's
    transaction is stored after A's create and every fold skips B's create of that id.
    """
    settings = StreamSettings(
        name=stream_settings.name, subject_prefix=stream_settings.subject_prefix, partitions=1
    )
    a = await JetStreamMessageStore.open(await EventLog.connect(nats_url, stream=settings))
    b = await JetStreamMessageStore.open(await EventLog.connect(nats_url, stream=settings))
    try:
        one, two = Thread.new("acme", "alice"), Thread.new("acme", "bob")
        await a.create_thread(one)
        await a.create_thread(two)
        await b.wait_for(a.sequence)
        await b._worker._follower.stop()  # type: ignore[union-attr] # B falls behind
        taken = Message.user(one.id, "first")
        await a.create_message(taken)
        other = Message.user(two.id, "stands")

        async def release_b_once_stored() -> None:
            await a.wait_for(a.sequence + 2)  # B's two, after A's: A's views see them
            await b._worker._restart_follower()

        releasing = asyncio.create_task(release_b_once_stored())
        with pytest.raises(TransactionError) as refused:
            await write_turn(b, [other, taken.model_copy(update={"thread_id": two.id})])
        await releasing
        assert refused.value.written
        assert [(i, type(e)) for i, e in refused.value.failures] == [(1, EventRejectedError)]
        assert "the others stand" in str(refused.value)
        assert await b.get_message(other.id) == other
        assert (await b.get_message(taken.id)).thread_id == one.id  # type: ignore[union-attr]
    finally:
        await a.close()
        await b.close()
        await a.log.close()
        await b.log.close()
