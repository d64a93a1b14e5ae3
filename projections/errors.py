"""The exceptions the read side raises, each under eventlog's root.

```
ConvlogError (eventlog)
├── ValidationError (eventlog)
│   └── EventRejectedError   a well-formed event that does not fit the state
├── RebuildMismatchError     rebuilt views differ from the live ones (sequence, live, rebuilt)
├── ReadOnlyError            a write on a store that shows the past (method, sequence)
├── SnapshotError            a snapshot not written, or unfit to restore (name, reason)
├── SnapshotFormatError      a snapshot in a format this code does not read (found, reads)
└── TransactionError         writes of a transaction broke the rules; none was written
                             (failures: each write's index and error)
```

The rest of the tree, and the errors the read side passes on from the log (NotFoundError,
ConflictError, ProjectionError, ...), are in :mod:`eventlog.errors`.
"""

from __future__ import annotations

from eventlog import ConvlogError, ValidationError

__all__ = [
    "EventRejectedError",
    "ReadOnlyError",
    "RebuildMismatchError",
    "SnapshotError",
    "SnapshotFormatError",
    "TransactionError",
]


class EventRejectedError(ValidationError):
    """A well-formed event that does not fit the state, e.g. a message for an unknown thread."""


class RebuildMismatchError(ConvlogError):
    """Views rebuilt from the log differ from the live views at the same sequence."""

    def __init__(self, sequence: int, live: str, rebuilt: str) -> None:
        self.sequence = sequence
        self.live = live
        self.rebuilt = rebuilt
        super().__init__(
            f"the views rebuilt from the log differ from the live views at sequence {sequence} "
            f"(live digest {live}, rebuilt {rebuilt}); the live views did not come from the "
            "log alone, or the fold is not deterministic: keep both and report it."
        )


class ReadOnlyError(ConvlogError):
    """A write was tried on a store that shows the past; it has no log to write to."""

    def __init__(self, method: str, sequence: int) -> None:
        self.method = method
        self.sequence = sequence
        super().__init__(
            f"{method} cannot write: this store shows the log as of sequence {sequence} and "
            "is read-only; write through a live store."
        )


class SnapshotError(ConvlogError):
    """A snapshot could not be written, or was not fit to restore (``name``, ``reason``)."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"snapshot {name}: {reason}")


class SnapshotFormatError(ConvlogError):
    """A snapshot in a format this code does not read, older or newer."""

    def __init__(self, found: int, reads: int) -> None:
        self.found = found
        self.reads = reads
        super().__init__(f"it is in format {found}, and this code reads format {reads}")


class TransactionError(ConvlogError):
    """Writes of a transaction were refused (``failures``: each one's index and error).

    Refused before anything was sent (``written`` False), nothing of the transaction is
    stored. ``written`` True: it was stored, but the fold skipped the writes named, which
    lost a race for their new ids to another process (only where ids are not claimed,
    see the README); the others stand.
    """

    def __init__(
        self,
        count: int,
        failures: list[tuple[int, ConvlogError]],
        what: list[str],
        *,
        written: bool = False,
    ) -> None:
        self.failures = failures
        self.written = written
        listed = "; ".join(f"write {i} ({what[i]}): {err}" for i, err in failures)
        outcome = (
            "was stored, but the fold skipped the writes below, which lost a race for their "
            "ids; the others stand"
            if written
            else "was refused and nothing of it was written"
        )
        super().__init__(f"a transaction of {count} writes {outcome}: {listed}")
