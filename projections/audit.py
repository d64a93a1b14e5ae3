"""Audit: what exactly happened, in what order, who did it, and how everything looked then.

Every answer is a fold of the stored events, read back from the stream (never the live
views, which only say where to look): the history of a message or a thread with the state
after each event, the trail of one agent execution with a summary of its cost, and a
read-only store showing the whole log, a tenant or a thread as of a past sequence or time.
It also verifies the hash chains and rebuilds the views to check them. :class:`Audit` does
all of this for a log and the live projection over it; a
:class:`~projections.JetStreamMessageStore` holds one as ``store.audit``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

from eventlog import (
    Message,
    MessageCreated,
    MessageDeleted,
    MessageUpdated,
    NotFoundError,
    ToolCallPart,
    ToolResultPart,
    ValidationError,
    verify_chains,
)
from projections.errors import ReadOnlyError, RebuildMismatchError
from projections.fold import Projection
from projections.queries import ViewQueries
from projections.rebuild import Rebuilt, rebuild, replay

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import datetime

    from eventlog import (
        AnyEvent,
        EventLog,
        LogRecord,
        MessageId,
        Thread,
        ThreadId,
        VerifyReport,
    )
    from projections.views import Views

__all__ = [
    "Audit",
    "AuditEntry",
    "ExecutionTrail",
    "ReadOnlyStore",
    "TrailSummary",
]


_CHECK_THE_ID = "check the id, and that this store has folded the events that wrote it"


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One event as the log holds it, and the entity it touched as it was right after."""

    sequence: int
    time: datetime
    """The server's time of storing it."""
    event: AnyEvent
    state: Thread | Message | None
    """What the event is about, right after it: the message, or for thread events the thread."""
    data: bytes
    """The event's stored bytes, exactly."""

    @property
    def event_type(self) -> str:
        """The event's type, e.g. ``message.created``."""
        return self.event.event_type

    @property
    def actor(self) -> str | None:
        """Who wrote it, as :func:`eventlog.event_context` set it."""
        return self.event.actor


@dataclass(frozen=True, slots=True, kw_only=True)
class TrailSummary:
    """What one agent execution did and cost, from its messages as they finally stood.

    ``llm_calls`` adds up ``metadata.stats.llm_calls``, counting one call for a message
    without stats that names a model or token usage. ``tool_calls`` and ``tool_errors``
    count tool-call parts and tool results marked as errors. ``wall_time`` is the server
    time from the first event of the execution to its last.
    """

    events: int
    messages: int
    llm_calls: int
    tool_calls: int
    tool_errors: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: Mapping[str, float]
    """Total cost by currency."""
    reported_duration_ms: int
    """The sum of ``metadata.duration_ms``: time the agent reported spending."""
    wall_time: float
    models: tuple[str, ...]
    finish_reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionTrail:
    """Every event of one agent execution in log order, and what it added up to."""

    execution_id: str
    entries: tuple[AuditEntry, ...]
    summary: TrailSummary


def _summarize(entries: tuple[AuditEntry, ...]) -> TrailSummary:
    """Add up a trail, counting each message once, as it finally stood."""
    final = {entry.state.id: entry.state for entry in entries if isinstance(entry.state, Message)}
    messages = list(final.values())
    llm_calls = tool_calls = tool_errors = prompt = completion = total = duration = 0
    cost: defaultdict[str, float] = defaultdict(float)
    models: dict[str, None] = {}
    reasons: dict[str, None] = {}
    for message in messages:
        metadata = message.metadata
        if metadata.stats is not None:
            llm_calls += metadata.stats.llm_calls
        elif metadata.model or metadata.token_usage:
            llm_calls += 1
        tool_calls += sum(isinstance(part, ToolCallPart) for part in message.parts)
        tool_errors += sum(
            isinstance(part, ToolResultPart) and part.is_error for part in message.parts
        )
        if (usage := metadata.token_usage) is not None:
            prompt += usage.prompt_tokens
            completion += usage.completion_tokens
            total += usage.total_tokens
        if metadata.cost is not None:
            cost[metadata.cost.currency] += metadata.cost.total_cost
        duration += metadata.duration_ms or 0
        if metadata.model:
            models[metadata.model] = None
        if metadata.finish_reason is not None:
            reasons[str(metadata.finish_reason)] = None
    return TrailSummary(
        events=len(entries),
        messages=len(messages),
        llm_calls=llm_calls,
        tool_calls=tool_calls,
        tool_errors=tool_errors,
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total,
        cost=dict(cost),
        reported_duration_ms=duration,
        wall_time=(entries[-1].time - entries[0].time).total_seconds() if entries else 0.0,
        models=tuple(models),
        finish_reasons=tuple(reasons),
    )


