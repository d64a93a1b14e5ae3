"""Export and import: a log's events as JSON Lines, and back into any stream, all or nothing.

An export is one :class:`ExportedEvent` per line (the record's stream ``sequence``, server
``time`` and ``subject`` where it was exported from, and the ``event`` itself, its stored
bytes embedded verbatim, so every ``prev_hash`` still holds after an import), then one
:class:`ExportTrailer` line: ``{"root": ..., "events": N, "threads": M, "heads": {...}}``.

The chains vouch for every event that another follows on its thread; nothing follows a
thread's last event, so the trailer vouches for those: ``heads`` maps each source subject to
the digest of its last event, and ``root`` is the root :func:`~eventlog.verify_chains` gives
for the same records (one SHA-256 over every thread's subject, last sequence and digest), so
an export's root equals the one ``convlog verify`` prints for its scope, and any edit
anywhere, a line dropped from the end, or a trailer edited to match, changes it.

An import checks the whole file before it appends anything: every line's JSON and shape,
that its event decodes, that each thread's chain links within the file, that the trailer
matches, and that each thread continues its chain in the target (or that the target holds
a first part of it: an interrupted import). The first failure raises
:class:`~eventlog.ImportRejectedError`, naming the line. Only then does it append, in atomic
batches where the stream takes them, with the target's subject prefix and optimistic
concurrency on each thread. It is idempotent: an event the target thread already holds
(the same bytes) is skipped, so an interrupted import is simply run again. The target gives
imported events new sequences and server times.

An export without a trailer (written before it existed, or cut short) is refused unless
``allow_missing_root``: without it a truncated file or an edited last event would go
unnoticed, so importing one must be a choice.

A migration (:func:`migrate_events`) is an export piped into an import, in process: every
event of a stream copied, in order and byte for byte, into a new stream with another
partition count and the same subject prefix, so that its chains and its verify root are the
source's. The import's checks, atomic batches and resume all apply; an interrupted
migration is run again. JetStream gives a subject to one stream only, so the target lives
on another server (or account) than the source: a migration is refused before it writes
anything when the target is the source, when the source's server would hold both, or when
the target exists with another partition count.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, TYPE_CHECKING, Final

import msgspec
import nats.js.errors

from eventlog._connect import open_client, probe
from eventlog._nats import NatsErrors
from eventlog.claims import IdClaims
from eventlog.connection import ConnectionState
from eventlog.errors import ImportRejectedError, MalformedEventError, ValidationError
from eventlog.events import MessageCreated, event_digest
from eventlog.log import EventLog, LogRecord
from eventlog.options import ConnectOptions
from eventlog.stream import DEFAULT_PARTITIONS, StreamSettings, partitions_of
from eventlog.verify import ChainVerifier, verify_chains

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Sequence

    from nats.js import api

    from eventlog.events import Event

__all__ = [
    "ExportReport",
    "ExportTrailer",
    "ExportedEvent",
    "ImportReport",
    "MigrateReport",
    "MigrationRefusedError",
    "export_events",
    "import_events",
    "migrate_events",
]

_BATCH = 256
"""Events per atomic batch of an import."""

_SPOOL: Final = 64 * 1024 * 1024
"""Bytes of a migration's export kept in memory; the rest goes to a temporary file."""


class ExportedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One line of an export: where and when the event was stored, and its exact bytes."""

    sequence: int
    time: datetime
    subject: str
    event: msgspec.Raw


class ExportTrailer(msgspec.Struct, frozen=True, kw_only=True):
    """The last line of an export: what commits to all of it, a thread's last event included."""

    root: str
    """The verify root of the exported records."""
    events: int
    threads: int
    heads: dict[str, str]
    """Each source subject's last event digest: names the line when a last event was edited."""


class ExportReport(msgspec.Struct, frozen=True, kw_only=True):
    """What an export wrote: its counts and root, and the records that are not events."""

    events: int
    threads: int
    root: str
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
_TRAILER = msgspec.json.Decoder(ExportTrailer)
_ENCODER = msgspec.json.Encoder()


async def export_events(
    log: EventLog, out: IO[bytes], *, tenant_id: str | None = None, thread_id: str | None = None
) -> ExportReport:
    """Write the events in scope to ``out`` as JSON Lines, in log order, then the trailer."""
    subject = log.subjects.matching(tenant_id, thread_id)
    verifier = ChainVerifier()
    heads: dict[str, str] = {}
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
            verifier.check(record)
            heads[record.subject] = event_digest(record.data)
    checked = verifier.report()
    trailer = ExportTrailer(
        root=checked.root, events=checked.events, threads=checked.threads, heads=heads
    )
    out.write(_ENCODER.encode(trailer) + b"\n")
    return ExportReport(
        events=checked.events,
        threads=checked.threads,
        root=checked.root,
        not_exported=tuple(not_exported),
    )


