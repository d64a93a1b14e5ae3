"""The Vercel AI SDK's ``UIMessage`` (npm ``ai`` 6): convlog messages to and from useChat's.

A UIMessage becomes one convlog message of the same id and role. Its parts map to convlog's
where convlog has one that gives the part back exactly; what convlog cannot hold travels in
:class:`~eventlog.CodePart` carriers whose ``language`` is one of three media types:

- ``application/vnd.ai-sdk.part+json``: a whole UI part with no convlog counterpart
  (``step-start``, ``data-*``, ``source-document``, tool states other than
  input-available, output-available and output-error);
- ``application/vnd.ai-sdk.fields+json``: the fields of the UI part made from the part
  before it that convlog's part has no room for (a text's ``state``, ``providerMetadata``);
- ``application/vnd.ai-sdk.message+json``: the UIMessage's own ``metadata``, as given.

convlog's facts (created_at, parent, execution, content, token usage and cost) go to the UI
as ``metadata.convlog``, and come back from it; convlog parts the UI has no part for (code,
images, a source without url) go as ``data-convlog-part`` parts. A tool call and its result
are one ``tool-<name>`` part, wherever convlog keeps the result. See docs/frameworks/ai-sdk.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

import msgspec
import pydantic

from eventlog import (
    CodePart,
    FilePart,
    Message,
    MessageId,
    MessageMetadata,
    MessagePart,
    MessageRole,
    ParentType,
    ReasoningPart,
    SourcePart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    ValidationError,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from contextlib import AbstractAsyncContextManager

    from projections import MessageStore, Transaction

__all__ = [
    "FIELDS_CARRIER",
    "MESSAGE_CARRIER",
    "PART_CARRIER",
    "Saved",
    "TransactionalStore",
    "UIMessage",
    "decode_ui_messages",
    "encode_ui_messages",
    "from_ui_messages",
    "load_ui_messages",
    "save_ui_messages",
    "to_ui_messages",
]

PART_CARRIER = "application/vnd.ai-sdk.part+json"
"""CodePart language of a whole UI part that has no convlog part."""
FIELDS_CARRIER = "application/vnd.ai-sdk.fields+json"
"""CodePart language of the UI-only fields of the UI part made from the part before it."""
MESSAGE_CARRIER = "application/vnd.ai-sdk.message+json"
"""CodePart language of a UIMessage's own metadata."""
_CARRIERS = (PART_CARRIER, FIELDS_CARRIER, MESSAGE_CARRIER)
_CONVLOG_PART: Literal["data-convlog-part"] = "data-convlog-part"
"""The UI part of a convlog part that the AI SDK has no part for."""
_CONTENT_SEPARATOR = "\n\n"
"""Between text parts in a message's content, when the UI made it."""

Json = Any
"""Any JSON value, as msgspec decodes it."""


class UIMessage(msgspec.Struct, kw_only=True):
    """One message as useChat holds it; :func:`encode_ui_messages` gives the AI SDK's JSON.

    Parts stay JSON objects: the AI SDK's part kinds are open (``tool-<name>``,
    ``data-<name>``), and each one converted is checked against its own shape.
    """

    id: str
    role: Literal["system", "user", "assistant"]
    metadata: Json = msgspec.UNSET
    parts: list[dict[str, Json]]


class _Text(msgspec.Struct):
    type: Literal["text", "reasoning"]
    text: str


class _Tool(msgspec.Struct, kw_only=True, rename="camel"):
    type: str
    tool_call_id: str
    tool_name: str | msgspec.UnsetType = msgspec.UNSET  # dynamic-tool only
    state: Literal["input-available", "output-available", "output-error"]
    input: Json
    output: Json = msgspec.UNSET
    error_text: str | msgspec.UnsetType = msgspec.UNSET


class _SourceUrl(msgspec.Struct, rename="camel", omit_defaults=True):
    type: Literal["source-url"]
    source_id: str
    url: str
    title: str | msgspec.UnsetType = msgspec.UNSET


class _File(msgspec.Struct, rename="camel", omit_defaults=True):
    type: Literal["file"]
    media_type: str
    url: str
    filename: str | msgspec.UnsetType = msgspec.UNSET
    provider_metadata: dict[str, dict[str, Json]] | msgspec.UnsetType = msgspec.UNSET


