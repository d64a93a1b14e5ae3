"""Threads, messages and their parts: the domain models, JSON-compatible with the Rust seed.

Field order is the seed's serde field order, because it is the JSON output order.
"""

import copy
import enum
import reprlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NoReturn, Self

import pydantic
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    Strict,
)
from pydantic_core import PydanticCustomError

from eventlog.errors import ValidationError
from eventlog.ids import ExecutionId, MessageId, TenantId, ThreadId, UserId

__all__ = [
    "I64",
    "U32",
    "U64",
    "CodePart",
    "CostInfo",
    "ExecutionStats",
    "FilePart",
    "FinishReason",
    "ImagePart",
    "Message",
    "MessageMetadata",
    "MessagePart",
    "MessageRole",
    "ParentType",
    "ReasoningPart",
    "SourcePart",
    "TextPart",
    "Thread",
    "TokenUsage",
    "ToolCallPart",
    "ToolResultPart",
]

# Strict, like serde: JSON `1.0`, `true` and `"1"` are not integers.
U32 = Annotated[int, Strict(), Field(ge=0, le=2**32 - 1)]
U64 = Annotated[int, Strict(), Field(ge=0, le=2**64 - 1)]
I64 = Annotated[int, Strict(), Field(ge=-(2**63), le=2**63 - 1)]
# serde's f64 takes JSON ints but not strings; serde_json cannot round-trip NaN or infinity.
_F64 = Annotated[float, Strict(), Field(allow_inf_nan=False)]
_Bool = Annotated[bool, Strict()]


def _no_numbers(value: object) -> object:
    # Pydantic would read a number as Unix time; serde's DateTime<Utc> takes only strings.
    if isinstance(value, int | float):
        raise PydanticCustomError(
            "datetime_type", "a timestamp must be an RFC 3339 string or an aware datetime"
        )
    return value


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


# RFC 3339 in, `...Z` out. Python datetimes hold microseconds, so serde's 9-digit fractions
# are truncated on input. Naive times are rejected, as serde's DateTime<Utc> rejects them.
_Timestamp = Annotated[AwareDatetime, BeforeValidator(_no_numbers), AfterValidator(_to_utc)]


def _now() -> datetime:
    return datetime.now(UTC)


def _read_only(*_: object, **__: object) -> NoReturn:
    raise TypeError("JSON values of a stored message are read-only; copy.deepcopy() to edit")


class _FrozenDict(dict[str, Any]):
    """A JSON object that refuses changes, so a returned message cannot alter the view."""

    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only

    def __reduce__(self) -> tuple[type, tuple[dict[str, Any]]]:
        return (_FrozenDict, (dict(self),))

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return {key: copy.deepcopy(value, memo) for key, value in self.items()}


class _FrozenList(list[Any]):
    """A JSON array that refuses changes."""

    __slots__ = ()
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _read_only
    append = extend = insert = pop = remove = clear = sort = reverse = _read_only

    def __reduce__(self) -> tuple[type, tuple[list[Any]]]:
        return (_FrozenList, (list(self),))

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return [copy.deepcopy(value, memo) for value in self]


def _utf8_key(key: str) -> str:
    # pydantic would write a lone surrogate in a key as U+FFFD, silently: refuse it instead.
    try:
        key.encode()
    except UnicodeEncodeError:
        raise ValueError(
            f"the key {key!r} holds a lone surrogate, which UTF-8 cannot store"
        ) from None
    return key


def _freeze(value: JsonValue) -> JsonValue:
    if isinstance(value, dict):
        return _FrozenDict({_utf8_key(key): _freeze(item) for key, item in value.items()})
    if isinstance(value, list):
        return _FrozenList(_freeze(item) for item in value)
    return value


# Tool arguments and results: any JSON, deeply read-only once validated.
_Json = Annotated[JsonValue, AfterValidator(_freeze)]


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 80  # what was given, in a sentence: never 1 MB of it


def _field_errors(err: pydantic.ValidationError) -> ValidationError:
    """Turn pydantic's error into convlog's: a clause per field, named from the model down."""
    clauses = [
        ".".join([err.title, *map(str, error["loc"])])
        + f": {error['msg'].rstrip('.')}"
        + ("" if error["type"] == "missing" else f" (given {_SHORT.repr(error['input'])})")
        for error in err.errors(include_url=False)
    ]
    values = "the value" if len(clauses) == 1 else "the values"
    return ValidationError("; ".join(clauses) + f"; correct {values} and build it again.")


