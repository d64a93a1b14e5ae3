"""convlog's read side: views folded from the log, and the MessageStore built on them.

The package root is what users import: ``from projections import JetStreamMessageStore``.
The parts a store is built of (the fold, views, queries, commands, the projection worker,
snapshot storage) are imported from their modules; ``tests/test_exports.py`` pins both
tiers. ``projections.testing`` holds the contract suite for other stores.
"""

from projections.audit import (
    Audit,
    AuditEntry,
    ExecutionTrail,
    ReadOnlyStore,
    TrailSummary,
)
from projections.commands import (
    Clock,
    utc_now,
)
from projections.errors import (
    EventRejectedError,
    ReadOnlyError,
    RebuildMismatchError,
    SnapshotError,
    SnapshotFormatError,
    TransactionError,
)
from projections.fold import (
    SkippedEvent,
)
from projections.health import (
    Health,
)
from projections.rebuild import (
    Rebuilt,
    rebuild,
)
from projections.service import (
    RemoteMessageStore,
    ServiceSubjects,
)
from projections.snapshot import (
    SnapshotHealth,
    SnapshotInfo,
    SnapshotPolicy,
)
from projections.store import (
    InMemoryMessageStore,
    JetStreamMessageStore,
    MessageStore,
)
from projections.transaction import (
    Transaction,
)

__all__ = [
    "Audit",
    "AuditEntry",
    "Clock",
    "EventRejectedError",
    "ExecutionTrail",
    "Health",
    "InMemoryMessageStore",
    "JetStreamMessageStore",
    "MessageStore",
    "ReadOnlyError",
    "ReadOnlyStore",
    "RebuildMismatchError",
    "Rebuilt",
    "RemoteMessageStore",
    "ServiceSubjects",
    "SkippedEvent",
    "SnapshotError",
    "SnapshotFormatError",
    "SnapshotHealth",
    "SnapshotInfo",
    "SnapshotPolicy",
    "TrailSummary",
    "Transaction",
    "TransactionError",
    "rebuild",
    "utc_now",
]