# --- checking the file ----------------------------------------------------------------------


@dataclass(slots=True)
class _Line:
    """One event line, checked: where it is, what it links to, and its bytes."""

    number: int
    subject: str
    """The thread's subject in the target."""
    event_id: str
    thread_id: str
    prev_hash: str | None
    digest: str
    payload: bytes


@dataclass(slots=True)
class _Export:
    """A whole export file, checked line by line; its trailer is checked by :meth:`seal`."""

    log: EventLog
    lines: list[_Line] = field(default_factory=list)
    chains: dict[str, _Line] = field(default_factory=dict)
    """Each target subject's last line so far."""
    heads: dict[str, _Line] = field(default_factory=dict)
    """Each source subject's last line so far."""
    event_ids: dict[str, int] = field(default_factory=dict)
    verifier: ChainVerifier = field(default_factory=ChainVerifier)
    trailer: ExportTrailer | None = None
    trailer_line: int = 0

    def add(self, number: int, text: bytes) -> None:
        """Check one line of the file, an event or the trailer."""
        if self.trailer is not None:
            raise ImportRejectedError(
                f"an export ends at its trailer, on line {self.trailer_line}", line=number
            )
        try:
            exported = _LINE.decode(text)
        except msgspec.DecodeError as err:
            self._add_trailer(number, text, err)
            return
        payload = bytes(exported.event)
        if len(payload) > self.log.payload_limit:
            raise ImportRejectedError(
                f"its event is {len(payload)} bytes, over the target's limit of "
                f"{self.log.payload_limit}",
                line=number,
                advice="import it into a server with a larger max_payload",
            )
        try:
            event = self.log.codec.decode(payload)
        except MalformedEventError as err:
            raise ImportRejectedError(f"its event cannot be read ({err})", line=number) from err
        line = _Line(
            number=number,
            subject=self.log.subjects.thread(event.tenant_id, event.thread_id),
            event_id=event.event_id,
            thread_id=event.thread_id,
            prev_hash=event.prev_hash,
            digest=event_digest(payload),
            payload=payload,
        )
        self._link(line)
        self.lines.append(line)
        self.heads[exported.subject] = line
        self.verifier.check(
            LogRecord(
                sequence=exported.sequence,
                time=exported.time,
                subject=exported.subject,
                data=payload,
            )
        )

    def _add_trailer(self, number: int, text: bytes, not_event: msgspec.DecodeError) -> None:
        try:
            self.trailer = _TRAILER.decode(text)
        except msgspec.DecodeError:
            raise ImportRejectedError(
                f"the line is not an exported convlog event ({not_event})", line=number
            ) from not_event
        self.trailer_line = number

    def _link(self, line: _Line) -> None:
        """Check that ``line`` continues its thread's chain in the file, and its id is new."""
        first = self.event_ids.setdefault(line.event_id, line.number)
        if first != line.number:
            raise ImportRejectedError(
                f"event {line.event_id} already came on line {first}", line=line.number
            )
        previous = self.chains.get(line.subject)
        self.chains[line.subject] = line
        if previous is not None and line.prev_hash != previous.digest:
            raise ImportRejectedError(
                f"event {line.event_id} does not continue the hash chain of thread "
                f"{line.thread_id!r} from line {previous.number}: one of the two lines was "
                "edited, or events between them were removed",
                line=line.number,
            )

    def seal(self, *, allow_missing_root: bool) -> None:
        """Check the trailer against the lines above it: every thread's head, then the root."""
        trailer = self.trailer
        if trailer is None:
            if allow_missing_root:
                return
            raise ImportRejectedError(
                "the file has no trailer with its root, so an edited last event or a cut-off "
                "end would go unnoticed",
                advice="export it again, or (for an export made before convlog wrote roots) "
                "import it with --allow-missing-root",
            )
        for subject, line in self.heads.items():
            if trailer.heads.get(subject) != line.digest:
                raise ImportRejectedError(
                    f"event {line.event_id}, the last of thread {line.thread_id!r}, is not the "
                    "one the export's trailer names: it was edited, or events after it removed",
                    line=line.number,
                )
        missing = trailer.heads.keys() - self.heads.keys()
        if missing or self.verifier.report().root != trailer.root:
            what = f"the events of {min(missing)!r} are missing" if missing else "it was edited"
            raise ImportRejectedError(
                f"the export's root does not match its events: {what}", line=self.trailer_line
            )


def _checked(log: EventLog, lines: Iterable[bytes], *, allow_missing_root: bool) -> _Export:
    export = _Export(log)
    for number, text in enumerate(lines, start=1):
        if text.strip():
            export.add(number, text)
    export.seal(allow_missing_root=allow_missing_root)
    return export


