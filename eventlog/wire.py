"""The domain models as msgspec structs: what the fold decodes, keeps and serializes.

Validating a message into its pydantic model takes 13 µs; msgspec decodes the whole event
into these structs in 3, and most models of a large store are never read. So the fold
keeps these, and the views make the pydantic model only when a query first asks for it
(:meth:`ThreadData.model`, :meth:`MessageData.model`).

Each struct mirrors its model field for field, in the same order, so its JSON is the
seed's wire format as :meth:`pydantic.BaseModel.model_dump_json` writes it (byte for byte,
but for floats of 1e16 and over: ``1e16`` where pydantic writes ``1e+16``); and it accepts
only what the model accepts, in the canonical form the model writes (timestamps as
``...T12:00:00.123456Z``), but for one thing of the stored form: a text part without its
text, which holds the message's content (see :class:`eventlog.EventCodec`). Anything else
is not decided here: the codec hands such an event to the pydantic models, as before, and
re-reads what they make of it (see :meth:`eventlog.EventCodec.decode_data`).
``tests/test_wire.py`` holds the two together.
"""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Final, TypeVar, cast

import msgspec
import pydantic

from eventlog.ids import MAX_ID_BYTES, ExecutionId, MessageId, ThreadId
from eventlog.model import (
    FinishReason,
    Message,
    MessageMetadata,
    MessagePart,
    MessageRole,
    ParentType,
    TextPart,
    Thread,
)

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["MessageData", "ThreadData", "parse_utc", "utc_text"]

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_BYTES)]
"""At most MAX_ID_BYTES characters; ids over a quarter of that are measured in bytes too."""
_U32 = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]
_U64 = Annotated[int, msgspec.Meta(ge=0)]
"""msgspec cannot bound an int above 2**63 - 1; the upper bound is checked after decoding."""
_U64_MAX: Final = 2**64 - 1
_I64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_Time = str
"""A timestamp in the one form the models write; checked by :func:`_check_times`."""

_CANONICAL_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.(?!0{6})\d{6})?Z", re.ASCII)
_SHORT_ID: Final = MAX_ID_BYTES // 4
"""An id of this many characters or fewer is within MAX_ID_BYTES whatever its characters."""


def _check_ids(*ids: str | None) -> None:
    for value in ids:
        if value is not None and len(value) > _SHORT_ID and len(value.encode()) > MAX_ID_BYTES:
            raise ValueError(f"id of {len(value.encode())} bytes, over {MAX_ID_BYTES}")


def _check_times(*times: str | None) -> None:
    for text in times:
        if text is not None:
            if not _CANONICAL_TIME.fullmatch(text):
                raise ValueError(f"timestamp {text!r} is not in the canonical form")
            parse_utc(text)  # a real date and time: no February 30th


def parse_utc(text: str) -> datetime:
    """The instant a canonical timestamp names (UTC); ValueError for a date that is none."""
    return datetime.fromisoformat(text)


def utc_text(instant: datetime) -> str:
    """``instant`` in the canonical form, as the models write it."""
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


