"""Pydantic AI's ``ConversationStore`` on convlog: a conversation is a thread, an entry a message.

``pip install "convlog[pydantic-ai]"``, then::

    conversations = ConvlogConversationStore(store, tenant_id="acme", user_id="alice")
    conversation = await conversations.load(cid) or Conversation(conversation_id=cid)
    result = await agent.run(prompt, conversation=conversation)
    await conversations.save(result)

Pydantic AI works out what a save appends, where a history branches and what a fork shares;
this backend implements its five primitives (``read_record``, ``read_records``,
``write_record``, ``delete_record``, ``read_entry``) on a :class:`JetStreamMessageStore`:

- Each :class:`~pydantic_ai.conversation_store.ConversationEntry` is a convlog message with the
  entry's id and its ``parent_id``, so branches and forks are messages' parents. Its parts are
  the readable ones (text, reasoning, tool calls and results) that ``convlog replay`` and
  ``execution_trail`` show, plus a :class:`~eventlog.CodePart` of language
  :data:`MESSAGE_MEDIA_TYPE` holding the message as ``ModelMessagesTypeAdapter`` dumps it: that
  JSON is what is read back, so a message round-trips exactly.
- The record (head, usage, deferred tool requests, scope, branches, revision) is one message
  of the thread, a :class:`~eventlog.CodePart` of language :data:`RECORD_MEDIA_TYPE`, updated
  by every save as the last write of the save's transaction.
- A save is one ``store.transaction()``: the new entries and the record, all or none. The
  revision it expects is checked in the same decision as the batch's expected thread position
  (the record's ``expected_version``), so a writer that got in first makes it raise
  :class:`~pydantic_ai.conversation_store.ConversationConflict` with nothing written.
- Deleting a conversation soft-deletes its thread; its entries stay readable, since forks may
  share them and the log keeps them anyway. The same conversation id saved again gets a new
  thread (the next generation), and a new revision.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import pydantic
import pydantic_core
from pydantic_ai.conversation_store import (
    ConversationConflict,
    ConversationEntry,
    ConversationRecord,
    ConversationStore,
)
from pydantic_ai.messages import (
    ERROR_OUTCOMES,
    BaseToolCallPart,
    BaseToolReturnPart,
    BinaryContent,
    ImageUrl,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    SystemPromptPart,
    ThinkingPart,
    UserPromptPart,
)
from pydantic_ai.messages import TextPart as ModelTextPart

from eventlog import (
    AlreadyExistsError,
    CodePart,
    ConflictError,
    DeletedError,
    ExecutionId,
    FinishReason,
    ImagePart,
    Message,
    MessageId,
    MessageMetadata,
    MessagePart,
    MessageRole,
    ParentType,
    ReasoningPart,
    TenantId,
    TextPart,
    Thread,
    ThreadId,
    TokenUsage,
    ToolCallPart,
    ToolResultPart,
    UserId,
    ValidationError,
)
from projections.errors import TransactionError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from projections.store import JetStreamMessageStore

__all__ = ["MESSAGE_MEDIA_TYPE", "RECORD_MEDIA_TYPE", "ConvlogConversationStore"]

MESSAGE_MEDIA_TYPE: Final = "application/vnd.pydantic-ai.message+json"
"""The language of the CodePart holding an entry's message, exactly as Pydantic AI dumps it."""

RECORD_MEDIA_TYPE: Final = "application/vnd.pydantic-ai.conversation-record+json"
"""The language of the CodePart holding a conversation's record."""

_NAMESPACE: Final = uuid.UUID("6f1f6f0e-3c55-4d8b-9a53-5d0c8a1f2e47")
"""Of the uuid5s that name a conversation's threads and record messages."""

_RECORDS: Final = pydantic.TypeAdapter(ConversationRecord)

_PAGE: Final = 500
"""Threads listed a page at a time by ``read_records``."""

_FINISH: Final = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "content_filter": FinishReason.CONTENT_FILTER,
    "tool_call": FinishReason.TOOL_CALLS,
    "error": FinishReason.ERROR,
}

_U32_MAX: Final = 2**32 - 1

_LOST_RACE: Final = (ConflictError, AlreadyExistsError, DeletedError)
"""What a write that another writer got in before fails with, once decided again."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Located:
    """Where a conversation lives: its live thread and record, or the thread a save would make."""

    thread_id: ThreadId
    thread: Thread | None
    record_message: Message | None
    record_version: int | None
    """The record message's version, read with it: what the next write expects."""
    record: ConversationRecord | None