class _Model(BaseModel):
    # Frozen, so projected views can share one object without copies; extra fields are
    # ignored, as serde does.
    model_config = ConfigDict(frozen=True, extra="ignore")

    def __init__(self, /, **data: Any) -> None:  # noqa: ANN401 - field values of any type
        """Validate as pydantic does, raising convlog's ValidationError (a ConvlogError)."""
        try:
            super().__init__(**data)
        except pydantic.ValidationError as err:
            raise _field_errors(err) from err

    # pydantic's marker for an __init__ that only wraps its own: nested models are still
    # validated in one pass, without a call to this for each.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    def _replace(self, **changes: Any) -> Self:  # noqa: ANN401 - field values of any type
        """Return a copy with `changes`, validated (model_copy(update=...) skips validation)."""
        try:
            return self.model_validate({**dict(self), **changes})
        except pydantic.ValidationError as err:
            raise _field_errors(err) from err


class MessageRole(enum.StrEnum):
    """Who wrote a message."""

    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"


class FinishReason(enum.StrEnum):
    """Why the model stopped generating."""

    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"
    CONTENT_FILTER = "content_filter"
    ERROR = "error"


class ParentType(enum.StrEnum):
    """What a message's parent_id points at, so agent runs can be traced back."""

    USER_MESSAGE = "user_message"  # a reply to (or a turn started by) a user message
    ASSISTANT_MESSAGE = "assistant_message"  # follows an assistant message, e.g. a follow-up
    TOOL_CALL = "tool_call"  # produced by a tool call, e.g. a message carrying its result
    EXECUTION = "execution"  # written by an agent execution (a step or sub-agent)
    SYSTEM = "system"  # injected by the platform, e.g. the system prompt


class TextPart(_Model):
    """Plain text shown to the user."""

    type: Literal["text"] = "text"
    text: str


class ReasoningPart(_Model):
    """The model's reasoning, kept apart from the answer."""

    type: Literal["reasoning"] = "reasoning"
    text: str


class ToolCallPart(_Model):
    """A call the model made to a tool, with its JSON arguments."""

    type: Literal["tool-call"] = "tool-call"
    tool_call_id: str
    tool_name: str
    args: _Json


class ToolResultPart(_Model):
    """What a tool returned for a call, or its error."""

    type: Literal["tool-result"] = "tool-result"
    tool_call_id: str
    tool_name: str
    result: _Json
    is_error: _Bool


class SourcePart(_Model):
    """A source the answer cites."""

    type: Literal["source"] = "source"
    source_id: str
    url: str | None = None
    title: str | None = None


class FilePart(_Model):
    """A reference to a stored file; the bytes live elsewhere."""

    type: Literal["file"] = "file"
    file_id: str
    filename: str
    mime_type: str
    size_bytes: U64


class ImagePart(_Model):
    """A reference to an image."""

    type: Literal["image"] = "image"
    image_id: str
    url: str | None = None
    alt_text: str | None = None


class CodePart(_Model):
    """A block of code, with its language when known."""

    type: Literal["code"] = "code"
    language: str | None = None
    code: str


MessagePart = Annotated[
    TextPart
    | ReasoningPart
    | ToolCallPart
    | ToolResultPart
    | SourcePart
    | FilePart
    | ImagePart
    | CodePart,
    Field(discriminator="type"),
]
"""One piece of a message, tagged by `type` like serde's `#[serde(tag = "type")]`."""


class TokenUsage(_Model):
    """Tokens an LLM call consumed."""

    prompt_tokens: U32
    completion_tokens: U32
    total_tokens: U32

    @classmethod
    def new(cls, prompt: int, completion: int) -> Self:
        """Return usage with the total computed, as the seed's TokenUsage::new does."""
        return cls(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        )


class ExecutionStats(_Model):
    """Counts of what an agent execution did."""

    llm_calls: U32 = 0
    tool_calls: U32 = 0
    sub_agents: U32 = 0
    steps: U32 = 0
    decisions: U32 = 0
    artifacts: U32 = 0


class CostInfo(_Model):
    """What producing a message cost."""

    input_cost: _F64 = 0.0
    output_cost: _F64 = 0.0
    total_cost: _F64 = 0.0
    currency: str = "USD"