class _Part(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", gc=False):
    """Untracked by the collector (decoded JSON holds no cycles): 16 bytes less each."""


class _TextPart(_Part, frozen=True, kw_only=True, tag="text"):
    text: str | msgspec.UnsetType = msgspec.UNSET
    """Unset only as stored: the codec elides a text that repeats the content, and
    :class:`MessageData` puts the content back as it decodes."""


class _ReasoningPart(_Part, frozen=True, kw_only=True, tag="reasoning"):
    text: str


class _ToolCallPart(_Part, frozen=True, kw_only=True, tag="tool-call"):
    tool_call_id: str
    tool_name: str
    args: Any


class _ToolResultPart(_Part, frozen=True, kw_only=True, tag="tool-result"):
    tool_call_id: str
    tool_name: str
    result: Any
    is_error: bool


class _SourcePart(_Part, frozen=True, kw_only=True, tag="source"):
    source_id: str
    url: str | None = None
    title: str | None = None


class _FilePart(_Part, frozen=True, kw_only=True, tag="file"):
    file_id: str
    filename: str
    mime_type: str
    size_bytes: _U64

    def __post_init__(self) -> None:
        if self.size_bytes > _U64_MAX:
            raise ValueError("size_bytes is over 2**64 - 1")


class _ImagePart(_Part, frozen=True, kw_only=True, tag="image"):
    image_id: str
    url: str | None = None
    alt_text: str | None = None


class _CodePart(_Part, frozen=True, kw_only=True, tag="code"):
    language: str | None = None
    code: str


_MessagePart = (
    _TextPart
    | _ReasoningPart
    | _ToolCallPart
    | _ToolResultPart
    | _SourcePart
    | _FilePart
    | _ImagePart
    | _CodePart
)


class _TokenUsage(msgspec.Struct, frozen=True, kw_only=True):
    prompt_tokens: _U32
    completion_tokens: _U32
    total_tokens: _U32


class _ExecutionStats(msgspec.Struct, frozen=True, kw_only=True):
    llm_calls: _U32 = 0
    tool_calls: _U32 = 0
    sub_agents: _U32 = 0
    steps: _U32 = 0
    decisions: _U32 = 0
    artifacts: _U32 = 0


class _CostInfo(msgspec.Struct, frozen=True, kw_only=True):
    input_cost: float = 0.0  # msgspec refuses numbers out of range, so never inf or nan
    output_cost: float = 0.0
    total_cost: float = 0.0
    currency: str = "USD"


class _MessageMetadata(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    completed_at: _I64 | None = None
    duration_ms: _U64 | None = None
    model: str | None = None
    provider: str | None = None
    token_usage: _TokenUsage | None = None
    stats: _ExecutionStats | None = None
    finish_reason: FinishReason | None = None
    cost: _CostInfo | None = None


_NO_METADATA: Final = _MessageMetadata()
"""Most messages carry no metadata: they all share this one (frozen) struct."""

_ENCODER = msgspec.json.Encoder()

_MESSAGE_FIELDS: Final = set(Message.model_fields)
_TEXT_FIELDS: Final = set(TextPart.model_fields)
"""Every field, as validating the JSON sets them; each set is shared by all models made here.

``model_construct`` keeps the set it is given, and pydantic copies it before any change
(``model_copy``): sharing saves a set of 728 bytes a message.
"""
_PART: Final = pydantic.TypeAdapter[MessagePart](MessagePart)

_T = TypeVar("_T")


def _maybe(make: Callable[[str], _T], value: str | None) -> _T | None:
    """``make(value)`` for an optional field: None stays None."""
    return None if value is None else make(value)


def _part_model(part: _MessagePart) -> MessagePart:
    """A text part made from its text, which it shares; any other part validated."""
    if type(part) is _TextPart:
        text = cast("str", part.text)  # never unset once decoded: see MessageData._restore_text
        return TextPart.model_construct(_TEXT_FIELDS, text=text)
    return _PART.validate_json(_ENCODER.encode(part))


def _metadata_model(metadata: _MessageMetadata) -> MessageMetadata:
    """Metadata validated by pydantic: nested models too many to mirror for what it saves."""
    return MessageMetadata.model_validate_json(_ENCODER.encode(metadata))


_NO_METADATA_MODEL: Final = _metadata_model(_NO_METADATA)
"""The model of :data:`_NO_METADATA`, frozen, shared as the struct is."""


class ThreadData(msgspec.Struct, frozen=True, kw_only=True):
    """A :class:`~eventlog.Thread`, validated, as msgspec decodes it."""

    id: _Id
    tenant_id: _Id
    user_id: _Id
    title: str | None = None
    created_at: _Time
    updated_at: _Time
    deleted_at: _Time | None = None

    def __post_init__(self) -> None:
        _check_ids(self.id, self.tenant_id, self.user_id)
        _check_times(self.created_at, self.updated_at, self.deleted_at)
        msgspec.structs.force_setattr(self, "id", sys.intern(self.id))  # its messages' thread_id

    def json(self) -> bytes:
        """The thread's JSON: what ``model().model_dump_json()`` gives (see the module)."""
        return _ENCODER.encode(self)

    def model(self) -> Thread:
        """The pydantic model, validated from this thread's JSON."""
        return Thread.model_validate_json(self.json())


class MessageData(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A :class:`~eventlog.Message`, validated, as msgspec decodes it.

    The views keep a million of these, so decoding shares what it can (see
    :meth:`_share`); untracked by the collector, as decoded JSON holds no cycles.
    """

    id: _Id
    thread_id: _Id
    execution_id: _Id | None = None
    parent_id: _Id | None = None
    parent_type: ParentType
    role: MessageRole
    content: str
    parts: tuple[_MessagePart, ...]
    created_at: _Time
    updated_at: _Time | None = None
    deleted_at: _Time | None = None
    metadata: _MessageMetadata

    def __post_init__(self) -> None:
        _check_ids(self.id, self.thread_id, self.execution_id, self.parent_id)
        _check_times(self.created_at, self.updated_at, self.deleted_at)
        duration = self.metadata.duration_ms
        if duration is not None and duration > _U64_MAX:
            raise ValueError("metadata.duration_ms is over 2**64 - 1")
        self._restore_text()
        self._share()

    def _restore_text(self) -> None:
        """Give each text part stored without its text the content it repeated."""
        for part in self.parts:
            if type(part) is _TextPart and part.text is msgspec.UNSET:
                msgspec.structs.force_setattr(part, "text", self.content)

    def _share(self) -> None:
        """Hold equal values as one object, as a million messages repeat them.

        A text part repeating the content holds the content's str; a thread's and an
        execution's id are interned, one str for all their messages; empty metadata is
        :data:`_NO_METADATA`. Each value is replaced by an equal one, so nothing that shares
        these structs (a copy made by ``msgspec.structs.replace``) sees a change.
        """
        force = msgspec.structs.force_setattr
        for part in self.parts:
            if type(part) is _TextPart and part.text == self.content:
                force(part, "text", self.content)
        force(self, "thread_id", sys.intern(self.thread_id))
        if self.execution_id is not None:
            force(self, "execution_id", sys.intern(self.execution_id))
        if self.metadata == _NO_METADATA:
            force(self, "metadata", _NO_METADATA)

    def json(self) -> bytes:
        """The message's JSON: what ``model().model_dump_json()`` gives (see the module)."""
        return _ENCODER.encode(self)

    def model(self) -> Message:
        """The pydantic model, equal to the one validated from :meth:`json`, at a third of its size.

        This data is already valid, so the model is made without validating it again
        (but for parts other than text, and metadata other than none): it shares this
        data's strs and the fields sets, where validating the JSON copies every one of them.
        """
        return Message.model_construct(
            _MESSAGE_FIELDS,
            id=MessageId(self.id),
            thread_id=ThreadId(self.thread_id),
            execution_id=_maybe(ExecutionId, self.execution_id),
            parent_id=_maybe(MessageId, self.parent_id),
            parent_type=self.parent_type,
            role=self.role,
            content=self.content,
            parts=tuple(map(_part_model, self.parts)),
            created_at=parse_utc(self.created_at),
            updated_at=_maybe(parse_utc, self.updated_at),
            deleted_at=_maybe(parse_utc, self.deleted_at),
            metadata=(
                _NO_METADATA_MODEL
                if self.metadata is _NO_METADATA
                else _metadata_model(self.metadata)
            ),
        )