# --- checking the target --------------------------------------------------------------------


@dataclass(slots=True)
class _Held:
    """What the target holds on one thread subject: its last record, and every digest."""

    sequence: int = 0
    head: str | None = None
    digests: set[str] = field(default_factory=set)


async def _held(log: EventLog, subject: str) -> _Held:
    held = _Held()
    if await log.last_on_subject(subject) is None:
        return held
    async with contextlib.aclosing(log.read(subject=subject)) as records:
        async for record in records:
            held.sequence, held.head = record.sequence, event_digest(record.data)
            held.digests.add(held.head)
    return held


def _missing(log: EventLog, lines: Sequence[_Line], held: _Held) -> list[_Line]:
    """The lines of one thread the target lacks: they must continue what it holds."""
    missing = [line for line in lines if line.digest not in held.digests]
    if missing and missing[0].prev_hash != held.head:
        first = missing[0]
        raise ImportRejectedError(
            f"event {first.event_id} does not continue the hash chain of thread "
            f"{first.thread_id!r} in stream {log.stream.name!r}: the stream holds another "
            f"history of this thread (up to sequence {held.sequence}), or the export starts "
            "after the thread's first events",
            line=first.number,
            advice="import it into another stream",
        )
    return missing


# --- appending ------------------------------------------------------------------------------


async def _append(log: EventLog, lines: Sequence[_Line], held: dict[str, _Held]) -> None:
    """Append ``lines`` in order, atomically if the stream takes batches, else one by one."""
    events: list[Event] = [log.codec.decode(line.payload) for line in lines]
    if not log.supports_atomic:
        for event, line in zip(events, lines, strict=True):
            target = held[line.subject]
            target.sequence = await log.append(
                event, expected_last_subject_sequence=target.sequence, payload=line.payload
            )
        return
    sequences = await log.append_batch(
        events,
        expected=[held[line.subject].sequence for line in lines],
        payloads=[line.payload for line in lines],
    )
    for line, sequence in zip(lines, sequences, strict=True):
        held[line.subject].sequence = sequence


async def _claim_messages(log: EventLog, lines: Sequence[_Line]) -> None:
    """Claim the id of each message ``lines`` create, as a store's write does, before any append.

    On a partitioned stream no fold sees every message id (see :mod:`eventlog.claims`); an
    id another thread holds rejects the import while nothing is written.
    """
    claims = IdClaims(log)
    events = [(log.codec.decode(line.payload), line) for line in lines]
    created = [(e, line) for e, line in events if isinstance(e, MessageCreated)]
    owners: list[str | None] = []
    for start in range(0, len(created), _BATCH):
        owners += await asyncio.gather(
            *(
                claims.claim(e.message_id or "", e.tenant_id, e.thread_id)
                for e, _ in created[start : start + _BATCH]
            )
        )
    for (event, line), owner in zip(created, owners, strict=True):
        if owner is not None:
            raise ImportRejectedError(
                f"message {event.message_id!r} is held by {owner!r} in stream "
                f"{log.stream.name!r}, not by its thread {event.thread_id!r}",
                line=line.number,
                advice="import it into another stream",
            )


async def import_events(
    log: EventLog,
    lines: Iterable[bytes],
    *,
    allow_missing_root: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    batch_size: int = _BATCH,
) -> ImportReport:
    """Check the whole export in ``lines``, then append what ``log`` lacks of it.

    :class:`~eventlog.ImportRejectedError` before any append if any line fails.
    ``on_progress(appended, to_append)`` is called before the first batch and after each.
    """
    export = _checked(log, lines, allow_missing_root=allow_missing_root)
    threads: dict[str, list[_Line]] = {}
    for line in export.lines:
        threads.setdefault(line.subject, []).append(line)
    held = {subject: await _held(log, subject) for subject in threads}
    missing: set[int] = set()
    for subject, of_thread in threads.items():
        missing.update(line.number for line in _missing(log, of_thread, held[subject]))
    todo = [line for line in export.lines if line.number in missing]
    if log.subjects.partitioned:
        await _claim_messages(log, todo)
    for start in range(0, len(todo), batch_size):
        if on_progress is not None:
            on_progress(start, len(todo))
        await _append(log, todo[start : start + batch_size], held)
    if on_progress is not None:
        on_progress(len(todo), len(todo))
    return ImportReport(
        appended=len(todo), already_present=len(export.lines) - len(todo), threads=len(threads)
    )


# --- migrating ------------------------------------------------------------------------------


class MigrationRefusedError(ValidationError):
    """A migration refused before it wrote anything: its target cannot be the source's copy."""

    def __init__(self, reason: str, *, advice: str) -> None:
        self.reason = reason
        super().__init__(f"migrate refused: {reason}; nothing was written, {advice}.")


