"""The events of the log: one envelope, six event types, and the codec that writes them.

An event carries the whole entity after the change (deletes carry the time), so the fold is
trivial and every version stays readable for audit. The envelope is a msgspec Struct tagged
by ``type``; the entity inside is the pydantic domain model, in the seed's wire format.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Final

import msgspec
import pydantic
from uuid_utils import uuid7

from eventlog.errors import MalformedEventError, PayloadTooLargeError, ValidationError
from eventlog.model import Message, Thread
from eventlog.upcast import UPCASTERS, Upcasters
from eventlog.wire import MessageData, ThreadData

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "SCHEMA_VERSION",
    "AnyEvent",
    "DataEvent",
    "Event",
    "EventCodec",
    "EventContext",
    "MessageCreated",
    "MessageCreatedData",
    "MessageDeleted",
    "MessageUpdated",
    "MessageUpdatedData",
    "StoredEvent",
    "ThreadCreated",
    "ThreadCreatedData",
    "ThreadDeleted",
    "ThreadUpdated",
    "ThreadUpdatedData",
    "current_context",
    "event_context",
    "event_digest",
    "new_event_id",
]

SCHEMA_VERSION: Final = 1
"""The envelope and payload shape this code writes; older versions are upcast on read."""


UtcTime = Annotated[datetime, msgspec.Meta(tz=True)]
"""An instant with a time zone: a naive time on the stream is malformed, never guessed."""


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """The envelope every event shares; the subclass adds what changed."""

    event_id: str
    schema_version: int = SCHEMA_VERSION
    occurred_at: UtcTime
    tenant_id: str
    thread_id: str
    message_id: str | None = None
    execution_id: str | None = None
    actor: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    prev_hash: str | None = None
    """Digest of the previous event of the same thread: a per-thread hash chain."""

    @property
    def event_type(self) -> str:
        """The event's type tag, e.g. ``message.created``."""
        return str(self.__struct_config__.tag)


class ThreadCreated(Event, frozen=True, tag="thread.created"):
    """A thread came into being; carries the thread as created."""

    thread: Thread


class ThreadUpdated(Event, frozen=True, tag="thread.updated"):
    """A thread changed; carries the thread after the change."""

    thread: Thread


class ThreadDeleted(Event, frozen=True, tag="thread.deleted"):
    """A thread was soft-deleted at ``deleted_at``."""

    deleted_at: UtcTime


class MessageCreated(Event, frozen=True, tag="message.created"):
    """A message was written; carries the message as created."""

    message: Message


class MessageUpdated(Event, frozen=True, tag="message.updated"):
    """A message changed; carries the message after the change."""

    message: Message


class MessageDeleted(Event, frozen=True, tag="message.deleted"):
    """A message was soft-deleted at ``deleted_at``."""

    deleted_at: UtcTime


AnyEvent = (
    ThreadCreated | ThreadUpdated | ThreadDeleted | MessageCreated | MessageUpdated | MessageDeleted
)


class ThreadCreatedData(Event, frozen=True, tag="thread.created"):
    """:class:`ThreadCreated` as the fold reads it: the thread as :class:`ThreadData`."""

    thread: ThreadData


class ThreadUpdatedData(Event, frozen=True, tag="thread.updated"):
    """:class:`ThreadUpdated` as the fold reads it."""

    thread: ThreadData


class MessageCreatedData(Event, frozen=True, tag="message.created"):
    """:class:`MessageCreated` as the fold reads it: the message as :class:`MessageData`."""

    message: MessageData


class MessageUpdatedData(Event, frozen=True, tag="message.updated"):
    """:class:`MessageUpdated` as the fold reads it."""

    message: MessageData


DataEvent = (
    ThreadCreatedData
    | ThreadUpdatedData
    | ThreadDeleted
    | MessageCreatedData
    | MessageUpdatedData
    | MessageDeleted
)
"""An event with its entity as msgspec data (see :mod:`eventlog.wire`): what the fold uses."""


class StoredEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event as the log holds it: its stream sequence, server time and subject."""

    sequence: int
    time: datetime
    subject: str
    event: AnyEvent


class EventContext(msgspec.Struct, frozen=True, kw_only=True):
    """Who is writing, and why: copied into the envelope of every event written."""

    actor: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None


_CONTEXT: contextvars.ContextVar[EventContext] = contextvars.ContextVar(
    "convlog_event_context",
    default=EventContext(),  # noqa: B039 - a frozen Struct, shared safely
)


@contextlib.contextmanager
def event_context(
    *, actor: str | None = None, correlation_id: str | None = None, causation_id: str | None = None
) -> Iterator[EventContext]:
    """Stamp events written inside the block with an actor and correlation/causation ids.

    >>> with event_context(actor="agent:planner", correlation_id="req-42"):
    ...     pass  # every write here carries actor and correlation id
    """
    context = EventContext(actor=actor, correlation_id=correlation_id, causation_id=causation_id)
    token = _CONTEXT.set(context)
    try:
        yield context
    finally:
        _CONTEXT.reset(token)


def current_context() -> EventContext:
    """The context set by the innermost :func:`event_context`, or an empty one."""
    return _CONTEXT.get()


def new_event_id() -> str:
    """A new unique, time-ordered event id (also the ``Nats-Msg-Id`` of its append)."""
    return f"evt_{uuid7().hex}"


def event_digest(payload: bytes) -> str:
    """The hash-chain digest of an event's stored bytes."""
    return hashlib.sha256(payload).hexdigest()


def _encode_model(value: object) -> Any:  # noqa: ANN401 - msgspec hooks take and return Any
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, str):  # typed ids are str subclasses, which msgspec leaves to us
        return str(value)
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


def _encode_stored(value: object) -> Any:  # noqa: ANN401 - msgspec hooks take and return Any
    """As :func:`_encode_model`, but a message's text parts that repeat its content elided."""
    if isinstance(value, Message):
        return _elide_text(value.model_dump(mode="json"))
    return _encode_model(value)


_ELIDED_TEXT: Final = {"type": "text"}
"""A text part as stored when its text is the content: the text is then stored once."""


def _elide_text(message: dict[str, Any]) -> dict[str, Any]:
    """The message's JSON with each text part that repeats the content as :data:`_ELIDED_TEXT`."""
    content = message["content"]
    message["parts"] = [
        _ELIDED_TEXT if part["type"] == "text" and part["text"] == content else part
        for part in message["parts"]
    ]
    return message


def _restore_text(message: dict[str, Any]) -> dict[str, Any]:
    """Undo :func:`_elide_text`: a text part with no text gets the content back."""
    content, parts = message.get("content"), message.get("parts")
    if not isinstance(content, str) or not isinstance(parts, list):
        return message  # invalid either way; the model says why
    message["parts"] = [
        {**part, "text": content}
        if isinstance(part, dict) and part.get("type") == "text" and "text" not in part
        else part
        for part in parts
    ]
    return message


def _decode_model(kind: type, value: object) -> Any:  # noqa: ANN401 - msgspec hook signature
    if kind is Message and isinstance(value, dict):
        return Message.model_validate(_restore_text(value))
    if issubclass(kind, pydantic.BaseModel):
        return kind.model_validate(value)
    raise NotImplementedError(f"cannot decode {kind.__name__}")


