"""convlog's read side: views folded from the log, and the MessageStore built on them.

Everything public is importable from here: ``from projections import JetStreamMessageStore``.
"""

from projections.audit import (
    Audit,
    AuditEntry,
    ExecutionTrail,
    ReadOnlyError,
    ReadOnlyStore,
    TrailSummary,
)
from projections.commands import Clock, Commands, utc_now
from projections.health import Health
from projections.progress import Progress
from projections.queries import ViewQueries
from projections.rebuild import RebuildMismatchError, Rebuilt, rebuild, replay
from projections.snapshot import (
    SNAPSHOT_FORMAT,
    Snapshot,
    SnapshotError,
    SnapshotFormatError,
    SnapshotHealth,
    SnapshotInfo,
    SnapshotPolicy,
    Snapshots,
)
from projections.store import InMemoryMessageStore, JetStreamMessageStore, MessageStore
from projections.views import (
    EventRejectedError,
    Projection,
    SkippedEvent,
    SubjectHead,
    ThreadRow,
    Views,
    ViewsState,
)
from projections.worker import ProjectionWorker

__all__ = [
    "SNAPSHOT_FORMAT",
    "Audit",
    "AuditEntry",
    "Clock",
    "Commands",
    "EventRejectedError",
    "ExecutionTrail",
    "Health",
    "InMemoryMessageStore",
    "JetStreamMessageStore",
    "MessageStore",
    "Progress",
    "Projection",
    "ProjectionWorker",
    "ReadOnlyError",
    "ReadOnlyStore",
    "RebuildMismatchError",
    "Rebuilt",
    "SkippedEvent",
    "Snapshot",
    "SnapshotError",
    "SnapshotFormatError",
    "SnapshotHealth",
    "SnapshotInfo",
    "SnapshotPolicy",
    "Snapshots",
    "SubjectHead",
    "ThreadRow",
    "TrailSummary",
    "ViewQueries",
    "Views",
    "ViewsState",
    "rebuild",
    "replay",
    "utc_now",
]
