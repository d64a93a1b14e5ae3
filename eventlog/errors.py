"""The exceptions convlog raises, all under one root.

```
ConvlogError
├── NotFoundError            an id that does not exist (kind, entity_id)
├── AlreadyExistsError       creating an id that exists with other content (kind, entity_id)
├── DeletedError             writing into a soft-deleted thread or message (kind, entity_id)
├── ConflictError            another writer got there first (subject, expected, actual)
├── ValidationError          input the log will not take
│   ├── PayloadTooLargeError an event over the server's max payload (size, limit)
│   ├── MalformedEventError  bytes on the stream that are not an event this code can read
│   └── ImportRejectedError  an import file refused before any append (line, reason)
├── UnavailableError         the NATS server cannot be reached in time (url)
├── PermissionDeniedError    another tenant's data, or a subject the credentials lack (what)
├── ProjectionError          the projection stopped folding the stream (sequence)
│   └── MissingRecordsError  records a fold needs that the stream cannot return (gaps)
└── EmbeddedServerError      the embedded nats-server is missing or would not start
```

Every message is a sentence that says what went wrong, where, and what to do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "AlreadyExistsError",
    "ConflictError",
    "ConvlogError",
    "DeletedError",
    "EmbeddedServerError",
    "Gap",
    "ImportRejectedError",
    "MalformedEventError",
    "MissingRecordsError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "ProjectionError",
    "UnavailableError",
    "ValidationError",
]


class ConvlogError(Exception):
    """Root of every error convlog raises on purpose."""


class NotFoundError(ConvlogError):
    """A write or an audit query named an id the log has never seen."""

    def __init__(self, kind: str, entity_id: str, advice: str = "create it first") -> None:
        self.kind = kind
        self.entity_id = entity_id = str(entity_id)  # a ThreadId's repr is not the id's
        super().__init__(f"{kind} {entity_id!r} does not exist; {advice}.")


class AlreadyExistsError(ConvlogError):
    """A create named an id that already exists with different content."""

    def __init__(self, kind: str, entity_id: str) -> None:
        self.kind = kind
        self.entity_id = entity_id = str(entity_id)  # a ThreadId's repr is not the id's
        super().__init__(
            f"{kind} {entity_id!r} already exists with other content; "
            f"use update_{kind} to change it, or a new id."
        )


class DeletedError(ConvlogError):
    """A write went to a soft-deleted entity; deletion is final."""

    def __init__(self, kind: str, entity_id: str) -> None:
        self.kind = kind
        self.entity_id = entity_id = str(entity_id)  # a ThreadId's repr is not the id's
        super().__init__(f"{kind} {entity_id!r} is deleted and takes no more writes.")


class ConflictError(ConvlogError):
    """Optimistic concurrency failed: the subject moved past the expected sequence."""

    def __init__(self, subject: str, expected: int | None, actual: int | None) -> None:
        self.subject = subject
        self.expected = expected
        self.actual = actual
        wanted = "the expected last sequence" if expected is None else f"last sequence {expected}"
        seen = "another" if actual is None else str(actual)
        super().__init__(
            f"conflict on {subject!r}: expected {wanted}, the log has {seen}; re-read and retry."
        )


class ValidationError(ConvlogError, ValueError):
    """Input the log will not take; the message names the field."""


class PayloadTooLargeError(ValidationError):
    """An event would exceed the server's max payload; nothing was sent."""

    def __init__(self, size: int, limit: int, what: str = "event") -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"{what} is {size} bytes, over the server's max payload of {limit} bytes; "
            "store large content in an object store and reference it from a part."
        )


class MalformedEventError(ValidationError):
    """Bytes on the stream that are not an event this code can read."""


class ImportRejectedError(ValidationError):
    """An import file failed its check, or could not be read; nothing was appended."""

    def __init__(
        self,
        reason: str,
        *,
        line: int | None = None,
        advice: str = "fix the file or export it again",
    ) -> None:
        self.reason = reason
        self.line = line
        where = "" if line is None else f" at line {line}"
        super().__init__(f"import refused{where}: {reason}; nothing was written, {advice}.")


class UnavailableError(ConvlogError):
    """The NATS server did not answer in time, or could not be reached at all."""

    def __init__(self, url: str, reason: str, *, message: str | None = None) -> None:
        """``message`` replaces the usual sentence when the reason reads better on its own."""
        self.url = url
        self.reason = reason
        super().__init__(message or f"NATS at {url} is unavailable: {reason}.")


class PermissionDeniedError(ConvlogError):
    """The credentials do not allow this: another tenant's data, or a subject not granted."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"permission denied: {what}.")


class ProjectionError(ConvlogError):
    """The projection stopped; its views no longer follow the log."""

    def __init__(self, reason: str, sequence: int | None = None) -> None:
        self.reason = reason
        self.sequence = sequence
        where = "" if sequence is None else f" at stream sequence {sequence}"
        super().__init__(f"the projection stopped{where}: {reason}.")


class Gap(NamedTuple):
    """Stream sequences ``first`` to ``last`` (inclusive) that cannot be read, and why."""

    first: int
    last: int
    reason: str

    def __str__(self) -> str:
        span = str(self.first) if self.first == self.last else f"{self.first} to {self.last}"
        return f"{span} ({self.reason})"


class MissingRecordsError(ProjectionError):
    """A fold needs records the stream cannot return; it stops rather than wait for them."""

    def __init__(self, stream: str, gaps: Sequence[Gap]) -> None:
        self.stream = stream
        self.gaps = tuple(gaps)
        single = len(self.gaps) == 1 and self.gaps[0].first == self.gaps[0].last
        named = ("record " if single else "records ") + ", ".join(map(str, self.gaps))
        super().__init__(
            f"stream {stream!r} cannot return {named}, which the fold needs; restore "
            "its store from a backup, or import an export into a new stream",
            self.gaps[0].first if self.gaps else None,
        )


class EmbeddedServerError(ConvlogError):
    """The embedded nats-server binary is missing or failed to start."""