class ReadOnlyStore(ViewQueries):
    """The MessageStore queries over the log as it was; every write raises ReadOnlyError.

    ``sequence`` is the last record folded and ``time`` its server time; ``tenant_id`` and
    ``thread_id`` say which part of the log it shows (None: all of it).
    """

    def __init__(
        self,
        projection: Projection,
        *,
        time: datetime | None,
        tenant_id: str | None,
        thread_id: str | None,
    ) -> None:
        super().__init__(projection)
        self.time = time
        self.tenant_id = tenant_id
        self.thread_id = thread_id

    @property
    def name(self) -> str:
        """A short name of the implementation."""
        return "read-only-message-store"

    def _refuse(self, method: str) -> NoReturn:
        raise ReadOnlyError(method, self.sequence)

    async def create_thread(self, thread: Thread) -> ThreadId:
        """Refused: ReadOnlyError."""
        self._refuse(f"create_thread({thread.id!r})")

    async def update_thread(self, thread: Thread) -> None:
        """Refused: ReadOnlyError."""
        self._refuse(f"update_thread({thread.id!r})")

    async def delete_thread(self, thread_id: str) -> None:
        """Refused: ReadOnlyError."""
        self._refuse(f"delete_thread({thread_id!r})")

    async def create_message(self, message: Message) -> MessageId:
        """Refused: ReadOnlyError."""
        self._refuse(f"create_message({message.id!r})")

    async def update_message(self, message: Message) -> None:
        """Refused: ReadOnlyError."""
        self._refuse(f"update_message({message.id!r})")

    async def delete_message(self, message_id: str) -> None:
        """Refused: ReadOnlyError."""
        self._refuse(f"delete_message({message_id!r})")

    async def get_or_create_thread(self, tenant_id: str, user_id: str) -> Thread:
        """Refused, since it may write: ReadOnlyError."""
        self._refuse(f"get_or_create_thread({tenant_id!r}, {user_id!r})")


def _message_id(event: AnyEvent) -> str | None:
    """The message an event is about, or None for a thread event."""
    if isinstance(event, MessageCreated | MessageUpdated):
        return event.message.id
    if isinstance(event, MessageDeleted):
        return event.message_id
    return None


def _state(views: Views, event: AnyEvent) -> Thread | Message | None:
    """The entity ``event`` is about, as ``views`` hold it."""
    message_id = _message_id(event)
    return views.thread(event.thread_id) if message_id is None else views.message(message_id)