class ConvlogConversationStore(ConversationStore):
    """Pydantic AI conversations of one user of one tenant, as threads of a convlog store.

    Every read is confined to threads of that tenant and user; a store opened with another
    ``tenant_id`` is refused.
    """

    def __init__(self, store: JetStreamMessageStore, *, tenant_id: str, user_id: str) -> None:
        if store.tenant_id is not None and store.tenant_id != tenant_id:
            raise ValidationError(
                f"the store is confined to tenant {store.tenant_id!r}, not {tenant_id!r}"
            )
        self.store = store
        self.tenant_id = TenantId.from_string(tenant_id)
        self.user_id = UserId.from_string(user_id)

    # --- Pydantic AI's primitives --------------------------------------------------------

    async def read_record(self, conversation_id: str) -> ConversationRecord | None:
        """The conversation's record, or None if it has none (never saved, or deleted)."""
        return (await self._located(conversation_id)).record

    async def read_records(
        self, *, scope: str | None = None, limit: int | None = None
    ) -> Sequence[ConversationRecord]:
        """The user's conversations (or those of ``scope``), newest ``updated_at`` first."""
        records: list[ConversationRecord] = []
        for offset in itertools.count(0, _PAGE):
            page = self.store.views.list_threads(self.tenant_id, self.user_id, _PAGE, offset)
            for thread in page:
                record = _record_of(self.store.views.message(_record_id(thread.id)))
                if record is not None and (scope is None or record.scope == scope):
                    records.append(record)
            if len(page) < _PAGE:
                break
        records.sort(key=lambda record: record.updated_at, reverse=True)
        return records[:limit]

    async def write_record(
        self,
        record: ConversationRecord,
        *,
        new_entries: Sequence[ConversationEntry] = (),
        expected_revision: str | None,
    ) -> None:
        """Store the entries and the record in one transaction, if the revision still holds."""
        conversation_id = record.conversation_id
        located = await self._located(conversation_id)
        stored = located.record.revision if located.record is not None else None
        if stored != expected_revision:
            raise ConversationConflict(conversation_id)
        new_ids = {entry.id for entry in new_entries}
        if (
            record.head_id is not None
            and record.head_id not in new_ids
            and self._entry_message(record.head_id) is None
        ):
            raise ConversationConflict(conversation_id)
        thread_id = located.thread_id
        async with _LostRace(conversation_id), self.store.transaction() as tx:
            if located.thread is None:
                now = datetime.now(UTC)
                tx.create_thread(
                    Thread(
                        id=thread_id,
                        tenant_id=self.tenant_id,
                        user_id=self.user_id,
                        title=conversation_id,
                        created_at=now,
                        updated_at=now,
                    )
                )
            for entry in new_entries:
                tx.create_message(_entry_to_message(thread_id, entry))
            if located.record_message is None:
                tx.create_message(_record_message(thread_id, record))
            else:
                tx.update_message(
                    located.record_message.with_parts([_record_part(record)]),
                    expected_version=located.record_version,
                )

    async def delete_record(self, conversation_id: str, *, expected_revision: str) -> None:
        """Soft-delete the conversation's thread; its entries stay (forks may share them)."""
        located = await self._located(conversation_id)
        if located.record is None or located.record.revision != expected_revision:
            raise ConversationConflict(conversation_id)
        assert located.record_message is not None  # noqa: S101 - a record is read from it
        async with _LostRace(conversation_id), self.store.transaction() as tx:
            # Unchanged, so it writes nothing: its version is checked in the same decision
            # as the delete, against the same position of the thread.
            tx.update_message(located.record_message, expected_version=located.record_version)
            tx.delete_thread(located.thread_id)

    async def read_entry(self, entry_id: str) -> ConversationEntry:
        """The entry with this id; KeyError (a LookupError) if this user has none such."""
        message = self._entry_message(entry_id)
        if message is None:
            raise KeyError(entry_id)
        exact = next(
            part.code
            for part in message.parts
            if isinstance(part, CodePart) and part.language == MESSAGE_MEDIA_TYPE
        )
        return ConversationEntry(
            id=str(message.id),
            parent_id=None if message.parent_id is None else str(message.parent_id),
            message=ModelMessagesTypeAdapter.validate_json(exact)[0],
        )

    # --- where things are ----------------------------------------------------------------

    def thread_id(self, conversation_id: str, generation: int = 0) -> ThreadId:
        """The thread of a conversation's ``generation`` (one more each time it is deleted).

        Derived from tenant, user and conversation id, so no two of them share a thread.
        """
        key = json.dumps([self.tenant_id, self.user_id, conversation_id, generation])
        return ThreadId.from_string(f"thread_{uuid.uuid5(_NAMESPACE, key).hex}")

    async def _located(self, conversation_id: str) -> _Located:
        """The conversation's live thread, once the views hold what other processes wrote.

        Each generation's thread is caught up with the stream in turn (another process may
        have saved or deleted it a moment ago), then all is read from the views in one go.
        """
        for generation in itertools.count():
            thread_id = self.thread_id(conversation_id, generation)
            await self.store.catch_up(thread_id)
            thread = self.store.views.thread_status(thread_id)
            if thread is None or not thread[1]:
                break
        return self._locate(conversation_id)

    def _locate(self, conversation_id: str) -> _Located:
        """The conversation's live thread, read from the views in one go (no await)."""
        views = self.store.views
        for generation in itertools.count():
            thread_id = self.thread_id(conversation_id, generation)
            thread = views.thread(thread_id)
            if thread is None:
                return _Located(thread_id, None, None, None, None)
            if thread.deleted_at is None:
                message = views.message(_record_id(thread_id))
                return _Located(
                    thread_id,
                    thread,
                    message,
                    views.message_version(_record_id(thread_id)),
                    _record_of(message),
                )
        raise AssertionError  # pragma: no cover - itertools.count() never ends

    def _entry_message(self, entry_id: str) -> Message | None:
        """The message of an entry of this user's conversations, or None."""
        message = self.store.views.message(entry_id)
        if message is None or not any(
            isinstance(part, CodePart) and part.language == MESSAGE_MEDIA_TYPE
            for part in message.parts
        ):
            return None
        thread = self.store.views.thread(message.thread_id)
        if thread is None or (thread.tenant_id, thread.user_id) != (self.tenant_id, self.user_id):
            return None
        return message