class _Data(msgspec.Struct):
    type: Literal["data-convlog-part"]
    data: dict[str, Json]


class _Facts(msgspec.Struct, omit_defaults=True):
    """convlog's facts of a message that a UIMessage has no field for: ``metadata.convlog``."""

    created_at: datetime | None = None
    parent_type: ParentType | None = None
    execution_id: str | None = None
    parent_id: str | None = None
    content: str | None = None
    """Only when it is not the message's text parts joined."""
    metadata: dict[str, Json] | None = None
    """MessageMetadata (token usage, cost, model...), when any of it is set."""


class _MessageCarrier(msgspec.Struct):
    convlog: dict[str, Json]
    """The facts the message had when it came from the UI: while they hold, the UI gets its
    metadata back as it gave it (none, or without ``convlog``)."""
    metadata: Json = msgspec.UNSET


_PARTS: pydantic.TypeAdapter[MessagePart] = pydantic.TypeAdapter(MessagePart)
_UI_ROLES: dict[MessageRole, Literal["system", "user", "assistant"]] = {
    MessageRole.SYSTEM: "system",
    MessageRole.USER: "user",
    MessageRole.ASSISTANT: "assistant",
}
_DEFAULT_PARENT = {
    MessageRole.USER: ParentType.USER_MESSAGE,
    MessageRole.ASSISTANT: ParentType.USER_MESSAGE,  # as Message.assistant has it
    MessageRole.SYSTEM: ParentType.SYSTEM,
}


# --- convlog to the UI ------------------------------------------------------------------------


def to_ui_messages(messages: Sequence[Message]) -> list[UIMessage]:
    """The UIMessages of convlog messages, in their order.

    A tool result joins its call's ``tool-<name>`` part (the first result after the call,
    in this list); a message that held nothing but such results has no UIMessage.
    """
    results, joined = _results(messages)
    tool_parts: dict[str, dict[str, Json]] = {}
    converted = []
    for at, message in enumerate(messages):
        parts: list[dict[str, Json]] = []
        last: dict[str, Json] | None = None  # the UI part the part before made or joined
        carrier: _MessageCarrier | None = None
        for index, part in enumerate(message.parts):
            carried = _carried(part)
            if (at, index) in joined:
                last = tool_parts[joined[at, index]]
            elif isinstance(carried, _MessageCarrier):
                carrier = carried
            elif carried is not None and _is_code(part, FIELDS_CARRIER) and last is not None:
                last.update(carried)
            else:
                if carried is not None and _is_code(part, PART_CARRIER):
                    last = carried
                elif isinstance(part, ToolCallPart):
                    last = tool_parts[part.tool_call_id] = _render(
                        part, results.get(part.tool_call_id)
                    )
                else:
                    last = _render(part)
                parts.append(last)
        if message.parts and not parts and carrier is None:
            continue  # it held only results, shown with their calls
        converted.append(
            UIMessage(
                id=str(message.id),  # msgspec encodes no str subclass
                role=_UI_ROLES[message.role],
                metadata=_metadata(message, carrier),
                parts=parts,
            )
        )
    return converted


def _results(
    messages: Sequence[Message],
) -> tuple[dict[str, ToolResultPart], dict[tuple[int, int], str]]:
    """Each call's result (the first after it), and where those results are: their call ids."""
    calls: set[str] = set()
    results: dict[str, ToolResultPart] = {}
    joined: dict[tuple[int, int], str] = {}
    for at, message in enumerate(messages):
        for index, part in enumerate(message.parts):
            if isinstance(part, ToolCallPart):
                calls.add(part.tool_call_id)
            elif (
                isinstance(part, ToolResultPart)
                and part.tool_call_id in calls
                and part.tool_call_id not in results
            ):
                results[part.tool_call_id] = part
                joined[at, index] = part.tool_call_id
    return results, joined


def _is_code(part: MessagePart, language: str) -> bool:
    return isinstance(part, CodePart) and part.language == language


