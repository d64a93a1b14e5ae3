"""Snapshots: the serialized views with their sequence and digest, for a fast cold start.

A snapshot object is msgpack: its format version, then the :class:`Snapshot` (the code's
schema version, the stream and prefix it belongs to, the sequence it was taken at, the
views' digest, the skipped records and the whole :class:`~projections.views.ViewsState`)
as msgpack again: everything but the threads, then the threads in pieces of a few megabytes
of JSON, each deflated apart. A million messages are a gigabyte of JSON that compresses
several times over, and the object store delivers about 350 MB/s; the pieces are inflated
in parallel threads (zlib lets go of the GIL) while those already inflated are read, and
restored messages stay JSON until first needed (see :class:`~projections.views.Views`).
Snapshots live in a JetStream object store bucket named ``<stream>_snapshots``, one object
per snapshot (``views-<sequence>``, or ``partition-<k>-<sequence>`` for the views of one
partition).

A store starting up tries the newest snapshot first, then older ones, and folds only the
records after the one it restores. A snapshot is used only if it reads back whole, its
format and schema versions are this code's, it belongs to this stream and is not ahead of
it, the restored views give the digest it was saved with, and the record at its sequence is
still the one its views end on. Anything else is logged, counted in the store's health, and
ignored: no snapshot is ever trusted over the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import msgspec

from eventlog import (
    SCHEMA_VERSION,
    ConvlogError,
    ProjectionError,
    UnavailableError,
    ValidationError,
)
from eventlog.blobs import BlobBucket
from projections._gc import paused_gc
from projections.errors import SnapshotError, SnapshotFormatError
from projections.fold import Projection, SkippedEvent
from projections.views import SubjectHead, ThreadRow, Views, ViewsState

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from eventlog import EventLog

__all__ = [
    "SNAPSHOT_FORMAT",
    "Snapshot",
    "SnapshotHealth",
    "SnapshotInfo",
    "SnapshotPolicy",
    "Snapshots",
]

logger = logging.getLogger(__name__)

SNAPSHOT_FORMAT: Final = 2
"""The layout of a snapshot; raise it when :class:`ViewsState` or :class:`Snapshot` change."""

_PURPOSE: Final = "snapshots"
_NAME: Final = re.compile(r"(views|partition-\d+)-(\d{20})")


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """What one snapshot object holds: :meth:`to_bytes` and :meth:`from_bytes` store it."""

    schema_version: int
    stream: str
    subject_prefix: str
    sequence: int
    digest: str
    """:meth:`Views.digest` of the views below."""
    created_at: datetime
    skipped: list[SkippedEvent]
    views: ViewsState

    async def to_bytes(self) -> bytes:
        """The object stored for this snapshot, in :data:`SNAPSHOT_FORMAT`."""
        rest = msgspec.structs.replace(self.views, threads=[])
        pieces = [_ENCODER.encode(msgspec.structs.replace(self, views=rest))]
        pieces += [_ENCODER.encode(rows) for rows in _pieces(self.views.threads)]
        streams = await asyncio.gather(*(asyncio.to_thread(zlib.compress, p, 1) for p in pieces))
        return _ENCODER.encode(_Blob(SNAPSHOT_FORMAT, streams))

    @classmethod
    async def from_bytes(cls, data: bytes) -> Snapshot:
        """Read a stored snapshot; :class:`SnapshotFormatError` if it is in another format.

        Raises :class:`msgspec.DecodeError` or :class:`zlib.error` for bytes that are not
        a snapshot at all. The pieces are inflated in threads while this one reads those
        already inflated.
        """
        blob = _BLOB.decode(data)
        if blob.format != SNAPSHOT_FORMAT:
            raise SnapshotFormatError(blob.format, SNAPSHOT_FORMAT)
        if not blob.streams:
            raise msgspec.DecodeError("a snapshot without content")
        pieces = [
            asyncio.ensure_future(asyncio.to_thread(zlib.decompress, s)) for s in blob.streams
        ]
        try:
            snapshot = _DECODER.decode(await pieces[0])
            threads = [row for piece in pieces[1:] for row in _ROWS.decode(await piece)]
        finally:
            for piece in pieces:
                if not piece.cancel() and not piece.cancelled():
                    piece.exception()  # seen, so that asyncio does not log it as lost
        return msgspec.structs.replace(
            snapshot, views=msgspec.structs.replace(snapshot.views, threads=threads)
        )


class _Blob(msgspec.Struct, frozen=True):
    """A snapshot object: the format first, which every format can read, then the rest."""

    format: int
    streams: list[bytes] = []
    """Deflated msgpack: the :class:`Snapshot` without its threads, then the threads in
    pieces of about :data:`_PIECE` bytes of JSON, read while the next are inflated."""


_PIECE: Final = 4 * 1024 * 1024
_ENCODER = msgspec.msgpack.Encoder()
_BLOB = msgspec.msgpack.Decoder(_Blob)
_ROWS = msgspec.msgpack.Decoder(list[ThreadRow])
_DECODER = msgspec.msgpack.Decoder(Snapshot)


class SnapshotInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot written: its object name, sequence, size and digest, and how long it took."""

    name: str
    sequence: int
    size: int
    digest: str
    threads: int
    messages: int
    seconds: float