class Audit:
    """Audit, time travel, verification and rebuild of ``log``, next to its live projection.

    The answers are folded from ``log``; the live ``projection`` only says which thread
    holds an id, and is what :meth:`rebuild` checks against.
    """

    def __init__(self, log: EventLog, projection: Projection) -> None:
        self._log = log
        self._live = projection

    async def _entries(self, subject: str, keep: Callable[[AnyEvent], bool]) -> list[AuditEntry]:
        """Fold ``subject`` from its start; an entry for each applied event ``keep`` wants."""
        projection = Projection(self._log.codec, self._log.subjects)
        entries: list[AuditEntry] = []

        def collect(record: LogRecord, event: AnyEvent | None) -> None:
            if event is not None and keep(event):
                entries.append(
                    AuditEntry(
                        sequence=record.sequence,
                        time=record.time,
                        event=event,
                        state=_state(projection.views, event),
                        data=record.data,
                    )
                )

        await replay(self._log, projection, subject=subject, on_applied=collect)
        return entries

    def _thread_subject(self, thread_id: str) -> str:
        thread = self._live.views.thread(thread_id)
        if thread is None:
            raise NotFoundError("thread", thread_id, _CHECK_THE_ID)
        return self._log.subjects.stored(thread.tenant_id, thread.id)

    async def history(self, message_id: str) -> list[AuditEntry]:
        """Every event that touched a message, in log order, each with the message after it.

        A soft-deleted message keeps its whole history. NotFoundError if no message has
        this id.
        """
        message = self._live.views.message(message_id)
        if message is None:
            raise NotFoundError("message", message_id, _CHECK_THE_ID)
        return await self._entries(
            self._thread_subject(message.thread_id),
            lambda event: _message_id(event) == message_id,
        )

    async def thread_history(self, thread_id: str) -> list[AuditEntry]:
        """Every event of a thread, its messages' included, in log order, each with its state.

        The state is the thread after a thread event, and the message after a message event.
        """
        return await self._entries(self._thread_subject(thread_id), lambda _: True)

    async def execution_trail(self, execution_id: str) -> ExecutionTrail:
        """Every event of one agent execution in log order, and a summary of what it did."""
        threads = dict.fromkeys(
            m.thread_id for m in self._live.views.messages_by_execution(execution_id)
        )
        if not threads:
            raise NotFoundError("execution", execution_id, _CHECK_THE_ID)
        entries: list[AuditEntry] = []
        for thread_id in threads:
            entries += await self._entries(
                self._thread_subject(thread_id), lambda event: event.execution_id == execution_id
            )
        entries.sort(key=lambda entry: entry.sequence)
        trail = tuple(entries)
        return ExecutionTrail(execution_id=execution_id, entries=trail, summary=_summarize(trail))

    async def at(
        self, sequence: int, *, tenant_id: str | None = None, thread_id: str | None = None
    ) -> ReadOnlyStore:
        """A read-only store of the log (or a tenant, or a thread) as of stream ``sequence``."""
        if sequence < 0:
            raise ValidationError(f"sequence must be >= 0, not {sequence}")
        return await self._as_of(lambda r: r.sequence > sequence, tenant_id, thread_id)

    async def as_of(
        self, when: datetime, *, tenant_id: str | None = None, thread_id: str | None = None
    ) -> ReadOnlyStore:
        """A read-only store of the log (or a tenant, or a thread) as of server time ``when``.

        It holds every record stored at or before ``when``, in log order up to the first
        record stored later (JetStream stamps records in order, so this is the same thing).
        """
        if when.tzinfo is None:
            raise ValidationError("when must be an aware datetime, e.g. datetime.now(UTC)")
        return await self._as_of(lambda r: r.time > when, tenant_id, thread_id)

    async def _as_of(
        self, stop: Callable[[LogRecord], bool], tenant_id: str | None, thread_id: str | None
    ) -> ReadOnlyStore:
        projection = Projection(self._log.codec, self._log.subjects)
        last_time: datetime | None = None

        def note(record: LogRecord, _: AnyEvent | None) -> None:
            nonlocal last_time
            last_time = record.time

        await replay(
            self._log,
            projection,
            subject=self._log.subjects.matching(tenant_id, thread_id),
            stop=stop,
            on_applied=note,
        )
        return ReadOnlyStore(projection, time=last_time, tenant_id=tenant_id, thread_id=thread_id)

    async def verify(
        self,
        *,
        tenant_id: str | None = None,
        thread_id: str | None = None,
        until: int | None = None,
    ) -> VerifyReport:
        """Recompute the hash chain of every thread in scope; see :func:`eventlog.verify_chains`."""
        return await verify_chains(self._log, tenant_id=tenant_id, thread_id=thread_id, until=until)

    async def rebuild(
        self, *, verify: bool = False, on_progress: Callable[[int, int], None] | None = None
    ) -> Rebuilt:
        """Replay the stream into fresh views, up to the sequence the live views have folded.

        With ``verify`` the rebuilt digest must equal the live views' digest at that same
        sequence, or :class:`RebuildMismatchError` is raised. ``on_progress`` is
        :func:`~projections.rebuild.rebuild`'s.
        """
        sequence = self._live.sequence
        live = self._live.views.digest() if verify else ""  # taken now, at exactly ``sequence``
        rebuilt = await rebuild(self._log, until=sequence, on_progress=on_progress)
        if verify and rebuilt.digest != live:
            raise RebuildMismatchError(sequence, live, rebuilt.digest)
        return rebuilt
