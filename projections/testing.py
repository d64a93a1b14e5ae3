"""The MessageStore contract as a test kit: hold any store to the rules convlog's stores keep.

:class:`MessageStoreContract` holds the seed's ten tests and the strict rules (README, "The
MessageStore contract"); convlog runs it against its own two stores in
``tests/test_contract.py``. To run it against a store of yours, subclass it in a test module
under a name pytest collects, say the store's name and whether it needs a network, and give
it a ``store`` fixture that provides a fresh, empty store for each test::

    import pytest

    from projections.testing import MessageStoreContract


    class TestMyStore(MessageStoreContract):
        store_name = "my-message-store"
        requires_network = False

        @pytest.fixture
        async def store(self):
            store = await MyStore.open()
            yield store
            await store.close()

It needs pytest and pytest-asyncio (the ``test`` extra: ``pip install "convlog[test]"``).
The tests carry the ``asyncio`` mark, so they run in pytest-asyncio's strict mode as well as
in ``asyncio_mode = "auto"``; in strict mode declare the fixture with
``@pytest_asyncio.fixture``.
"""

# ruff: noqa: S101, PLR2004, FBT003 - a test kit: asserts and expected numbers are what tests
# are made of, and list_messages(thread_id, False) is called positionally as the seed does.

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from eventlog import (
    AlreadyExistsError,
    DeletedError,
    ExecutionId,
    ExecutionStats,
    FinishReason,
    Message,
    MessageMetadata,
    MessagePart,
    MessageRole,
    NotFoundError,
    ParentType,
    ReasoningPart,
    TenantId,
    TextPart,
    Thread,
    ThreadId,
    TokenUsage,
    ToolCallPart,
    UserId,
    ValidationError,
)

if TYPE_CHECKING:
    from projections.store import MessageStore

__all__ = ["MessageStoreContract"]


def _tenant() -> TenantId:
    return TenantId.from_string("tenant_test")


def _user() -> UserId:
    return UserId.from_string("user_test")


async def _new_thread(store: MessageStore, **changes: object) -> Thread:
    """A thread of the test tenant and user, created in ``store``, with ``changes`` made."""
    thread = Thread.new(_tenant(), _user())
    if changes:
        thread = thread.model_copy(update=changes)
    await store.create_thread(thread)
    return thread