class MessageMetadata(_Model):
    """Optional facts about how a message was produced; everything defaults to None."""

    completed_at: I64 | None = None  # epoch milliseconds in the seed, unlike the timestamps
    duration_ms: U64 | None = None
    model: str | None = None
    provider: str | None = None
    token_usage: TokenUsage | None = None
    stats: ExecutionStats | None = None
    finish_reason: FinishReason | None = None
    cost: CostInfo | None = None


class Thread(_Model):
    """A conversation owned by one user of one tenant."""

    id: ThreadId
    tenant_id: TenantId
    user_id: UserId
    title: str | None = None
    created_at: _Timestamp
    updated_at: _Timestamp
    deleted_at: _Timestamp | None = None

    @classmethod
    def new(cls, tenant_id: str, user_id: str) -> Self:
        """Return a new untitled thread with a fresh id, created now."""
        return cls.with_id(ThreadId.new(), tenant_id, user_id)

    @classmethod
    def with_id(cls, id: str, tenant_id: str, user_id: str) -> Self:  # noqa: A002 - seed's name
        """Return a new untitled thread with the given id, created now."""
        now = _now()
        return cls(
            id=ThreadId.from_string(id),
            tenant_id=TenantId.from_string(tenant_id),
            user_id=UserId.from_string(user_id),
            created_at=now,
            updated_at=now,
        )

    def is_deleted(self) -> bool:
        """Return whether the thread is soft-deleted."""
        return self.deleted_at is not None


class Message(_Model):
    """One message in a thread, with its parts and metadata."""

    id: MessageId
    thread_id: ThreadId
    execution_id: ExecutionId | None = None
    parent_id: MessageId | None = None
    parent_type: ParentType
    role: MessageRole
    content: str
    parts: tuple[MessagePart, ...]
    created_at: _Timestamp
    updated_at: _Timestamp | None = None
    deleted_at: _Timestamp | None = None
    metadata: MessageMetadata

    @classmethod
    def _text(
        cls,
        thread_id: str,
        content: str,
        role: MessageRole,
        parent_type: ParentType,
        *,
        execution_id: str | None = None,
        parent_id: str | None = None,
    ) -> Self:
        return cls(
            id=MessageId.new(),
            thread_id=ThreadId.from_string(thread_id),
            execution_id=None if execution_id is None else ExecutionId.from_string(execution_id),
            parent_id=None if parent_id is None else MessageId.from_string(parent_id),
            parent_type=parent_type,
            role=role,
            content=content,
            parts=(TextPart(text=content),),
            created_at=_now(),
            metadata=MessageMetadata(),
        )

    @classmethod
    def user(cls, thread_id: str, content: str) -> Self:
        """Return a new user message with one text part, as the seed's Message::user."""
        return cls._text(thread_id, content, MessageRole.USER, ParentType.USER_MESSAGE)

    @classmethod
    def assistant(
        cls, thread_id: str, execution_id: str, content: str, parent_id: str | None = None
    ) -> Self:
        """Return a new assistant message from an execution, as the seed's Message::assistant."""
        return cls._text(
            thread_id,
            content,
            MessageRole.ASSISTANT,
            ParentType.USER_MESSAGE,
            execution_id=execution_id,
            parent_id=parent_id,
        )

    @classmethod
    def system(cls, thread_id: str, content: str) -> Self:
        """Return a new system message with one text part, as the seed's Message::system."""
        return cls._text(thread_id, content, MessageRole.SYSTEM, ParentType.SYSTEM)

    def is_deleted(self) -> bool:
        """Return whether the message is soft-deleted."""
        return self.deleted_at is not None

    def with_parent(self, parent_id: str, parent_type: ParentType | str) -> Self:
        """Return a copy pointing at a parent; this message is unchanged."""
        return self._replace(parent_id=parent_id, parent_type=parent_type)

    def with_parts(self, parts: Sequence[MessagePart]) -> Self:
        """Return a copy with these parts, stored as a tuple; this message is unchanged."""
        return self._replace(parts=tuple(parts))

    def with_metadata(self, metadata: MessageMetadata) -> Self:
        """Return a copy with this metadata; this message is unchanged."""
        return self._replace(metadata=metadata)
