"""convlog's read side: views folded from the log, and the MessageStore built on them.

Everything public is importable from here: ``from projections import JetStreamMessageStore``.
"""

from projections.commands import Clock, Commands, utc_now
from projections.store import Health, InMemoryMessageStore, JetStreamMessageStore, MessageStore
from projections.views import EventRejectedError, Projection, SkippedEvent, SubjectHead, Views
from projections.worker import ProjectionWorker

__all__ = [
    "Clock",
    "Commands",
    "EventRejectedError",
    "Health",
    "InMemoryMessageStore",
    "JetStreamMessageStore",
    "MessageStore",
    "Projection",
    "ProjectionWorker",
    "SkippedEvent",
    "SubjectHead",
    "Views",
    "utc_now",
]
