"""Subject names, and the reversible encoding that keeps any id inside its own token.

Every event of a thread is published to ``<prefix>.<tenant>.<thread>``. On a partitioned
stream (the default for new streams) the server stores it under
``<prefix>.<partition>.<tenant>.<thread>``: a stream subject transform computes the
partition as FNV-1a of the thread token modulo the partition count, so writers never hash.
Readers see the published form (:meth:`Subjects.logical`); only filters name the stored one.

An id that is already a safe token (``[A-Za-z0-9_-]+`` not starting with ``_``) is used
as it is, so subjects stay readable; any other id becomes ``_`` + lowercase base32 of its
UTF-8 bytes. Encoded tokens always start with ``_`` and plain ones never do, so the mapping
is one-to-one, and no id can carry ``.``, ``*``, ``>`` or whitespace into another tenant's
subject space.
"""

from __future__ import annotations

import base64
import functools
import re
from dataclasses import dataclass
from typing import Final

from eventlog.errors import ValidationError

__all__ = ["Subjects", "decode_token", "encode_token", "partition_of"]

_SAFE_TOKEN = re.compile(r"[A-Za-z0-9\-][A-Za-z0-9_\-]*")
_ENCODED_MARK = "_"
_PREFIX_TOKEN = re.compile(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*")

MAX_TOKEN: Final = 512
"""The longest subject token an id may take (an id of about 300 bytes, encoded)."""

MAX_PARTITIONS: Final = 1024
"""The most partitions a stream may have: each is a consumer per replica that serves it."""


_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


def partition_of(token: str, partitions: int) -> int:
    """The partition nats-server's ``{{partition(N, ...)}}`` gives ``token``: FNV-1a mod N."""
    value = _FNV_OFFSET
    for byte in token.encode("utf-8"):
        value = ((value ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return value % partitions


@functools.lru_cache(maxsize=1 << 16)
def encode_token(value: str) -> str:
    """Return a subject token for ``value``, encoding it when it is not plainly safe.

    Cached: a write names its thread's subject several times over (the ids recur).
    A token longer than :data:`MAX_TOKEN` is refused: nats-server closes a connection
    whose subject passes its control-line limit, and every store on it would go down.
    """
    if _SAFE_TOKEN.fullmatch(value):
        token = value
    else:
        encoded = base64.b32encode(value.encode("utf-8")).decode("ascii").rstrip("=").lower()
        token = _ENCODED_MARK + encoded
    if len(token) > MAX_TOKEN:
        raise ValidationError(
            f"id {value[:40]!r}... is too long: its subject token would be {len(token)} "
            f"characters, at most {MAX_TOKEN}"
        )
    return token


def decode_token(token: str) -> str:
    """Invert :func:`encode_token`."""
    if not token.startswith(_ENCODED_MARK):
        return token
    body = token[1:].upper()
    padded = body + "=" * (-len(body) % 8)
    try:
        value = base64.b32decode(padded).decode("utf-8")
    except (ValueError, UnicodeDecodeError) as err:
        raise ValidationError(f"subject token {token!r} is not a valid encoded id") from err
    if not value or encode_token(value) != token:  # only what encode_token writes: one-to-one
        raise ValidationError(f"subject token {token!r} is not a canonical encoded id")
    return value


@dataclass(frozen=True, slots=True)
class Subjects:
    """The subject layout under one prefix (``convlog`` unless configured).

    ``partitions`` is the stream's partition count; 1 is the unpartitioned layout, where
    events are stored under the subject they were published to.
    """

    prefix: str = "convlog"
    partitions: int = 1

    def __post_init__(self) -> None:
        if not _PREFIX_TOKEN.fullmatch(self.prefix):
            raise ValidationError(
                f"subject prefix {self.prefix!r} must be dot-separated tokens of "
                "letters, digits, '_' or '-'"
            )
        if not 1 <= self.partitions <= MAX_PARTITIONS:
            raise ValidationError(
                f"a stream has 1 to {MAX_PARTITIONS} partitions, not {self.partitions}"
            )

    @property
    def partitioned(self) -> bool:
        """Whether the server stores events under a partition token."""
        return self.partitions > 1

    @property
    def all(self) -> str:
        """The wildcard that matches every convlog event under this prefix."""
        return f"{self.prefix}.>"

    @property
    def published(self) -> str:
        """What a partitioned stream captures: the subjects writers publish to."""
        return f"{self.prefix}.*.*"

    @property
    def transform(self) -> str:
        """The destination of a partitioned stream's subject transform."""
        return (
            f"{self.prefix}.{{{{partition({self.partitions},2)}}}}"
            ".{{wildcard(1)}}.{{wildcard(2)}}"
        )

    def partition(self, partition: int) -> str:
        """The filter that matches one partition's events."""
        return f"{self.prefix}.{partition}.*.*"

    def partition_of(self, thread_id: str) -> int:
        """The partition that holds ``thread_id``'s events (0 when unpartitioned)."""
        return partition_of(encode_token(thread_id), self.partitions)

    def tenant(self, tenant_id: str) -> str:
        """The filter that matches one tenant's events."""
        if self.partitioned:
            return f"{self.prefix}.*.{encode_token(tenant_id)}.*"
        return f"{self.prefix}.{encode_token(tenant_id)}.*"

    def thread(self, tenant_id: str, thread_id: str) -> str:
        """The subject every event of one thread is published to."""
        return f"{self.prefix}.{encode_token(tenant_id)}.{encode_token(thread_id)}"

    def stored(self, tenant_id: str, thread_id: str) -> str:
        """The subject the server keeps one thread's events under: what filters name."""
        if not self.partitioned:
            return self.thread(tenant_id, thread_id)
        tokens = f"{encode_token(tenant_id)}.{encode_token(thread_id)}"
        return f"{self.prefix}.{self.partition_of(thread_id)}.{tokens}"

    def matching(self, tenant_id: str | None, thread_id: str | None) -> str:
        """The filter for one tenant and/or one thread; None matches any."""
        tenant = "*" if tenant_id is None else encode_token(tenant_id)
        thread = "*" if thread_id is None else encode_token(thread_id)
        if not self.partitioned:
            return f"{self.prefix}.{tenant}.{thread}"
        where = "*" if thread_id is None else str(partition_of(thread, self.partitions))
        return f"{self.prefix}.{where}.{tenant}.{thread}"

    def filter(self, subject: str) -> str:
        """A filter on stored subjects for ``subject``, which may be in the published form.

        ``<prefix>.acme.t1`` becomes ``<prefix>.<its partition>.acme.t1``, ``<prefix>.acme.>``
        becomes ``<prefix>.*.acme.>``; a filter already in the stored form stays as it is.
        """
        head = self.prefix + "."
        if not self.partitioned or not subject.startswith(head):
            return subject
        tokens = subject[len(head) :].split(".")
        if len(tokens) != 2:  # noqa: PLR2004 - tenant and thread: the published form
            return subject
        thread = tokens[1]
        where = "*" if thread in ("*", ">") else str(partition_of(thread, self.partitions))
        return f"{head}{where}.{tokens[0]}.{thread}"

    def logical(self, subject: str) -> str:
        """The published form of a stored subject: without its partition token."""
        if not self.partitioned:
            return subject
        head = self.prefix + "."
        rest = subject[len(head) :] if subject.startswith(head) else ""
        partition, _, published = rest.partition(".")
        if partition.isdigit() and published.count(".") == 1:
            return head + published
        return subject

    def parse(self, subject: str) -> tuple[str, str]:
        """Return ``(tenant_id, thread_id)`` for a thread subject under this prefix."""
        head = self.prefix + "."
        logical = self.logical(subject)
        tokens = logical[len(head) :].split(".") if logical.startswith(head) else []
        if len(tokens) != 2:  # noqa: PLR2004 - tenant and thread
            raise ValidationError(f"subject {subject!r} is not a convlog thread subject")
        return decode_token(tokens[0]), decode_token(tokens[1])