class _LostRace:
    """Turns a write that another writer got in before into ConversationConflict."""

    def __init__(self, conversation_id: str) -> None:
        self._conversation_id = conversation_id

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, _type: object, error: BaseException | None, _tb: object) -> None:
        lost = isinstance(error, _LOST_RACE) or (
            isinstance(error, TransactionError)
            and any(isinstance(failure, _LOST_RACE) for _, failure in error.failures)
        )
        if lost:
            raise ConversationConflict(self._conversation_id) from error


def _record_id(thread_id: str) -> MessageId:
    """The id of the message holding the record of the conversation in ``thread_id``."""
    return MessageId.from_string(f"msg_{uuid.uuid5(_NAMESPACE, thread_id).hex}")


def _record_part(record: ConversationRecord) -> CodePart:
    return CodePart(language=RECORD_MEDIA_TYPE, code=_RECORDS.dump_json(record).decode())


def _record_message(thread_id: ThreadId, record: ConversationRecord) -> Message:
    return Message(
        id=_record_id(thread_id),
        thread_id=thread_id,
        parent_type=ParentType.SYSTEM,
        role=MessageRole.SYSTEM,
        content="pydantic-ai conversation record",
        parts=(_record_part(record),),
        created_at=datetime.now(UTC),
        metadata=MessageMetadata(),
    )


def _record_of(message: Message | None) -> ConversationRecord | None:
    """The record a record message holds; None for no message or any other message."""
    if message is None:
        return None
    for part in message.parts:
        if isinstance(part, CodePart) and part.language == RECORD_MEDIA_TYPE:
            return _RECORDS.validate_json(part.code)
    return None


def _entry_to_message(thread_id: ThreadId, entry: ConversationEntry) -> Message:
    """The convlog message of an entry: readable parts, then the exact JSON."""
    model_message = entry.message
    if isinstance(model_message, ModelResponse):
        readable = _response_parts(model_message)
        role, parent_type = MessageRole.ASSISTANT, ParentType.USER_MESSAGE
        metadata = _response_metadata(model_message)
    else:
        readable = _request_parts(model_message)
        role, parent_type = _request_role(model_message, has_parent=entry.parent_id is not None)
        metadata = MessageMetadata()
    try:
        exact = ModelMessagesTypeAdapter.dump_json([model_message]).decode()
    except pydantic_core.PydanticSerializationError as err:
        raise ValidationError(
            f"entry {entry.id!r} holds a value Pydantic AI cannot write as JSON, so it "
            f"cannot be stored: {err}"
        ) from err
    timestamp = model_message.timestamp
    return Message(
        id=MessageId.from_string(entry.id),
        thread_id=thread_id,
        execution_id=None
        if model_message.run_id is None
        else ExecutionId.from_string(model_message.run_id),
        parent_id=None if entry.parent_id is None else MessageId.from_string(entry.parent_id),
        parent_type=parent_type,
        role=role,
        content="\n\n".join(part.text for part in readable if isinstance(part, TextPart)),
        parts=(*readable, CodePart(language=MESSAGE_MEDIA_TYPE, code=exact)),
        created_at=timestamp if timestamp is not None and timestamp.tzinfo else datetime.now(UTC),
        metadata=metadata,
    )