class SnapshotHealth(msgspec.Struct, frozen=True, kw_only=True):
    """Snapshots as a store's health reports them."""

    restored: str | None = None
    """The snapshot the views started from; None: they were folded from sequence 1."""
    rejected: tuple[str, ...] = ()
    """Snapshots found unfit at start-up and ignored, each with the reason."""
    written: int = 0
    last_written: str | None = None
    error: str = ""
    """Why the last periodic snapshot failed, if it did; cleared by the next success."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotPolicy:
    """What a store does with snapshots.

    By default it restores the newest valid snapshot at start-up and writes none itself:
    write them with ``convlog snapshot``, or give one long-running process ``every=N`` to
    have it write one after every N new events.
    """

    restore: bool = True
    every: int | None = None
    """Write a snapshot each time this many events were folded since the last one."""
    keep: int = 3
    """Snapshots kept in the bucket; older ones are deleted after each write."""

    def __post_init__(self) -> None:
        if self.every is not None and self.every < 1:
            raise ValidationError(f"every must be at least 1 event, not {self.every}")
        if self.keep < 1:
            raise ValidationError(f"keep must be at least 1 snapshot, not {self.keep}")


def _pieces(rows: list[ThreadRow]) -> Iterator[list[ThreadRow]]:
    """``rows`` in runs holding about :data:`_PIECE` bytes of JSON each."""
    piece: list[ThreadRow] = []
    size = 0
    for row in rows:
        piece.append(row)
        size += len(row.messages)
        if size >= _PIECE:
            yield piece
            piece, size = [], 0
    if piece:
        yield piece


def _scope(partition: int | None) -> str:
    """What a snapshot's views hold: the whole stream, or one partition."""
    return "views" if partition is None else f"partition-{partition}"


def _sequence(name: str, scope: str) -> int | None:
    """The sequence of snapshot ``name`` if it holds ``scope``; None for any other object."""
    match = _NAME.fullmatch(name)
    return int(match.group(2)) if match and match.group(1) == scope else None


