"""Hash-chain verification: evidence that the stored history of every thread is unaltered.

Each event carries ``prev_hash``, the digest of the bytes of the previous record stored on
its thread's subject (None for the first). :func:`verify_chains` reads the log and checks
every link: an altered, removed, reordered or inserted record breaks the link after it. A
chain cannot vouch for its own last record, so the report also gives a ``root``: one digest
over every thread's last record. Keep it outside NATS; verifying again ``until`` the same
sequence must give the same root, and any change anywhere, a thread's last event included,
gives another.

Records the stream cannot return are reported too (``missing``), a truncated tail among
them: the stream's recorded last sequence above the last record it could read.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import TYPE_CHECKING

import msgspec

from eventlog.errors import Gap
from eventlog.events import event_digest

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from eventlog.log import EventLog, LogRecord

__all__ = ["ChainBreak", "ChainVerifier", "VerifyReport", "verify_chains"]


class ChainBreak(msgspec.Struct, frozen=True, kw_only=True):
    """A record whose ``prev_hash`` does not name the record stored before it on its thread."""

    sequence: int
    """The record whose link does not hold."""
    subject: str
    previous_sequence: int | None
    """The record before it on the same subject (None: it is the first), altered or not."""
    expected: str | None
    """The digest of the previous record: what ``prev_hash`` should be."""
    found: str | None
    """What the record carries instead."""
    reason: str

    def __str__(self) -> str:
        return f"sequence {self.sequence} on {self.subject}: {self.reason}"


class VerifyReport(msgspec.Struct, frozen=True, kw_only=True):
    """What a verification checked and what it found; ``ok`` when every link holds."""

    events: int
    threads: int
    last_sequence: int
    """The last sequence checked (0 when the scope held nothing)."""
    root: str
    """One digest over every thread's last record (subject, sequence, digest), sorted."""
    breaks: tuple[ChainBreak, ...] = ()
    missing: tuple[Gap, ...] = ()
    """Records in scope the stream cannot return: lost before its first sequence, deleted,
    damaged, or a truncated tail."""
    stream_last_sequence: int = 0
    """The last sequence the stream records, readable or not."""

    @property
    def ok(self) -> bool:
        """True when no link is broken and no record is missing."""
        return not self.breaks and not self.missing

    def summary(self) -> str:
        """One line: "ok" with the counts, or the first broken link and the missing records."""
        counts = (
            f"{self.events} events in {self.threads} threads, up to sequence {self.last_sequence}"
        )
        if self.ok:
            return f"ok: {counts}, every hash chain intact (root {self.root})"
        missing = _named(self.missing)
        if not self.breaks:
            return f"incomplete: {counts}; {missing}"
        first = self.breaks[0]
        found = f"broken: {len(self.breaks)} broken link(s) in {counts}; first at {first}"
        return f"{found}; {missing}" if missing else found


_GAPS_NAMED = 5


def _named(missing: tuple[Gap, ...]) -> str:
    """The first few missing spans, and how many more; "" when none are."""
    if not missing:
        return ""
    more = len(missing) - _GAPS_NAMED
    named = ", ".join(map(str, missing[:_GAPS_NAMED]))
    return f"missing records {named}" + (f" and {more} more span(s)" if more > 0 else "")


class _Link(msgspec.Struct):
    prev_hash: str | None = None


_LINK = msgspec.json.Decoder(_Link)


class ChainVerifier:
    """Checks records one at a time, in stream order; :meth:`report` says what it found."""

    def __init__(self) -> None:
        self._heads: dict[str, tuple[int, str]] = {}
        self._breaks: list[ChainBreak] = []
        self._events = 0
        self._last_sequence = 0

    def check(self, record: LogRecord) -> ChainBreak | None:
        """Check ``record``'s link to the previous record of its subject; return a break."""
        head = self._heads.get(record.subject)
        previous_sequence, expected = head if head is not None else (None, None)
        found: str | None = None
        reason = ""
        try:
            found = _LINK.decode(record.data).prev_hash
        except msgspec.DecodeError:
            reason = "the record is not a convlog event, so it carries no link"
        else:
            if found != expected:
                reason = (
                    f"prev_hash does not match sequence {previous_sequence}: "
                    "that record, this link, or what lies between was altered"
                    if previous_sequence is not None
                    else "prev_hash names a record, but none is stored before it: "
                    "earlier records are missing"
                )
        self._heads[record.subject] = (record.sequence, event_digest(record.data))
        self._events += 1
        self._last_sequence = record.sequence
        if not reason:
            return None
        broken = ChainBreak(
            sequence=record.sequence,
            subject=record.subject,
            previous_sequence=previous_sequence,
            expected=expected,
            found=found,
            reason=reason,
        )
        self._breaks.append(broken)
        return broken

    def report(self, *, missing: Sequence[Gap] = (), stream_last_sequence: int = 0) -> VerifyReport:
        """The counts, the root over the threads' last records, and every break seen."""
        hasher = hashlib.sha256()
        for subject in sorted(self._heads):
            sequence, digest = self._heads[subject]
            hasher.update(f"{subject} {sequence} {digest}\n".encode())
        return VerifyReport(
            events=self._events,
            threads=len(self._heads),
            last_sequence=self._last_sequence,
            root=hasher.hexdigest(),
            breaks=tuple(self._breaks),
            missing=tuple(missing),
            stream_last_sequence=stream_last_sequence,
        )


async def verify_chains(
    log: EventLog,
    *,
    tenant_id: str | None = None,
    thread_id: str | None = None,
    until: int | None = None,
    on_record: Callable[[LogRecord], object] | None = None,
) -> VerifyReport:
    """Recompute the hash chain of every thread in scope, up to sequence ``until``.

    ``on_record`` also sees every record checked, in order: a fold, say, to find the
    records that are not valid events in the same pass over the log.

    >>> report = await verify_chains(log, tenant_id="acme")  # doctest: +SKIP
    >>> print(report.summary())  # doctest: +SKIP
    ok: 1204 events in 40 threads up to sequence 1310, every hash chain intact (root 9c1e…)
    """
    recorded = await log.last_sequence()  # before reading: later appends are not a tail
    verifier = ChainVerifier()
    whole = tenant_id is None and thread_id is None
    passed_over: list[tuple[int, int]] = []
    last = 0
    subject = log.subjects.matching(tenant_id, thread_id)
    async with contextlib.aclosing(log.read(subject=subject)) as records:
        async for record in records:
            if until is not None and record.sequence > until:
                break
            if whole and record.sequence > last + 1:
                passed_over.append((last + 1, record.sequence - 1))
            last = record.sequence
            verifier.check(record)
            if on_record is not None:
                on_record(record)
    end = recorded if until is None else min(until, recorded)
    if not whole:  # others' records lie between a scope's: only the stream can say
        missing = await log.gaps(through=until)
    else:
        missing = [gap for first, last_ in passed_over for gap in await log.missing(first, last_)]
        if last < end:
            missing.append(Gap(last + 1, end, f"a truncated tail: the stream records up to {end}"))
        if until is None:
            missing += await log.gaps(after=max(last, end))  # lost past the recorded end
    return verifier.report(missing=missing, stream_last_sequence=recorded)
