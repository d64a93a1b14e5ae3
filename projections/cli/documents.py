"""What ``--json`` prints: one document type per command, documented in docs/cli.md.

Each is a msgspec struct, so the schema is these fields and nothing else; stored events
are embedded verbatim (``msgspec.Raw``), so their bytes and hash links survive.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from eventlog import ChainBreak, Gap
from projections.audit import AuditEntry, TrailSummary
from projections.fold import SkippedEvent

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "AuditDocument",
    "ExportDocument",
    "ImportDocument",
    "RebuildDocument",
    "ShowDocument",
    "StatsDocument",
    "VerifyDocument",
    "entries",
    "gaps",
    "print_json",
]


class _Entry(msgspec.Struct, frozen=True, kw_only=True):
    """One event of a history or replay: where and when it is stored, and what it left."""

    sequence: int
    time: datetime
    event_type: str
    actor: str | None
    event: msgspec.Raw
    state: dict[str, Any] | None


class AuditDocument(msgspec.Struct, frozen=True, kw_only=True):
    """``history`` and ``replay``: what was asked about (the others null), and its events."""

    message_id: str | None = None
    thread_id: str | None = None
    execution_id: str | None = None
    entries: tuple[_Entry, ...]
    summary: TrailSummary | None = None


class ShowDocument(msgspec.Struct, frozen=True, kw_only=True):
    """``show``: a thread as it stood at a sequence (null if it did not exist yet)."""

    sequence: int
    time: datetime | None
    thread: dict[str, Any] | None
    messages: tuple[dict[str, Any], ...]


class _Gap(msgspec.Struct, frozen=True, kw_only=True):
    first: int
    last: int
    reason: str


class VerifyDocument(msgspec.Struct, frozen=True, kw_only=True):
    """``verify``: the chains' verdict, what was checked, what broke, and the dead letters."""

    ok: bool
    events: int
    threads: int
    last_sequence: int
    stream_last_sequence: int
    root: str
    breaks: tuple[ChainBreak, ...]
    missing: tuple[_Gap, ...]
    dead_letters: tuple[SkippedEvent, ...]


class StatsDocument(msgspec.Struct, frozen=True, kw_only=True):
    """``stats``: counts, position, health and dead letters."""

    stream: str
    threads: int
    messages: int
    stream_sequence: int | None
    applied_sequence: int
    status: str
    detail: str
    restored_snapshot: str | None
    dead_letters: tuple[SkippedEvent, ...]


class RebuildDocument(msgspec.Struct, frozen=True, kw_only=True):
    """``rebuild``: what was folded, how fast, the digest, and whether it was verified."""

    events: int
    sequence: int
    seconds: float
    rate: float
    threads: int
    messages: int
    digest: str
    verified: bool
    live_restored_from: str | None
    """With --verify: the snapshot the live views started from (null: folded from 1)."""


class ExportDocument(msgspec.Struct, frozen=True, kw_only=True):
    """``export``'s summary: how many events of how many threads, the root, what was left out."""

    stream: str
    events: int
    threads: int
    root: str
    not_exported: tuple[int, ...]


class ImportDocument(msgspec.Struct, frozen=True, kw_only=True):
    """``import``: how many events were appended and how many the stream held already."""

    stream: str
    appended: int
    already_present: int
    threads: int


def entries(found: Sequence[AuditEntry]) -> tuple[_Entry, ...]:
    """Audit entries as documents: the stored event verbatim, the state as its JSON."""
    return tuple(
        _Entry(
            sequence=entry.sequence,
            time=entry.time,
            event_type=entry.event_type,
            actor=entry.actor,
            event=msgspec.Raw(entry.data),
            state=entry.state.model_dump(mode="json") if entry.state is not None else None,
        )
        for entry in found
    )


def gaps(missing: tuple[Gap, ...]) -> tuple[_Gap, ...]:
    """Missing spans as objects (a Gap is a tuple, which JSON would make an array)."""
    return tuple(_Gap(first=gap.first, last=gap.last, reason=gap.reason) for gap in missing)


def print_json(document: msgspec.Struct, *, stderr: bool = False) -> None:
    """Write ``document`` as one line of JSON to stdout (or stderr)."""
    out = sys.stderr if stderr else sys.stdout
    out.write(msgspec.json.encode(document).decode() + "\n")
    out.flush()
