"""Subject names, and the reversible encoding that keeps any id inside its own token.

Every event of a thread goes to ``<prefix>.<tenant>.<thread>``. An id that is already a
safe token (``[A-Za-z0-9_-]+`` not starting with ``_``) is used as it is, so subjects stay
readable; any other id becomes ``_`` + lowercase base32 of its UTF-8 bytes. Encoded tokens
always start with ``_`` and plain ones never do, so the mapping is one-to-one, and no id
can carry ``.``, ``*``, ``>`` or whitespace into another tenant's subject space.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from eventlog.errors import ValidationError

__all__ = ["Subjects", "decode_token", "encode_token"]

_SAFE_TOKEN = re.compile(r"[A-Za-z0-9\-][A-Za-z0-9_\-]*")
_ENCODED_MARK = "_"
_PREFIX_TOKEN = re.compile(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*")


def encode_token(value: str) -> str:
    """Return a subject token for ``value``, encoding it when it is not plainly safe."""
    if _SAFE_TOKEN.fullmatch(value):
        return value
    encoded = base64.b32encode(value.encode("utf-8")).decode("ascii").rstrip("=").lower()
    return _ENCODED_MARK + encoded


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
    """The subject layout under one prefix (``convlog`` unless configured)."""

    prefix: str = "convlog"

    def __post_init__(self) -> None:
        if not _PREFIX_TOKEN.fullmatch(self.prefix):
            raise ValidationError(
                f"subject prefix {self.prefix!r} must be dot-separated tokens of "
                "letters, digits, '_' or '-'"
            )

    @property
    def all(self) -> str:
        """The wildcard that matches every convlog event under this prefix."""
        return f"{self.prefix}.>"

    def tenant(self, tenant_id: str) -> str:
        """The wildcard that matches one tenant's events."""
        return f"{self.prefix}.{encode_token(tenant_id)}.>"

    def thread(self, tenant_id: str, thread_id: str) -> str:
        """The subject that carries every event of one thread."""
        return f"{self.prefix}.{encode_token(tenant_id)}.{encode_token(thread_id)}"

    def matching(self, tenant_id: str | None, thread_id: str | None) -> str:
        """The filter for one tenant and/or one thread; None matches any."""
        tenant = "*" if tenant_id is None else encode_token(tenant_id)
        thread = "*" if thread_id is None else encode_token(thread_id)
        return f"{self.prefix}.{tenant}.{thread}"

    def parse(self, subject: str) -> tuple[str, str]:
        """Return ``(tenant_id, thread_id)`` for a thread subject under this prefix."""
        head = self.prefix + "."
        tokens = subject[len(head) :].split(".") if subject.startswith(head) else []
        if len(tokens) != 2:  # noqa: PLR2004 - tenant and thread
            raise ValidationError(f"subject {subject!r} is not a convlog thread subject")
        return decode_token(tokens[0]), decode_token(tokens[1])
