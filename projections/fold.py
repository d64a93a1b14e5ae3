"""The fold: log records into :class:`~projections.views.Views`, one sequence at a time.

A :class:`Projection` decodes each record, checks that it arrived on its thread's subject,
and applies it to its views. A record that cannot apply is skipped, logged and kept as a
:class:`SkippedEvent`, never fatal: a bad record on an append-only stream must not stop the
projection, and since the fold is deterministic every replica skips the same records.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import msgspec

from eventlog import MalformedEventError
from eventlog.events import EventCodec
from eventlog.subjects import Subjects
from projections.errors import EventRejectedError
from projections.views import Views

if TYPE_CHECKING:
    from collections.abc import Iterable

    from eventlog import LogRecord
    from eventlog.events import DataEvent

__all__ = ["Projection", "SkippedEvent"]

logger = logging.getLogger(__name__)


class SkippedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A record the projection could not apply: counted, kept for inspection, never fatal."""

    sequence: int
    subject: str
    reason: str


class Projection:
    """Folds log records into :class:`Views`, skipping and recording what cannot apply.

    A record that cannot apply (not an event, a newer schema, an event that contradicts
    the state or arrived on another thread's subject) is skipped, logged and kept in
    :attr:`skipped`: a bad record on an append-only stream must never stop the projection.
    """

    def __init__(self, codec: EventCodec | None = None, subjects: Subjects | None = None) -> None:
        self.views = Views()
        self.sequence = 0
        """The last stream sequence folded (applied or skipped)."""
        self.skipped: list[SkippedEvent] = []
        self._skipped_at: dict[int, SkippedEvent] = {}
        self._codec = codec or EventCodec()
        self._subjects = subjects or Subjects()
        self._thread_subjects: dict[str, tuple[str, str]] = {}
        """thread id -> (tenant id, subject): each thread's subject, worked out once."""

    def apply(self, record: LogRecord) -> bool:
        """Fold one record; a record that cannot apply is skipped, logged and counted.

        Returns whether it applied: False when it was skipped or redelivered.
        """
        if record.sequence <= self.sequence:
            return False  # redelivered: each sequence takes effect once
        self.views.advance(record.subject, record.sequence, record.data)
        try:
            event = self._codec.decode_data(record.data)
            self._check_subject(record, event)
            self.views.apply(record.sequence, event)
        except Exception as err:  # noqa: BLE001 - any record that cannot apply is skipped
            self._skip(record, err)
            applied = False
        else:
            applied = True
        self.sequence = record.sequence
        return applied

    def _check_subject(self, record: LogRecord, event: DataEvent) -> None:
        """The subject is what the server checked concurrency and permissions on: trust it."""
        known = self._thread_subjects.get(event.thread_id)
        if known is not None and known[0] == event.tenant_id:
            expected = known[1]
        else:
            expected = self._subjects.thread(event.tenant_id, event.thread_id)
            self._thread_subjects[event.thread_id] = (event.tenant_id, expected)
        if record.subject != expected:
            raise EventRejectedError(f"an event for {expected!r} arrived on {record.subject!r}")

    def _skip(self, record: LogRecord, err: Exception) -> None:
        known = isinstance(err, MalformedEventError | EventRejectedError)
        reason = str(err) if known else f"unexpected {type(err).__name__}: {err}"
        skipped = SkippedEvent(sequence=record.sequence, subject=record.subject, reason=reason)
        self.skipped.append(skipped)
        self._skipped_at[record.sequence] = skipped
        logger.warning("skipped sequence %d on %s: %s", *msgspec.structs.astuple(skipped))

    def resume(self, views: Views, sequence: int, skipped: Iterable[SkippedEvent]) -> None:
        """Continue from a saved state (a snapshot): these views, folded up to ``sequence``."""
        self.views = views
        self.sequence = sequence
        self.skipped = list(skipped)
        self._skipped_at = {record.sequence: record for record in self.skipped}

    def rejection(self, sequence: int) -> SkippedEvent | None:
        """Why the record at ``sequence`` was skipped, or None if it applied (or is unseen)."""
        return self._skipped_at.get(sequence)