class MessageStoreContract:
    """Every test of the MessageStore contract; a subclass provides the ``store`` fixture.

    ``store_name`` and ``requires_network`` are what the store must report as its ``name``
    and ``requires_network``.
    """

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.asyncio]
    store_name: ClassVar[str]
    requires_network: ClassVar[bool]

    # --- the seed's tests ---------------------------------------------------------------------

    async def test_create_thread(self, store: MessageStore) -> None:
        """A created thread can be read back by its id."""
        thread = Thread.new(_tenant(), _user())
        thread_id = await store.create_thread(thread)
        loaded = await store.get_thread(thread_id)
        assert loaded is not None
        assert loaded.id == thread.id

    async def test_soft_delete_thread(self, store: MessageStore) -> None:
        """A deleted thread is still readable, marked deleted."""
        thread = await _new_thread(store)
        await store.delete_thread(thread.id)
        loaded = await store.get_thread(thread.id)
        assert loaded is not None
        assert loaded.is_deleted()

    async def test_list_threads_excludes_deleted(self, store: MessageStore) -> None:
        """list_threads leaves deleted threads out."""
        await _new_thread(store)
        second = await _new_thread(store)
        await store.delete_thread(second.id)
        threads = await store.list_threads(_tenant(), _user(), 100, 0)
        assert len(threads) == 1

    async def test_create_message(self, store: MessageStore) -> None:
        """A created message can be read back with its content."""
        thread = await _new_thread(store)
        message = Message.user(thread.id, "Hello!")
        await store.create_message(message)
        loaded = await store.get_message(message.id)
        assert loaded is not None
        assert loaded.content == "Hello!"

    async def test_message_parent_chain(self, store: MessageStore) -> None:
        """An assistant reply keeps its parent and follows the user turn in order."""
        thread = await _new_thread(store)
        user_message = Message.user(thread.id, "What's the weather?")
        await store.create_message(user_message)
        reply = Message.assistant(
            thread.id, ExecutionId.new(), "The weather is sunny.", user_message.id
        )
        await store.create_message(reply)
        messages = await store.list_messages(thread.id, False)
        assert len(messages) == 2
        assert messages[0].role == MessageRole.USER
        assert messages[1].role == MessageRole.ASSISTANT
        assert messages[1].parent_id == user_message.id

    async def test_soft_delete_message(self, store: MessageStore) -> None:
        """A deleted message leaves the default listing but stays with include_deleted."""
        thread = await _new_thread(store)
        message = Message.user(thread.id, "Delete me")
        await store.create_message(message)
        await store.delete_message(message.id)
        assert await store.list_messages(thread.id, False) == []
        everything = await store.list_messages(thread.id, True)
        assert len(everything) == 1
        assert everything[0].is_deleted()

    async def test_get_messages_by_execution(self, store: MessageStore) -> None:
        """Messages are found by the execution that wrote them."""
        thread = await _new_thread(store)
        execution = ExecutionId.new()
        await store.create_message(Message.assistant(thread.id, execution, "Response"))
        messages = await store.get_messages_by_execution(execution)
        assert len(messages) == 1
        assert messages[0].execution_id == execution

    async def test_message_with_parts(self, store: MessageStore) -> None:
        """Every part of a message survives the store."""
        thread = await _new_thread(store)
        parts: list[MessagePart] = [
            ReasoningPart(text="Let me think..."),
            ToolCallPart(tool_call_id="tc_123", tool_name="get_weather", args={"city": "NYC"}),
            TextPart(text="The weather is sunny."),
        ]
        message = Message.assistant(
            thread.id, ExecutionId.new(), "The weather is sunny."
        ).with_parts(parts)
        await store.create_message(message)
        loaded = await store.get_message(message.id)
        assert loaded is not None
        assert len(loaded.parts) == 3
        assert loaded.parts == tuple(parts)

    async def test_message_metadata(self, store: MessageStore) -> None:
        """Model, provider, usage and stats metadata survive the store."""
        thread = await _new_thread(store)
        metadata = MessageMetadata(
            model="gpt-4o",
            provider="azure",
            duration_ms=1500,
            token_usage=TokenUsage.new(100, 200),
            stats=ExecutionStats(llm_calls=2, tool_calls=1, sub_agents=0, steps=3, decisions=1),
            finish_reason=FinishReason.STOP,
        )
        message = Message.assistant(thread.id, ExecutionId.new(), "Response").with_metadata(
            metadata
        )
        await store.create_message(message)
        loaded = await store.get_message(message.id)
        assert loaded is not None
        assert loaded.metadata.model == "gpt-4o"
        assert loaded.metadata.stats is not None
        assert loaded.metadata.stats.llm_calls == 2

    async def test_thread_updated_on_message(self, store: MessageStore) -> None:
        """A new message moves its thread's updated_at forward.

        The seed sleeps 10 ms to let the clock move; here the thread starts a second in the past.
        """
        earlier = datetime.now(UTC) - timedelta(seconds=1)
        thread = await _new_thread(store, created_at=earlier, updated_at=earlier)
        await store.create_message(Message.user(thread.id, "Hello!"))
        loaded = await store.get_thread(thread.id)
        assert loaded is not None
        assert loaded.updated_at > thread.updated_at

    # --- strict rules ---------------------------------------------------------------------------

    async def test_create_existing_thread_with_other_content_is_refused(
        self, store: MessageStore
    ) -> None:
        """Creating a thread id that exists with other content raises AlreadyExistsError."""
        thread = await _new_thread(store)
        with pytest.raises(AlreadyExistsError) as caught:
            await store.create_thread(thread.model_copy(update={"title": "other"}))
        assert caught.value.entity_id == thread.id
        assert (await store.get_thread(thread.id)) == thread

    async def test_identical_create_is_an_idempotent_retry(self, store: MessageStore) -> None:
        """Creating the same thread or message twice succeeds and stores it once."""
        thread = await _new_thread(store)
        assert await store.create_thread(thread) == thread.id
        message = Message.user(thread.id, "once")
        await store.create_message(message)
        assert await store.create_message(message) == message.id
        assert await store.count_messages(thread.id) == 1

    async def test_create_retried_after_later_writes_is_still_a_retry(
        self, store: MessageStore
    ) -> None:
        """A create repeated after the store moved updated_at or deleted the entity is a no-op."""
        thread = await _new_thread(store)
        message = Message.user(thread.id, "first")
        await store.create_message(message)  # bumps the thread's updated_at
        await store.update_message(message.model_copy(update={"content": "edited"}))
        assert await store.create_thread(thread) == thread.id
        await store.delete_message(message.id)
        with pytest.raises(AlreadyExistsError):  # its content moved on: not the same create
            await store.create_message(message)

    async def test_create_existing_message_with_other_content_is_refused(
        self, store: MessageStore
    ) -> None:
        """A message id that exists with other content raises AlreadyExistsError."""
        thread = await _new_thread(store)
        message = Message.user(thread.id, "first")
        await store.create_message(message)
        with pytest.raises(AlreadyExistsError):
            await store.create_message(message.model_copy(update={"content": "second"}))
        assert (await store.get_message(message.id)) == message

    async def test_unknown_ids_are_not_found(self, store: MessageStore) -> None:
        """Updating or deleting an unknown id, or writing into an unknown thread: NotFoundError."""
        ghost = Thread.new(_tenant(), _user())
        with pytest.raises(NotFoundError):
            await store.update_thread(ghost)
        with pytest.raises(NotFoundError):
            await store.delete_thread(ghost.id)
        with pytest.raises(NotFoundError):
            await store.create_message(Message.user(ghost.id, "into the void"))
        with pytest.raises(NotFoundError):
            await store.update_message(Message.user(ghost.id, "nobody"))
        with pytest.raises(NotFoundError) as caught:
            await store.delete_message("msg_missing")
        assert caught.value.kind == "message"
        assert caught.value.entity_id == "msg_missing"

    async def test_reads_of_unknown_ids_are_empty(self, store: MessageStore) -> None:
        """Reads of unknown ids answer None, empty lists and zero, as the seed does."""
        assert await store.get_thread("thread_missing") is None
        assert await store.get_message("msg_missing") is None
        assert await store.list_messages("thread_missing") == []
        assert await store.get_messages_by_execution("exec_missing") == []
        assert await store.count_messages("thread_missing") == 0

    async def test_deleted_thread_takes_no_new_writes(self, store: MessageStore) -> None:
        """A deleted thread refuses new messages, message updates and thread updates."""
        thread = await _new_thread(store)
        message = Message.user(thread.id, "before")
        await store.create_message(message)
        await store.delete_thread(thread.id)
        with pytest.raises(DeletedError):
            await store.create_message(Message.user(thread.id, "after"))
        with pytest.raises(DeletedError):
            await store.update_message(message.model_copy(update={"content": "changed"}))
        with pytest.raises(DeletedError):
            await store.update_thread(thread.model_copy(update={"title": "renamed"}))

    async def test_deleted_threads_messages_stay_readable(self, store: MessageStore) -> None:
        """As in the seed, a deleted thread's messages stay readable, and can still be deleted."""
        thread = await _new_thread(store)
        first, second = Message.user(thread.id, "one"), Message.user(thread.id, "two")
        await store.create_message(first)
        await store.create_message(second)
        await store.delete_thread(thread.id)
        assert [m.id for m in await store.list_messages(thread.id)] == [first.id, second.id]
        assert await store.count_messages(thread.id) == 2
        await store.delete_message(first.id)
        assert [m.id for m in await store.list_messages(thread.id)] == [second.id]

    async def test_repeated_delete_is_idempotent(self, store: MessageStore) -> None:
        """Deleting twice succeeds and keeps the first deletion time."""
        thread = await _new_thread(store)
        message = Message.user(thread.id, "bye")
        await store.create_message(message)
        await store.delete_message(message.id)
        first = await store.get_message(message.id)
        await store.delete_message(message.id)
        assert await store.get_message(message.id) == first
        await store.delete_thread(thread.id)
        deleted = await store.get_thread(thread.id)
        await store.delete_thread(thread.id)
        assert await store.get_thread(thread.id) == deleted

    async def test_deleted_message_takes_no_updates(self, store: MessageStore) -> None:
        """Updating a deleted message raises DeletedError."""
        thread = await _new_thread(store)
        message = Message.user(thread.id, "gone")
        await store.create_message(message)
        await store.delete_message(message.id)
        with pytest.raises(DeletedError):
            await store.update_message(message.model_copy(update={"content": "back"}))

    async def test_list_messages_is_in_log_order(self, store: MessageStore) -> None:
        """Messages list in the order they were written, even when timestamps say otherwise."""
        thread = await _new_thread(store)
        now = datetime.now(UTC)
        later = Message.user(thread.id, "written first").model_copy(update={"created_at": now})
        earlier = Message.user(thread.id, "written second").model_copy(
            update={"created_at": now - timedelta(hours=1)}
        )
        tied = Message.user(thread.id, "same time").model_copy(update={"created_at": now})
        for message in (later, earlier, tied):
            await store.create_message(message)
        listed = await store.list_messages(thread.id)
        assert [m.id for m in listed] == [later.id, earlier.id, tied.id]

    async def test_update_message_sets_updated_at_and_keeps_identity(
        self, store: MessageStore
    ) -> None:
        """update_message replaces content and parts, and the store stamps updated_at."""
        thread = await _new_thread(store)
        message = Message.assistant(thread.id, ExecutionId.new(), "draft")
        await store.create_message(message)
        assert message.updated_at is None
        await store.update_message(
            message.model_copy(update={"content": "final", "parts": (TextPart(text="final"),)})
        )
        loaded = await store.get_message(message.id)
        assert loaded is not None
        assert loaded.content == "final"
        assert loaded.parts == (TextPart(text="final"),)
        assert loaded.updated_at is not None
        assert loaded.updated_at >= loaded.created_at
        assert loaded.created_at == message.created_at

    async def test_update_message_cannot_move_or_change_role(self, store: MessageStore) -> None:
        """A message cannot change thread, role or execution through update_message."""
        thread = await _new_thread(store)
        other = await _new_thread(store)
        message = Message.user(thread.id, "stay")
        await store.create_message(message)
        for change in (
            {"thread_id": other.id},
            {"role": MessageRole.SYSTEM},
            {"execution_id": ExecutionId.new()},
        ):
            with pytest.raises(ValidationError):
                await store.update_message(message.model_copy(update=change))
        assert await store.get_message(message.id) == message

    async def test_update_thread_changes_title_only(self, store: MessageStore) -> None:
        """update_thread changes the title and bumps updated_at; the owner cannot change."""
        thread = await _new_thread(store)
        await store.update_thread(thread.model_copy(update={"title": "Renamed"}))
        loaded = await store.get_thread(thread.id)
        assert loaded is not None
        assert loaded.title == "Renamed"
        assert loaded.updated_at >= thread.updated_at
        assert loaded.created_at == thread.created_at
        with pytest.raises(ValidationError):
            await store.update_thread(loaded.model_copy(update={"user_id": UserId("someone_else")}))

    async def test_list_threads_newest_first_with_paging(self, store: MessageStore) -> None:
        """list_threads is newest first, log order breaks ties, and limit/offset page it."""
        base = datetime.now(UTC) - timedelta(minutes=10)
        created = []
        for minutes in (0, 2, 1, 2):
            at = base + timedelta(minutes=minutes)
            created.append(await _new_thread(store, created_at=at, updated_at=at))
        newest_first = [created[3], created[1], created[2], created[0]]
        listed = await store.list_threads(_tenant(), _user(), 10, 0)
        assert [t.id for t in listed] == [t.id for t in newest_first]
        page = await store.list_threads(_tenant(), _user(), 2, 1)
        assert [t.id for t in page] == [created[1].id, created[2].id]
        assert await store.list_threads(_tenant(), _user(), 10, 4) == []
        assert await store.list_threads(_tenant(), UserId("nobody"), 10, 0) == []
        with pytest.raises(ValidationError):
            await store.list_threads(_tenant(), _user(), -1, 0)

    async def test_count_messages_counts_live_messages(self, store: MessageStore) -> None:
        """count_messages leaves deleted messages out."""
        thread = await _new_thread(store)
        messages = [Message.user(thread.id, f"m{i}") for i in range(3)]
        for message in messages:
            await store.create_message(message)
        await store.delete_message(messages[1].id)
        assert await store.count_messages(thread.id) == 2

    async def test_get_or_create_thread_returns_newest_live_thread(
        self, store: MessageStore
    ) -> None:
        """get_or_create_thread creates a thread once, then returns the user's newest live one."""
        created = await store.get_or_create_thread(_tenant(), _user())
        assert await store.get_or_create_thread(_tenant(), _user()) == created
        await store.delete_thread(created.id)
        replacement = await store.get_or_create_thread(_tenant(), _user())
        assert replacement.id != created.id
        assert (await store.list_threads(_tenant(), _user(), 10, 0)) == [replacement]

    async def test_returned_models_cannot_corrupt_the_view(self, store: MessageStore) -> None:
        """Returned threads and messages are frozen: the view cannot be changed through them."""
        thread = await _new_thread(store)
        loaded = await store.get_thread(thread.id)
        assert loaded is not None
        with pytest.raises(Exception, match="frozen"):
            loaded.title = "hacked"  # type: ignore[misc]
        listed = await store.list_messages(thread.id)
        listed.append(Message.user(thread.id, "not stored"))
        assert await store.list_messages(thread.id) == []
        call = ToolCallPart(tool_call_id="tc", tool_name="t", args={"city": "NYC", "days": [1, 2]})
        message = Message.assistant(thread.id, ExecutionId.new(), "x").with_parts([call])
        await store.create_message(message)
        stored = await store.get_message(message.id)
        assert stored is not None
        part = stored.parts[0]
        assert isinstance(part, ToolCallPart)
        args: Any = part.args  # the writes below are what its type forbids: they fail at run time
        with pytest.raises(TypeError, match="read-only"):
            args["city"] = "HACKED"
        with pytest.raises(TypeError, match="read-only"):
            args["days"].append(3)
        editable = copy.deepcopy(args)
        editable["city"] = "Paris"
        assert (await store.get_message(message.id)) == message

    async def test_ids_with_any_characters_work(self, store: MessageStore) -> None:
        """Ids with dots, wildcards, spaces and unicode are stored and found."""
        thread = Thread.with_id(ThreadId("th.read *>"), TenantId("ten ant.>"), UserId("ü.s*er"))
        await store.create_thread(thread)
        message = Message.user(thread.id, "hi").model_copy(update={"id": "m.1 >*"})
        await store.create_message(message)
        loaded = await store.get_thread("th.read *>")
        assert loaded is not None
        assert (loaded.id, loaded.tenant_id, loaded.user_id) == (
            "th.read *>",
            "ten ant.>",
            "ü.s*er",
        )
        assert [m.id for m in await store.list_messages(thread.id)] == ["m.1 >*"]
        assert [t.id for t in await store.list_threads("ten ant.>", "ü.s*er", 5, 0)] == [thread.id]

    async def test_message_parent_types_round_trip(self, store: MessageStore) -> None:
        """Every parent type survives the store."""
        thread = await _new_thread(store)
        root = Message.user(thread.id, "root")
        await store.create_message(root)
        for parent_type in ParentType:
            message = Message.user(thread.id, parent_type.value).with_parent(root.id, parent_type)
            await store.create_message(message)
            loaded = await store.get_message(message.id)
            assert loaded is not None
            assert loaded.parent_type == parent_type

    async def test_store_reports_name_network_and_health(self, store: MessageStore) -> None:
        """name, requires_network and health_check describe the store."""
        health = await store.health_check()
        assert health.ok
        assert store.name == self.store_name
        assert store.requires_network == self.requires_network
