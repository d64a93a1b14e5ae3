"""An OpenAI Agents SDK ``Session`` whose history is a convlog thread.

``pip install "convlog[openai-agents]"``. One session is one thread of one tenant's user;
each item the SDK adds is one message, so a run is audited, replayable and subscribable
like any conversation on the log::

    session = ConvlogSession("chat-42", store, tenant_id="acme", user_id="alice")
    await Runner.run(agent, "Weather in Paris?", session=session)

**Round trip.** Every message carries its item's exact JSON in a :class:`CodePart` of
language :data:`ITEM_MEDIA_TYPE`, and ``get_items`` returns that JSON, so what comes back
equals what went in whatever fields the item has. Beside it the message holds the parts a
convlog reader understands: message text as ``TextPart``, reasoning summaries as
``ReasoningPart``, function calls as ``ToolCallPart`` and their outputs as
``ToolResultPart``. A message written without that part (a thread given by ``thread_id``
that another writer filled) is read as an input message ``{"role", "content"}``.

**Executions.** The items after a user message, up to the next one, are that turn's run:
they get an ``execution_id`` derived from the user message's id, so ``execution_trail``
shows a run's reasoning, tool calls and answer.

**Pop.** The last live message is deleted in a transaction that first expects its version
(a guard that writes nothing). A store decides a write against its views, and the delete's
append expects the thread's last sequence as those views saw it; if another process wrote
to the thread since, the store catches up and decides again, and the guard then fails for
a message another pop took. So two pops never return the same item, and the loser tries
the next one.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

from agents.memory import SessionSettings
from agents.memory.session_settings import resolve_session_limit

from eventlog import (
    AlreadyExistsError,
    CodePart,
    ConflictError,
    DeletedError,
    ExecutionId,
    Message,
    MessageId,
    MessageMetadata,
    MessagePart,
    MessageRole,
    ParentType,
    PermissionDeniedError,
    ReasoningPart,
    TenantId,
    TextPart,
    Thread,
    ThreadId,
    ToolCallPart,
    ToolResultPart,
    UserId,
)
from eventlog.log import MAX_BATCH
from projections.errors import TransactionError
from projections.store import JetStreamMessageStore, MessageStore

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from contextlib import AbstractAsyncContextManager

    from agents.items import TResponseInputItem

    from projections.transaction import Transaction

__all__ = ["ITEM_MEDIA_TYPE", "ConvlogSession", "TransactionalStore", "session_thread_id"]

ITEM_MEDIA_TYPE = "application/vnd.openai.agents.item+json"
"""The ``CodePart.language`` of the part holding an item's exact JSON."""

_NAMESPACE = uuid.UUID("5f1d3c8e-6a2b-5e4f-9c7d-0b1a2e3f4d5c")
"""Of the uuid5 thread ids: a fixed value, so every process derives the same id."""

_ROLES = {
    "user": MessageRole.USER,
    "assistant": MessageRole.ASSISTANT,
    "system": MessageRole.SYSTEM,
    "developer": MessageRole.SYSTEM,
}
_TEXT_CONTENT = {"input_text": "text", "output_text": "text", "refusal": "refusal"}
"""Content types of a message item that are text, and the key holding it."""


class TransactionalStore(MessageStore, Protocol):
    """A MessageStore with transactions and message versions, as both convlog stores are."""

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """Writes recorded in the block, stored as one atomic batch on leaving it."""
        ...

    def message_version(self, message_id: str) -> int | None:
        """The stream sequence of the message's last change; None if unknown."""
        ...

    async def catch_up(self, thread_id: str) -> None:
        """Return once the views hold every event of the thread stored before the call."""
        ...


def session_thread_id(tenant_id: str, session_id: str) -> ThreadId:
    """The thread of a tenant's session: a uuid5 of both, so tenants never share one."""
    key = f"{tenant_id}\x00{session_id}"
    return ThreadId(f"thread_{uuid.uuid5(_NAMESPACE, key).hex}")