class Snapshots:
    """The snapshots of one stream (or of one of its partitions): write, restore the newest."""

    def __init__(
        self, log: EventLog, policy: SnapshotPolicy | None = None, *, partition: int | None = None
    ) -> None:
        self._log = log
        self.policy = policy or SnapshotPolicy()
        self._scope = _scope(partition)
        self._restored: str | None = None
        self._rejected: list[str] = []
        self._written = 0
        self._last: SnapshotInfo | None = None
        self._error = ""
        self._changed = asyncio.Condition()

    def health(self) -> SnapshotHealth:
        """What happened to snapshots in this process so far."""
        return SnapshotHealth(
            restored=self._restored,
            rejected=tuple(self._rejected),
            written=self._written,
            last_written=self._last.name if self._last else None,
            error=self._error,
        )

    @property
    def last_sequence(self) -> int:
        """The sequence of the last snapshot written or restored here (0: none)."""
        if self._last is not None:
            return self._last.sequence
        return _sequence(self._restored or "", self._scope) or 0

    # --- writing ---------------------------------------------------------------------------

    async def save(self, projection: Projection) -> SnapshotInfo:
        """Write a snapshot of ``projection`` as it is now, then prune old ones."""
        start = time.perf_counter()
        with paused_gc():
            snapshot = self._take(projection)
            data = await snapshot.to_bytes()
        name = f"{self._scope}-{snapshot.sequence:020d}"
        bucket = await BlobBucket.open(self._log, _PURPOSE, create=True)
        if bucket is None:  # pragma: no cover - create=True always returns a bucket
            raise SnapshotError(name, "the snapshot bucket could not be created")
        await bucket.put(name, data)
        await self._prune(bucket)
        info = SnapshotInfo(
            name=name,
            sequence=snapshot.sequence,
            size=len(data),
            digest=snapshot.digest,
            threads=projection.views.thread_count,
            messages=projection.views.message_count,
            seconds=time.perf_counter() - start,
        )
        async with self._changed:
            self._last, self._written, self._error = info, self._written + 1, ""
            self._changed.notify_all()
        return info

    def _take(self, projection: Projection) -> Snapshot:
        """The projection as it is now, in one step: nothing folds in between."""
        state = projection.views.dump()
        return Snapshot(
            schema_version=SCHEMA_VERSION,
            stream=self._log.stream.name,
            subject_prefix=self._log.subjects.prefix,
            sequence=projection.sequence,
            digest=state.digest(),
            created_at=datetime.now(UTC),
            skipped=list(projection.skipped),
            views=state,
        )

    async def _prune(self, bucket: BlobBucket) -> None:
        names = await self._names(bucket)
        for old in names[self.policy.keep :]:
            await bucket.delete(old)

    async def _names(self, bucket: BlobBucket) -> list[str]:
        """The snapshots of this store's scope in the bucket, newest first."""
        names = [n for n in await bucket.names() if _sequence(n, self._scope) is not None]
        return sorted(names, reverse=True)

    async def keep_writing(
        self, projection: Projection, wait_for: Callable[[int], Awaitable[None]], every: int
    ) -> None:
        """Write a snapshot after every ``every`` events folded, until the projection stops.

        Counted from the last snapshot, so a backlog folded at start-up (or after a
        reconnect) is snapshotted as soon as it is ``every`` long; after a failure, from
        where the views stand, so a failing bucket is retried every ``every`` events, not
        in a loop.
        """
        due = self.last_sequence + every
        while True:
            try:
                await wait_for(due)
            except ProjectionError:
                return
            try:
                due = (await self.save(projection)).sequence + every
            except Exception as err:  # noqa: BLE001 - a failed snapshot must not stop the store
                self._error = f"{type(err).__name__}: {err}"
                logger.warning("periodic snapshot failed, will retry: %s", self._error)
                due = projection.sequence + every

    async def wait_written(self, sequence: int) -> SnapshotInfo:
        """Return once a snapshot at ``sequence`` or later has been written here."""
        async with self._changed:
            await self._changed.wait_for(
                lambda: self._last is not None and self._last.sequence >= sequence
            )
            assert self._last is not None  # noqa: S101 - the condition above
            return self._last

    # --- restoring -------------------------------------------------------------------------

    async def restore(self) -> Projection | None:
        """The newest snapshot fit to use, restored; None if there is none (fold from 1)."""
        bucket = await BlobBucket.open(self._log, _PURPOSE, create=False)
        if bucket is None:
            return None
        names = await self._names(bucket)
        end = await self._log.last_sequence()
        for name in names:
            try:
                with paused_gc(freeze=True):  # builds the views: see projections._gc
                    projection = await self._restore(bucket, name, end)
            except UnavailableError:
                raise
            except ConvlogError as err:
                reason = err.reason if isinstance(err, SnapshotError) else str(err)
                self._rejected.append(f"{name}: {reason}")
                logger.warning("snapshot %s ignored, not trusted: %s", name, reason)
                continue
            self._restored = name
            return projection
        return None

    async def _restore(self, bucket: BlobBucket, name: str, end: int) -> Projection:
        data = await bucket.get(name)
        try:
            snapshot = await Snapshot.from_bytes(data)
        except SnapshotFormatError as err:
            raise SnapshotError(name, str(err)) from err
        except (msgspec.DecodeError, zlib.error) as err:
            raise SnapshotError(name, f"it does not read back as a snapshot ({err})") from err
        log = self._log
        expected = (SCHEMA_VERSION, log.stream.name, log.subjects.prefix)
        found = (snapshot.schema_version, snapshot.stream, snapshot.subject_prefix)
        if found != expected:
            raise SnapshotError(
                name,
                f"it was written as (schema version, stream, prefix) {found}, "
                f"and this code reads {expected}",
            )
        if snapshot.sequence > end:
            raise SnapshotError(
                name, f"it is at sequence {snapshot.sequence}, past the stream's end ({end})"
            )
        # Of the rows: the views hold their JSON as it is, and read messages only when needed.
        if (digest := snapshot.views.digest()) != snapshot.digest:
            raise SnapshotError(
                name, f"its views give digest {digest}, not the {snapshot.digest} it was saved with"
            )
        try:
            views = Views.load(snapshot.views)
        except msgspec.ValidationError as err:
            raise SnapshotError(name, f"its views do not read back ({err})") from err
        await self._check_anchor(name, views, snapshot.sequence)
        projection = Projection(self._log.codec, self._log.subjects)
        projection.resume(views, snapshot.sequence, snapshot.skipped)
        return projection

    async def _check_anchor(self, name: str, views: Views, sequence: int) -> None:
        """The record stored at ``sequence`` must be the one the views say they end on."""
        if sequence == 0:
            return
        async with contextlib.aclosing(self._log.read(start_sequence=sequence)) as records:
            record = await anext(records, None)
        stored = (
            None if record is None else (record.subject, SubjectHead(record.sequence, record.data))
        )
        if stored is None or views.head(stored[0]) != stored[1]:
            raise SnapshotError(
                name,
                f"the stream's record at sequence {sequence} is not the one the snapshot ends on;"
                " it was taken from another stream of the same name",
            )