def _request_role(request: ModelRequest, *, has_parent: bool) -> tuple[MessageRole, ParentType]:
    """A user's turn, the system prompt alone, or tool results (the agent ran the tools)."""
    if any(isinstance(part, UserPromptPart) for part in request.parts):
        role = MessageRole.USER
    elif request.parts and all(isinstance(part, SystemPromptPart) for part in request.parts):
        role = MessageRole.SYSTEM
    elif any(isinstance(part, BaseToolReturnPart | RetryPromptPart) for part in request.parts):
        return MessageRole.ASSISTANT, ParentType.TOOL_CALL
    else:
        role = MessageRole.USER
    if has_parent:
        return role, ParentType.ASSISTANT_MESSAGE
    return role, ParentType.SYSTEM if role is MessageRole.SYSTEM else ParentType.USER_MESSAGE


def _request_parts(request: ModelRequest) -> list[MessagePart]:
    parts: list[MessagePart] = []
    for part in request.parts:
        if isinstance(part, SystemPromptPart):
            parts.append(TextPart(text=part.content))
        elif isinstance(part, UserPromptPart):
            contents = [part.content] if isinstance(part.content, str) else part.content
            for content in contents:
                if isinstance(content, str):
                    parts.append(TextPart(text=content))
                elif isinstance(content, ImageUrl):
                    parts.append(ImagePart(image_id=content.identifier, url=content.url))
        elif isinstance(part, BaseToolReturnPart):
            parts.append(_tool_result(part))
        elif isinstance(part, RetryPromptPart) and part.tool_name is not None:
            parts.append(
                ToolResultPart(
                    tool_call_id=part.tool_call_id,
                    tool_name=part.tool_name,
                    result=part.model_response(),
                    is_error=True,
                )
            )
    return parts


def _tool_result(part: BaseToolReturnPart) -> ToolResultPart:
    return ToolResultPart(
        tool_call_id=part.tool_call_id,
        tool_name=part.tool_name,
        result=_readable(part.content),
        is_error=part.outcome in ERROR_OUTCOMES,
    )


def _readable(content: object) -> object:
    """The content as JSON, each binary value named by its media type and size, not copied.

    The exact JSON beside the parts already holds the bytes; a second copy, in base64,
    would halve what fits in one event.
    """
    if isinstance(content, BinaryContent):
        return {"binary": content.media_type, "size": len(content.data)}
    if isinstance(content, bytes | bytearray):
        return {"binary": "application/octet-stream", "size": len(content)}
    if isinstance(content, list | tuple):
        return [_readable(item) for item in content]
    if isinstance(content, dict):
        return {str(key): _readable(value) for key, value in content.items()}
    return pydantic_core.to_jsonable_python(content, serialize_unknown=True)


def _response_parts(response: ModelResponse) -> list[MessagePart]:
    parts: list[MessagePart] = []
    for part in response.parts:
        if isinstance(part, ModelTextPart):
            parts.append(TextPart(text=part.content))
        elif isinstance(part, ThinkingPart):
            parts.append(ReasoningPart(text=part.content))
        elif isinstance(part, BaseToolCallPart):
            parts.append(
                ToolCallPart(
                    tool_call_id=part.tool_call_id,
                    tool_name=part.tool_name,
                    args=part.args_as_dict(),
                )
            )
        elif isinstance(part, BaseToolReturnPart):  # a provider's built-in tool's result
            parts.append(_tool_result(part))
    return parts


def _response_metadata(response: ModelResponse) -> MessageMetadata:
    usage = response.usage
    total = usage.input_tokens + usage.output_tokens
    # convlog counts tokens in a u32, as the seed does: a larger count is left out.
    tokens = (
        TokenUsage.new(usage.input_tokens, usage.output_tokens) if 0 < total <= _U32_MAX else None
    )
    return MessageMetadata(
        model=response.model_name,
        provider=response.provider_name,
        token_usage=tokens,
        finish_reason=None if response.finish_reason is None else _FINISH[response.finish_reason],
    )
