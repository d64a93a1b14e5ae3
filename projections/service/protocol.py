"""The query service's wire protocol: subjects, requests, replies and errors.

A replica of ``convlog serve`` registers one NATS micro service named ``convlog`` per
partition it folds, each in the queue group of its partition's subjects, so every replica
that holds a partition shares its requests and a partition nobody holds answers "no
responders" at once. The subjects, under ``convlog-q.<stream>``:

- ``convlog-q.<stream>.<partition>.<endpoint>``: the endpoint of one partition;
- ``convlog-q.<stream>.thread.<endpoint>.<thread token>``: the same, routed by the server to
  the thread's partition through a ``mappings`` entry (:meth:`ServiceSubjects.mappings`)
  that hashes like the stream's own transform, so a client in any language needs no hash.

A request is a JSON object whose keys are the method's parameter names (``{}`` for none);
a reply is the seed's JSON (a thread, a message, a list of them, a count, or ``null``).
Every request may carry ``min_sequence``: the replica answers once its views have folded
its partition that far, or fails with 503. Every reply carries ``Convlog-Sequence``, the
sequence its partition's views stood at; a write's reply is ``{"sequence": n}``, the
sequence it was stored at (or its partition's when nothing needed writing). Errors are
micro errors (``Nats-Service-Error-Code`` and ``Nats-Service-Error``) with the convlog
error's name in ``Convlog-Error``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final

import msgspec

from eventlog import (
    AlreadyExistsError,
    ConflictError,
    ConvlogError,
    DeletedError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    UnavailableError,
    ValidationError,
)
from eventlog.subjects import encode_token

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "ERROR_HEADER",
    "MAX_LIMIT",
    "PARTITION_HEADER",
    "RANKS_HEADER",
    "READS",
    "SEQUENCE_HEADER",
    "SERVICE_NAME",
    "WRITES",
    "ServiceError",
    "ServiceRequest",
    "ServiceSubjects",
    "error_reply",
]

SERVICE_NAME: Final = "convlog"
SEQUENCE_HEADER: Final = "Convlog-Sequence"
ERROR_HEADER: Final = "Convlog-Error"
PARTITION_HEADER: Final = "Convlog-Partition"
RANKS_HEADER: Final = "Convlog-Ranks"
"""On a ``list_threads`` reply: each thread's creation sequence, which breaks ties in time."""
MAX_LIMIT: Final = 1000
"""The most threads one ``list_threads`` request may ask for."""


class ServiceRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What every request may carry; each endpoint's request adds its parameters."""

    min_sequence: int = 0
    """Answer once the views have folded the partition up to this stream sequence."""

    def __post_init__(self) -> None:
        if self.min_sequence < 0:
            raise ValueError(f"min_sequence must be >= 0, not {self.min_sequence}")


class ByThread(ServiceRequest, kw_only=True):
    thread_id: str


class ListThreads(ServiceRequest, kw_only=True):
    tenant_id: str
    user_id: str
    limit: int = 20
    offset: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"limit must be 0 to {MAX_LIMIT}, not {self.limit}")
        if self.offset < 0:
            raise ValueError(f"offset must be >= 0, not {self.offset}")


class ByMessage(ServiceRequest, kw_only=True):
    message_id: str


class ListMessages(ServiceRequest, kw_only=True):
    thread_id: str
    include_deleted: bool = False


class ByExecution(ServiceRequest, kw_only=True):
    execution_id: str


class NoParameters(ServiceRequest, kw_only=True):
    pass


class Write(ServiceRequest, kw_only=True):
    at: datetime | None = None
    """The time the write decides with (the client's clock); the replica's when absent."""


class WriteThread(Write, kw_only=True):
    thread: msgspec.Raw
    """The seed's JSON of a thread."""


class WriteMessage(Write, kw_only=True):
    message: msgspec.Raw
    """The seed's JSON of a message."""
    expected_version: int | None = None


class DeleteThread(Write, kw_only=True):
    thread_id: str


class DeleteMessage(Write, kw_only=True):
    message_id: str


class Written(msgspec.Struct, kw_only=True):
    """A write's reply."""

    sequence: int


class Digest(msgspec.Struct, kw_only=True):
    """A ``digest`` reply: what two replicas of a partition compare."""

    partition: int
    sequence: int
    digest: str


READS: Final[Mapping[str, type[ServiceRequest]]] = {
    "get_thread": ByThread,
    "list_threads": ListThreads,
    "get_message": ByMessage,
    "list_messages": ListMessages,
    "get_messages_by_execution": ByExecution,
    "count_messages": ByThread,
    "history": ByMessage,
    "execution_trail": ByExecution,
    "health": NoParameters,
    "digest": NoParameters,
}
WRITES: Final[Mapping[str, type[ServiceRequest]]] = {
    "create_thread": WriteThread,
    "update_thread": WriteThread,
    "delete_thread": DeleteThread,
    "create_message": WriteMessage,
    "update_message": WriteMessage,
    "delete_message": DeleteMessage,
}


@dataclass(frozen=True, slots=True)
class ServiceSubjects:
    """The subjects of the query service of one stream of ``partitions`` partitions."""

    stream: str
    partitions: int

    @property
    def root(self) -> str:
        """What every subject of this stream's service starts with."""
        return f"convlog-q.{self.stream}"

    def endpoint(self, partition: int, name: str) -> str:
        """The subject of endpoint ``name`` of ``partition``."""
        return f"{self.root}.{partition}.{name}"

    def routed(self, name: str, thread_id: str) -> str:
        """The subject that reaches ``thread_id``'s partition through the server's mapping."""
        return f"{self.root}.thread.{name}.{encode_token(thread_id)}"

    def mappings(self) -> dict[str, str]:
        """The server ``mappings`` that route :meth:`routed` subjects to their partition.

        The partition function hashes the thread token exactly as the stream's transform.
        """
        return {
            f"{self.root}.thread.*.*": (
                f"{self.root}.{{{{partition({self.partitions},2)}}}}.{{{{wildcard(1)}}}}"
            )
        }

    def server_config(self) -> str:
        """The ``mappings`` block for a nats-server config file."""
        lines = "".join(f'  "{src}": "{dest}"\n' for src, dest in self.mappings().items())
        return "mappings {\n" + lines + "}\n"


class ServiceError(msgspec.Struct, frozen=True):
    """An error reply: its micro code, what went wrong, the convlog error's name.

    Its ``fields`` (``kind`` and ``entity_id`` of a NotFoundError, say) are the reply's body.
    """

    code: int
    description: str
    name: str
    fields: dict[str, str | int | None]


_CODES: Final[tuple[tuple[type[ConvlogError], int], ...]] = (
    (PayloadTooLargeError, 413),
    (ValidationError, 400),
    (NotFoundError, 404),
    (PermissionDeniedError, 403),
    (AlreadyExistsError, 409),
    (ConflictError, 409),
    (DeletedError, 409),
    (UnavailableError, 503),
)


def error_reply(err: ConvlogError) -> ServiceError:
    """The reply a replica sends for ``err``."""
    code = next((code for kind, code in _CODES if isinstance(err, kind)), 500)
    fields = {
        name: value
        for name, value in vars(err).items()
        if not name.startswith("_") and (value is None or isinstance(value, str | int))
    }
    return ServiceError(code, str(err), type(err).__name__, fields)