def _carried(part: MessagePart) -> dict[str, Json] | _MessageCarrier | None:
    """What a carrier holds; None for any other part, or a carrier that does not decode."""
    if not isinstance(part, CodePart) or part.language not in _CARRIERS:
        return None
    try:
        if part.language == MESSAGE_CARRIER:
            return msgspec.json.decode(part.code, type=_MessageCarrier)
        carried = msgspec.json.decode(part.code, type=dict[str, Json])
    except msgspec.DecodeError:
        return None
    if part.language == PART_CARRIER and not isinstance(carried.get("type"), str):
        return None
    return carried


def _render(part: MessagePart, result: ToolResultPart | None = None) -> dict[str, Json]:
    """The UI part of a convlog part (a call with its result, if it has one)."""
    shape: msgspec.Struct
    match part:
        case TextPart(text=text):
            shape = _Text("text", text)
        case ReasoningPart(text=text):
            shape = _Text("reasoning", text)
        case ToolCallPart():
            shape = _tool(part, result)
        case SourcePart(url=str(url)):
            title = msgspec.UNSET if part.title is None else part.title
            shape = _SourceUrl("source-url", part.source_id, url, title)
        case FilePart():
            shape = _File(
                "file",
                part.mime_type,
                part.file_id,
                part.filename or msgspec.UNSET,
                {"convlog": {"sizeBytes": part.size_bytes}} if part.size_bytes else msgspec.UNSET,
            )
        case _:  # code, an image, a source without url, a result without its call
            shape = _Data(_CONVLOG_PART, part.model_dump(mode="json"))
    rendered: dict[str, Json] = msgspec.to_builtins(shape)
    return rendered


def _tool(call: ToolCallPart, result: ToolResultPart | None) -> _Tool:
    tool = _Tool(
        type=f"tool-{call.tool_name}",
        tool_call_id=call.tool_call_id,
        state="input-available",
        input=call.args,
    )
    if result is None:
        return tool
    if result.is_error:
        text = result.result
        tool.error_text = text if isinstance(text, str) else msgspec.json.encode(text).decode()
        tool.state = "output-error"
    else:
        tool.output = result.result
        tool.state = "output-available"
    return tool


def _facts(message: Message) -> dict[str, Json]:
    metadata = message.metadata.model_dump(mode="json", exclude_none=True)
    content = message.content if message.content != _content(message.parts) else None
    facts = _Facts(
        created_at=message.created_at,
        parent_type=message.parent_type,
        execution_id=None if message.execution_id is None else str(message.execution_id),
        parent_id=None if message.parent_id is None else str(message.parent_id),
        content=content,
        metadata=metadata or None,
    )
    built: dict[str, Json] = msgspec.to_builtins(facts)
    return built


def _content(parts: Sequence[MessagePart]) -> str:
    return _CONTENT_SEPARATOR.join(part.text for part in parts if isinstance(part, TextPart))


def _metadata(message: Message, carrier: _MessageCarrier | None) -> Json:
    """The UI's own metadata while convlog's facts are as it left them; else with the facts."""
    facts = _facts(message)
    if carrier is None:
        return {"convlog": facts}
    if carrier.convlog == facts:
        return carrier.metadata
    given = carrier.metadata if isinstance(carrier.metadata, dict) else {}
    return {**given, "convlog": facts}


# --- the UI to convlog ------------------------------------------------------------------------


def from_ui_messages(thread_id: str, ui_messages: Sequence[UIMessage]) -> list[Message]:
    """The convlog messages of UIMessages, for thread ``thread_id``; to_ui_messages inverts it.

    A message without ``metadata.convlog`` is created now, a reply to a user message (the
    system prompt: from the system), in no execution. ValidationError for an id convlog
    cannot hold or a part without a ``type``.
    """
    calls: set[str] = set()
    return [_message(thread_id, ui, None, calls) for ui in ui_messages]