class ConvlogSession:
    """The SDK's ``Session`` protocol over a convlog thread; see the module's docstring.

    A class of its own rather than a ``SessionABC``, which the SDK keeps for its own sessions.

    The thread is ``thread_id`` if given, else :func:`session_thread_id`, created by the
    first ``add_items``. A thread of another tenant or user is refused with
    :class:`~eventlog.PermissionDeniedError`, by every method.
    """

    def __init__(
        self,
        session_id: str,
        store: TransactionalStore,
        *,
        tenant_id: str,
        user_id: str,
        thread_id: str | None = None,
        session_settings: SessionSettings | None = None,
    ) -> None:
        self.session_id = session_id
        self.session_settings: SessionSettings | None = session_settings or SessionSettings()
        self.tenant_id = TenantId.from_string(tenant_id)
        self.user_id = UserId.from_string(user_id)
        self.thread_id = (
            session_thread_id(tenant_id, session_id)
            if thread_id is None
            else ThreadId.from_string(thread_id)
        )
        confined = store.tenant_id if isinstance(store, JetStreamMessageStore) else None
        if confined is not None and confined != self.tenant_id:
            raise PermissionDeniedError(
                f"the store is confined to tenant {confined!r}, the session is of {tenant_id!r}"
            )
        self._store = store

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The live items, oldest first; with a limit the latest ``limit`` of them.

        As the SDK's SQLite session: ``limit`` None takes ``session_settings.limit``, 0
        gives none, a negative limit gives all.
        """
        messages = await self._live_messages()
        wanted = resolve_session_limit(limit, self.session_settings)
        if wanted is not None and wanted >= 0:
            messages = messages[-wanted:] if wanted else []
        return [_item_of(message) for message in messages]

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append the items as one transaction: all are stored, in order, or none."""
        if not items:
            return
        while True:
            thread = await self._thread()
            earlier = await self._store.list_messages(self.thread_id) if thread else []
            messages = _messages_of(self.thread_id, items, earlier)
            try:
                async with self._store.transaction() as tx:
                    if thread is None:
                        tx.create_thread(
                            Thread.with_id(self.thread_id, self.tenant_id, self.user_id)
                        )
                    for message in messages:
                        tx.create_message(message)
            except TransactionError as refused:
                if thread is None and _only_thread_taken(refused):
                    continue  # another process created it first: now in the views, checked again
                raise
            return

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove the most recent item and return it; None when there is none."""
        while True:
            messages = await self._live_messages()
            if not messages:
                return None
            last = messages[-1]
            try:
                async with self._store.transaction() as tx:
                    # Writes nothing; fails if another writer changed or deleted it since.
                    tx.update_message(last, expected_version=self._store.message_version(last.id))
                    tx.delete_message(last.id)
            except TransactionError as refused:
                if not all(
                    isinstance(e, ConflictError | DeletedError) for _, e in refused.failures
                ):
                    raise
                continue  # another pop took it: try the new last one
            return _item_of(last)

    async def clear_session(self) -> None:
        """Soft-delete every item; the log keeps them all, for audit and time travel.

        The thread stays, so the session can be written again. Up to 1,000 deletes are one
        transaction; a longer session is cleared in several.
        """
        messages = await self._live_messages()
        for start in range(0, len(messages), MAX_BATCH):
            async with self._store.transaction() as tx:
                for message in messages[start : start + MAX_BATCH]:
                    tx.delete_message(message.id)

    async def _thread(self) -> Thread | None:
        """The session's thread, None before the first write; refused if not this owner's."""
        thread = await self._store.get_thread(self.thread_id)
        if thread is not None and (
            thread.tenant_id != self.tenant_id or thread.user_id != self.user_id
        ):
            raise PermissionDeniedError(
                f"thread {self.thread_id!r} belongs to tenant {thread.tenant_id!r} and user "
                f"{thread.user_id!r}, not to this session's {self.tenant_id!r}/{self.user_id!r}"
            )
        return thread

    async def _live_messages(self) -> list[Message]:
        """The thread's live messages, with every write stored before this call folded.

        A store reads its own writes at once; another process's are folded when the
        stream delivers them, so the store first catches up with the thread.
        """
        await self._store.catch_up(self.thread_id)
        if await self._thread() is None:
            return []
        return await self._store.list_messages(self.thread_id)


def _only_thread_taken(refused: TransactionError) -> bool:
    """Whether the one refused write is the thread's create (index 0): its id was taken."""
    return len(refused.failures) == 1 and (
        refused.failures[0][0] == 0 and isinstance(refused.failures[0][1], AlreadyExistsError)
    )


