"""Export and import: a log's events as JSON Lines, and back into any stream.

Each line is one :class:`ExportedEvent`: the record's stream ``sequence``, server ``time``
and ``subject`` where it was exported from, and the ``event`` itself, its stored bytes
embedded verbatim (they are JSON), so every ``prev_hash`` still holds after an import.

An import appends each event to its thread in the target stream, with the target's
subject prefix and optimistic concurrency on the thread. It is idempotent: an event whose
id the target thread already holds is skipped, so an interrupted import can simply be run
again. It refuses an event that would not continue its thread's hash chain in the target
(the target holds another history of that thread, or the export has a gap) rather than
writing a broken chain. The target gives imported events new sequences and server times.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, TYPE_CHECKING

import msgspec

from eventlog.errors import ValidationError
from eventlog.events import MalformedEventError, event_digest

if TYPE_CHECKING:
    from collections.abc import Iterable

    from eventlog.log import EventLog

__all__ = ["ExportReport", "ExportedEvent", "ImportReport", "export_events", "import_events"]


class ExportedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One line of an export: where and when the event was stored, and its exact bytes."""

    sequence: int
    time: datetime
    subject: str
    event: msgspec.Raw


class ExportReport(msgspec.Struct, frozen=True, kw_only=True):
    """How many events an export wrote, and the records it could not (not events at all)."""

    events: int
    not_exported: tuple[int, ...] = ()


class ImportReport(msgspec.Struct, frozen=True, kw_only=True):
    """How many events an import appended, and how many the target already held."""

    appended: int
    already_present: int
    threads: int


class _Envelope(msgspec.Struct):
    event_id: str
    tenant_id: str
    thread_id: str


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_LINE = msgspec.json.Decoder(ExportedEvent)
_ENCODER = msgspec.json.Encoder()


async def export_events(
    log: EventLog, out: IO[bytes], *, tenant_id: str | None = None, thread_id: str | None = None
) -> ExportReport:
    """Write the events in scope to ``out`` as JSON Lines, in log order."""
    subject = log.subjects.matching(tenant_id, thread_id)
    events = 0
    not_exported: list[int] = []
    async with contextlib.aclosing(log.read(subject=subject)) as records:
        async for record in records:
            try:
                _ENVELOPE.decode(record.data)
            except msgspec.DecodeError:
                not_exported.append(record.sequence)
                continue
            line = ExportedEvent(
                sequence=record.sequence,
                time=record.time,
                subject=record.subject,
                event=msgspec.Raw(record.data),
            )
            out.write(_ENCODER.encode(line) + b"\n")
            events += 1
    return ExportReport(events=events, not_exported=tuple(not_exported))


@dataclass(slots=True)
class _Thread:
    """What the target holds on one thread subject: its last record, and every event id."""

    sequence: int = 0
    digest: str | None = None
    event_ids: set[str] = field(default_factory=set)


async def _target_thread(log: EventLog, subject: str) -> _Thread:
    thread = _Thread()
    if await log.last_on_subject(subject) is None:
        return thread
    async for record in log.read(subject=subject):
        with contextlib.suppress(msgspec.DecodeError):
            thread.event_ids.add(_ENVELOPE.decode(record.data).event_id)
        thread.sequence, thread.digest = record.sequence, event_digest(record.data)
    return thread


async def import_events(log: EventLog, lines: Iterable[bytes]) -> ImportReport:
    """Append the exported events in ``lines`` to ``log``; skip those it already holds."""
    threads: dict[str, _Thread] = {}
    appended = present = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            payload = bytes(_LINE.decode(line).event)
            event = log.codec.decode(payload)
        except (msgspec.DecodeError, MalformedEventError) as err:
            raise ValidationError(f"line {number} is not an exported convlog event: {err}") from err
        subject = log.subjects.thread(event.tenant_id, event.thread_id)
        if subject not in threads:
            threads[subject] = await _target_thread(log, subject)
        target = threads[subject]
        if event.event_id in target.event_ids:
            present += 1
            continue
        if event.prev_hash != target.digest:
            raise ValidationError(
                f"line {number}: event {event.event_id} does not continue the hash chain of "
                f"thread {event.thread_id!r} in stream {log.stream.name!r}; the stream holds "
                f"another history of this thread, or the export has a gap. {appended} events "
                "were appended before this one, and none after it."
            )
        target.sequence = await log.append(
            event, expected_last_subject_sequence=target.sequence, payload=payload
        )
        target.digest = event_digest(payload)
        target.event_ids.add(event.event_id)
        appended += 1
    return ImportReport(appended=appended, already_present=present, threads=len(threads))