def _message(thread_id: str, ui: UIMessage, base: Message | None, calls: set[str]) -> Message:
    """The message of ``ui``; ``base`` (its stored version) gives the facts ``ui`` lacks."""
    parts: list[MessagePart] = []
    for part in ui.parts:
        if not isinstance(part.get("type"), str):
            raise ValidationError(f"UIMessage {ui.id!r}: a part without a string type: {part!r}")
        native = _native(part, calls)
        if native is None or not (rendered := _render(*native)).keys() <= part.keys():
            parts.append(_carrier(PART_CARRIER, part))
            continue
        first, result = native
        parts.extend([first] if result is None else [first, result])
        if isinstance(first, ToolCallPart):
            calls.add(first.tool_call_id)
        fields = {key: value for key, value in part.items() if rendered.get(key) != value}
        if fields:
            parts.append(_carrier(FIELDS_CARRIER, fields))
    role = MessageRole(ui.role)
    given = ui.metadata.get("convlog") if isinstance(ui.metadata, dict) else None
    facts = _given_facts(ui.id, given) if given is not None else _base_facts(base)
    message = Message(
        id=ui.id,
        thread_id=thread_id,
        execution_id=facts.execution_id,
        parent_id=facts.parent_id,
        parent_type=facts.parent_type or _DEFAULT_PARENT[role],
        role=role,
        content=_content(parts) if facts.content is None else facts.content,
        parts=tuple(parts),
        created_at=facts.created_at or datetime.now(UTC),
        metadata=MessageMetadata.model_validate(facts.metadata or {}),
    )
    built = _facts(message)
    if ui.metadata == {"convlog": built}:
        return message  # what to_ui_messages makes of it without a carrier
    carrier = _MessageCarrier(convlog=built, metadata=ui.metadata)
    return message.with_parts([*message.parts, _carrier(MESSAGE_CARRIER, carrier)])


_Native = tuple[MessagePart, ToolResultPart | None]
"""A UI part's convlog part, and the result when it is a tool call that has one."""


def _native(part: dict[str, Json], calls: set[str]) -> _Native | None:
    """The convlog part a UI part is, or None when convlog has none for it."""
    kind: str = part["type"]
    converters: dict[str, Callable[[], MessagePart]] = {
        "text": lambda: TextPart(text=msgspec.convert(part, _Text).text),
        "reasoning": lambda: ReasoningPart(text=msgspec.convert(part, _Text).text),
        "source-url": lambda: _native_source(msgspec.convert(part, _SourceUrl)),
        "file": lambda: _native_file(msgspec.convert(part, _File)),
        _CONVLOG_PART: lambda: _PARTS.validate_python(msgspec.convert(part, _Data).data),
    }
    try:
        if kind.startswith("tool-") or kind == "dynamic-tool":
            return _native_tool(msgspec.convert(part, _Tool), calls)
        if kind not in converters:
            return None
        held = converters[kind]()
    except (msgspec.ValidationError, pydantic.ValidationError, ValidationError):
        return None
    # A result goes back as itself only where no call before it would take it.
    if isinstance(held, ToolResultPart) and held.tool_call_id in calls:
        return None
    return held, None


def _native_tool(tool: _Tool, calls: set[str]) -> _Native | None:
    if tool.type == "dynamic-tool":
        if isinstance(tool.tool_name, msgspec.UnsetType):
            return None
        name = tool.tool_name
    else:
        name = tool.type.removeprefix("tool-")
    if tool.tool_call_id in calls:
        return None  # a second call of one id: its result would go to the first
    call = ToolCallPart(tool_call_id=tool.tool_call_id, tool_name=name, args=tool.input)
    if tool.state == "input-available":
        return call, None
    if tool.state == "output-error":
        if isinstance(tool.error_text, msgspec.UnsetType):
            return None
        result, is_error = tool.error_text, True
    elif tool.output is msgspec.UNSET:
        return None
    else:
        result, is_error = tool.output, False
    return call, ToolResultPart(
        tool_call_id=call.tool_call_id, tool_name=name, result=result, is_error=is_error
    )


def _native_source(source: _SourceUrl) -> SourcePart:
    title = None if isinstance(source.title, msgspec.UnsetType) else source.title
    return SourcePart(source_id=source.source_id, url=source.url, title=title)