def _item_of(message: Message) -> TResponseInputItem:
    """The item a message stores; an input message for one written by another writer."""
    for part in message.parts:
        if isinstance(part, CodePart) and part.language == ITEM_MEDIA_TYPE:
            return cast("TResponseInputItem", json.loads(part.code))
    return cast("TResponseInputItem", {"role": message.role.value, "content": message.content})


def _messages_of(
    thread_id: ThreadId, items: Sequence[Mapping[str, Any]], earlier: Sequence[Message]
) -> list[Message]:
    """One message per item, linked to its turn's user message and to its tool call."""
    now = datetime.now(UTC)
    turn = next((m for m in reversed(earlier) if m.role is MessageRole.USER), None)
    calls = {
        part.tool_call_id: (message.id, part.tool_name)
        for message in earlier
        for part in message.parts
        if isinstance(part, ToolCallPart)
    }
    messages: list[Message] = []
    for item in items:
        role = _ROLES.get(item.get("role", ""), MessageRole.ASSISTANT)
        parts = _parts_of(item, calls)
        parent_id, parent_type = _parent(role, item, turn, calls)
        message = Message(
            id=MessageId.new(),
            thread_id=thread_id,
            execution_id=_execution_of(turn) if role is MessageRole.ASSISTANT else None,
            parent_id=parent_id,
            parent_type=parent_type,
            role=role,
            content="\n".join(p.text for p in parts if isinstance(p, TextPart | ReasoningPart)),
            parts=(*parts, CodePart(language=ITEM_MEDIA_TYPE, code=json.dumps(item))),
            created_at=now,
            metadata=MessageMetadata(),
        )
        for part in parts:
            if isinstance(part, ToolCallPart):
                calls[part.tool_call_id] = (message.id, part.tool_name)
        if role is MessageRole.USER:
            turn = message
        messages.append(message)
    return messages


def _execution_of(turn: Message | None) -> ExecutionId | None:
    """The run answering a user message: the same id in every process, from its id."""
    if turn is None:
        return None
    return ExecutionId(f"exec_{uuid.uuid5(_NAMESPACE, turn.id).hex}")


def _parent(
    role: MessageRole,
    item: Mapping[str, Any],
    turn: Message | None,
    calls: Mapping[str, tuple[MessageId, str]],
) -> tuple[MessageId | None, ParentType]:
    """A tool output's parent is its call; the rest of a run's, the user message it answers."""
    if role is MessageRole.SYSTEM:
        return None, ParentType.SYSTEM
    call = (
        calls.get(item.get("call_id", "")) if item.get("type") == "function_call_output" else None
    )
    if call is not None:
        return call[0], ParentType.TOOL_CALL
    if role is MessageRole.ASSISTANT and turn is not None:
        return turn.id, ParentType.USER_MESSAGE
    return None, ParentType.USER_MESSAGE


def _parts_of(
    item: Mapping[str, Any], calls: Mapping[str, tuple[MessageId, str]]
) -> list[MessagePart]:
    """What a convlog reader understands of an item; the rest lives in its JSON part only."""
    kind = item.get("type", "message")
    if kind == "message":
        content = item.get("content")
        if isinstance(content, str):
            return [TextPart(text=content)]
        return [
            TextPart(text=piece[_TEXT_CONTENT[piece.get("type")]])
            for piece in content or ()
            if piece.get("type") in _TEXT_CONTENT
        ]
    if kind == "reasoning":
        return [ReasoningPart(text=s["text"]) for s in item.get("summary", ()) if "text" in s]
    if kind == "function_call":
        return [
            ToolCallPart(
                tool_call_id=item["call_id"],
                tool_name=item["name"],
                args=_json_or_text(item.get("arguments", "")),
            )
        ]
    if kind == "function_call_output":
        _, tool_name = calls.get(item["call_id"], (None, ""))
        return [
            ToolResultPart(
                tool_call_id=item["call_id"],
                tool_name=tool_name,
                result=item.get("output"),
                is_error=False,
            )
        ]
    return []


def _json_or_text(arguments: str) -> Any:  # noqa: ANN401 - any JSON value
    """A call's arguments as JSON when they parse (NaN and infinity do not), else the text."""

    def refuse(constant: str) -> None:
        raise ValueError(constant)

    try:
        return json.loads(arguments, parse_constant=refuse)
    except ValueError:
        return arguments
