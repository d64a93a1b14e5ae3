"""Typed string ids, so a thread id cannot be passed where a message id belongs.

New ids are uuid7-based and sort by creation time; parsed ids are checked once, at the edge.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Self

import uuid_utils
from pydantic_core import core_schema

from eventlog.errors import ValidationError

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler

__all__ = ["MAX_ID_BYTES", "ExecutionId", "MessageId", "TenantId", "ThreadId", "UserId"]

MAX_ID_BYTES = 256
"""Longest id, in UTF-8 bytes: ids go into NATS subjects and keys, which have limits."""


class _Id(str):
    """A non-empty string of at most MAX_ID_BYTES UTF-8 bytes; subclasses set the kind."""

    __slots__ = ()
    prefix: ClassVar[str]
    _kind: ClassVar[str]  # how error messages name the id, e.g. "thread id"

    @classmethod
    def new(cls) -> Self:
        """Return a new unique id; uuid7 is monotonic in-process, so later ids sort later."""
        return cls(f"{cls.prefix}_{uuid_utils.uuid7().hex}")

    @classmethod
    def from_string(cls, value: object) -> Self:
        """Return `value` as this id type, or raise ValidationError saying what is wrong."""
        if not isinstance(value, str):
            raise ValidationError(f"{cls._kind} must be a string, not {type(value).__name__}")
        if not value:
            raise ValidationError(f"{cls._kind} must not be empty")
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValidationError(
                f"{cls._kind} is not valid UTF-8: it contains a lone surrogate"
            ) from None
        if size > MAX_ID_BYTES:
            raise ValidationError(
                f"{cls._kind} is {size} bytes in UTF-8, over the limit of {MAX_ID_BYTES}"
            )
        return cls(value)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source_type: object, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        # Pydantic fields validate through from_string and dump as a plain str.
        return core_schema.no_info_after_validator_function(
            cls.from_string,
            core_schema.str_schema(),
            serialization=core_schema.to_string_ser_schema(when_used="always"),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str.__repr__(self)})"


class TenantId(_Id):
    """Id of a tenant: the organisation that owns threads."""

    __slots__ = ()
    prefix = "tenant"
    _kind = "tenant id"


class UserId(_Id):
    """Id of a user within a tenant."""

    __slots__ = ()
    prefix = "user"
    _kind = "user id"


class ThreadId(_Id):
    """Id of a conversation thread."""

    __slots__ = ()
    prefix = "thread"
    _kind = "thread id"


class MessageId(_Id):
    """Id of a message within a thread."""

    __slots__ = ()
    prefix = "msg"
    _kind = "message id"


class ExecutionId(_Id):
    """Id of one agent execution (run), which may write several messages."""

    __slots__ = ()
    prefix = "exec"
    _kind = "execution id"