class MigrateReport(msgspec.Struct, frozen=True, kw_only=True):
    """What a migration copied, and whether the target now verifies to the source's root."""

    events: int
    """Events of the source, all in the target now."""
    threads: int
    appended: int
    already_present: int
    """Events the target held already: an earlier, interrupted run's."""
    partitions: int
    root: str
    """The target's verify root."""
    source_root: str
    """The source's verify root, as its export gave it."""
    not_migrated: tuple[int, ...]
    """Sequences of the source's records that are not events, which no import takes."""
    verified: bool
    """Every chain of the target holds and its root is the source's."""


async def migrate_events(
    source: EventLog,
    servers: str | Sequence[str],
    *,
    stream: str,
    partitions: int = DEFAULT_PARTITIONS,
    options: ConnectOptions | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    batch_size: int = _BATCH,
) -> MigrateReport:
    """Copy every event of ``source`` into ``stream`` on ``servers``, with ``partitions``.

    The target is created with the source's subject prefix, replicas and duplicate window
    (or, if it exists, must have ``partitions`` partitions). :class:`MigrationRefusedError`
    before anything is written if it cannot be the source's copy; then an export into a
    spooled temporary file, imported as :func:`import_events` does (``on_progress`` and
    ``batch_size`` are its), and a verification of the whole target.
    """
    own = await _info(source)
    settings = StreamSettings(
        name=stream,
        subject_prefix=source.subjects.prefix,
        replicas=own.config.num_replicas or source.replicas,
        duplicate_window=own.config.duplicate_window or source.stream.duplicate_window,
        partitions=partitions,
    )
    options = options or ConnectOptions()
    urls = [servers] if isinstance(servers, str) else list(servers)
    found = await _streams_on(urls, options, {source.stream.name, stream})
    _refuse_unfit(source, own, found, settings)
    target = await EventLog.connect(urls, stream=settings, options=options)
    try:
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL) as spool:
            exported = await export_events(source, spool)
            spool.seek(0)
            imported = await import_events(
                target, spool, on_progress=on_progress, batch_size=batch_size
            )
        checked = await verify_chains(target)
    finally:
        await target.close()
    return MigrateReport(
        events=exported.events,
        threads=exported.threads,
        appended=imported.appended,
        already_present=imported.already_present,
        partitions=partitions,
        root=checked.root,
        source_root=exported.root,
        not_migrated=exported.not_exported,
        verified=checked.ok and checked.root == exported.root,
    )


async def _info(log: EventLog) -> api.StreamInfo:
    with log.nats_errors.translating(f"read the info of stream {log.stream.name!r}"):
        return await log.jetstream.stream_info(log.stream.name)


async def _streams_on(
    urls: Sequence[str], options: ConnectOptions, names: Collection[str]
) -> dict[str, api.StreamInfo]:
    """The streams among ``names`` on ``urls``, asked on a connection of its own.

    Not through :meth:`EventLog.connect`, which would create the target before it is checked.
    """
    url = ",".join(urls)
    await probe(urls, url, options.connect_timeout)
    connection = ConnectionState()
    nc = await open_client(urls, url, options, connection)
    errors = NatsErrors(nc, url, connection)
    js = nc.jetstream(timeout=options.write_timeout)
    found: dict[str, api.StreamInfo] = {}
    try:
        for name in names:
            with (
                errors.translating(f"read the info of stream {name!r}"),
                contextlib.suppress(nats.js.errors.NotFoundError),
            ):
                found[name] = await js.stream_info(name)
    finally:
        await nc.close()
    return found


def _refuse_unfit(
    source: EventLog,
    own: api.StreamInfo,
    found: dict[str, api.StreamInfo],
    settings: StreamSettings,
) -> None:
    """Refuse a target that is the source, shares its server, or has another partition count.

    The source's own stream is recognised on the target's servers by its name and creation
    time: a stream of that name created at another time is another stream.
    """
    name, prefix = settings.name, settings.subject_prefix
    there = found.get(source.stream.name)
    if there is not None and own.created is not None and there.created == own.created:
        if name == source.stream.name:
            raise MigrationRefusedError(
                f"stream {name!r} is the source itself", advice="name another stream with --to"
            )
        raise MigrationRefusedError(
            f"the source, stream {source.stream.name!r}, is on the target's server and takes "
            f"every subject under {prefix!r}, and JetStream gives a subject to one stream only",
            advice="migrate to another server (--to-nats-url or --to-data-dir)",
        )
    existing = found.get(name)
    if existing is not None and (count := partitions_of(existing.config)) != settings.partitions:
        raise MigrationRefusedError(
            f"stream {name!r} exists with {count} partition(s), not the "
            f"{settings.partitions} asked for",
            advice=f"migrate into another stream, or ask for {count} with --partitions",
        )