def _native_file(file: _File) -> FilePart:
    """The file's url is convlog's file_id: the reference by which the UI reaches the bytes."""
    held = {} if isinstance(file.provider_metadata, msgspec.UnsetType) else file.provider_metadata
    size = held.get("convlog", {}).get("sizeBytes", 0)
    return FilePart(
        file_id=file.url,
        filename="" if isinstance(file.filename, msgspec.UnsetType) else file.filename,
        mime_type=file.media_type,
        size_bytes=size,
    )


def _carrier(language: str, held: object) -> CodePart:
    return CodePart(language=language, code=msgspec.json.encode(held).decode())


def _given_facts(message_id: str, given: Json) -> _Facts:
    try:
        return msgspec.convert(given, _Facts)
    except msgspec.ValidationError as err:
        raise ValidationError(f"UIMessage {message_id!r}: metadata.convlog: {err}") from None


def _base_facts(base: Message | None) -> _Facts:
    if base is None:
        return _Facts()
    return _Facts(
        created_at=base.created_at,
        parent_type=base.parent_type,
        execution_id=base.execution_id,
        parent_id=base.parent_id,
        metadata=base.metadata.model_dump(mode="json", exclude_none=True),
    )


# --- JSON --------------------------------------------------------------------------------------


def encode_ui_messages(ui_messages: Sequence[UIMessage]) -> bytes:
    """The AI SDK's JSON of UIMessages (what useChat sends and ``validateUIMessages`` takes)."""
    return msgspec.json.encode(ui_messages)


def decode_ui_messages(data: bytes | str) -> list[UIMessage]:
    """UIMessages from the AI SDK's JSON; ValidationError saying where it is not one."""
    try:
        return msgspec.json.decode(data, type=list[UIMessage])
    except msgspec.DecodeError as err:
        raise ValidationError(f"not a list of UIMessages: {err}") from None


# --- stores ------------------------------------------------------------------------------------


class TransactionalStore(Protocol):
    """A store that saving needs: InMemoryMessageStore and JetStreamMessageStore are."""

    async def list_messages(self, thread_id: str, include_deleted: bool = False) -> list[Message]:  # noqa: FBT001, FBT002 - the seed's signature
        """The thread's messages in log order."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """Writes recorded in the block, stored as one atomic batch."""
        ...


@dataclass(frozen=True)
class Saved:
    """What :func:`save_ui_messages` wrote: ids of the messages created and updated."""

    created: tuple[MessageId, ...]
    updated: tuple[MessageId, ...]


async def load_ui_messages(store: MessageStore, thread_id: str) -> list[UIMessage]:
    """The thread's live messages as UIMessages (for useChat's ``messages``)."""
    return to_ui_messages(await store.list_messages(thread_id))


async def save_ui_messages(
    store: TransactionalStore, thread_id: str, ui_messages: Sequence[UIMessage]
) -> Saved:
    """Store UIMessages into a live thread, in one transaction: new ids created, changed updated.

    A message the thread has and the list lacks is kept (saving never deletes); an
    unchanged one is not written. A tool result the thread keeps in another message (the
    one a tool call's result came in) stays there and is not copied into the call's.
    """
    stored: dict[str, Message] = {
        message.id: message for message in await store.list_messages(thread_id)
    }
    results = [
        (message.id, part)
        for message in stored.values()
        for part in message.parts
        if isinstance(part, ToolResultPart)
    ]
    calls: set[str] = set()
    created: list[MessageId] = []
    updated: list[MessageId] = []
    async with store.transaction() as tx:
        for ui in ui_messages:
            base = stored.get(ui.id)
            message = _message(thread_id, ui, base, calls)
            if base is None:
                tx.create_message(message)
                created.append(message.id)
                continue
            elsewhere = [part for holder, part in results if holder != message.id]
            message = message.with_parts([p for p in message.parts if p not in elsewhere])
            if _changed(base, message):
                tx.update_message(message)
                updated.append(message.id)
    return Saved(tuple(created), tuple(updated))


_UPDATED = ("content", "parts", "metadata", "parent_id", "parent_type", "role", "execution_id")
"""What update_message replaces, and what it refuses to change (so the store says so)."""


def _changed(stored: Message, message: Message) -> bool:
    """Whether the message differs from the stored one in anything an update would write."""
    return any(getattr(stored, name) != getattr(message, name) for name in _UPDATED)