def _unencodable(value: object, path: str) -> str | None:
    """The path (from ``path``) of the first text in ``value`` that UTF-8 cannot encode, or None."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if str(key).isidentifier() else f"{path}[{key!r}]"
            if (found := _unencodable(key, where) or _unencodable(item, where)) is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            if (found := _unencodable(item, f"{path}[{index}]")) is not None:
                return found
    return None


class _Version(msgspec.Struct):
    schema_version: int = SCHEMA_VERSION


class EventCodec:
    """Encodes events to bytes and back; built once, reused for every event."""

    def __init__(self, *, upcasters: Upcasters = UPCASTERS) -> None:
        self._encoder = msgspec.json.Encoder(enc_hook=_encode_model)
        self._stored = msgspec.json.Encoder(enc_hook=_encode_stored)
        self._decoder: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(
            AnyEvent, dec_hook=_decode_model
        )
        self._data: msgspec.json.Decoder[DataEvent] = msgspec.json.Decoder(DataEvent)
        self._version = msgspec.json.Decoder(_Version)
        self._object = msgspec.json.Decoder(dict[str, Any])
        self._upcasters = upcasters

    def encode(self, event: Event, *, limit: int | None = None) -> bytes:
        """The bytes stored for ``event``; PayloadTooLargeError if over ``limit`` bytes.

        A message's text part that repeats its content is stored without its text, so the
        text counts once against the limit; every decode puts it back.
        """
        try:
            payload = self._stored.encode(event)
        except UnicodeEncodeError as err:
            where = _unencodable(msgspec.to_builtins(event, enc_hook=_encode_model), "")
            field = where.removeprefix(".") if where else "a text"
            raise ValidationError(
                f"{field} of event {event.event_type} holds a lone "
                "surrogate, which is not text UTF-8 can store; nothing was written: replace "
                "it (e.g. text.encode('utf-8', 'replace').decode()) and write again"
            ) from err
        if limit is not None and len(payload) > limit:
            raise PayloadTooLargeError(len(payload), limit, what=f"event {event.event_type}")
        return payload

    def encode_stored(self, stored: StoredEvent) -> bytes:
        """A stored event as one JSON document: sequence, time, subject and the event."""
        return self._encoder.encode(stored)

    def decode(self, payload: bytes) -> AnyEvent:
        """Read an event, upcasting an older shape; :class:`MalformedEventError` says why not."""
        try:
            event = self._decoder.decode(payload)
        except (msgspec.DecodeError, pydantic.ValidationError) as err:
            return self._decode_other(payload, err)
        if event.schema_version != SCHEMA_VERSION:
            return self._decode_other(payload, None)
        return event

    def decode_data(self, payload: bytes) -> DataEvent:
        """Read an event as :meth:`decode` does, its entity as data rather than a model.

        The fast path takes events in the current schema and the canonical form this code
        writes. Any other bytes go through :meth:`decode`, which upcasts, decides what is
        valid and says why not, exactly as for every other reader; what it accepts is
        then read again from its canonical form.
        """
        try:
            event = self._data.decode(payload)
        except msgspec.DecodeError:
            pass
        else:
            if event.schema_version == SCHEMA_VERSION:
                return event
        canonical = self.encode(self.decode(payload))
        try:
            return self._data.decode(canonical)
        except msgspec.DecodeError as err:  # pragma: no cover - a model and its mirror disagree
            raise MalformedEventError(f"valid event the fold cannot read: {err}") from err

    def _decode_other(self, payload: bytes, err: Exception | None) -> AnyEvent:
        """An event not in the current shape: an older one (upcast it), a newer one, or junk."""
        try:
            version = self._version.decode(payload).schema_version
        except msgspec.DecodeError:
            raise MalformedEventError(f"not a convlog event: {err}") from err
        if version > SCHEMA_VERSION:
            raise MalformedEventError(
                f"schema version {version} is newer than this code reads ({SCHEMA_VERSION})"
            ) from err
        if version == SCHEMA_VERSION:
            raise MalformedEventError(f"invalid event: {err}") from err
        try:
            current = self._upcasters.upcast(
                self._object.decode(payload), version=version, target=SCHEMA_VERSION
            )
            return self._decoder.decode(self._encoder.encode(current))
        except (msgspec.DecodeError, pydantic.ValidationError, LookupError, TypeError) as bad:
            raise MalformedEventError(
                f"invalid event of schema version {version}, even after upcasting: {bad}"
            ) from bad
