"""What a write means: each MessageStore write checked against the views, turned into an event.

These are the strict rules where the seed is loose. Each returns the event to append, or
None when the write would change nothing (an identical retry, a repeated delete), and
raises a specific :class:`~eventlog.ConvlogError` for a write that must not happen.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from eventlog import (
    AlreadyExistsError,
    ConflictError,
    DeletedError,
    Message,
    MessageCreated,
    MessageDeleted,
    MessageUpdated,
    NotFoundError,
    Thread,
    ThreadCreated,
    ThreadDeleted,
    ThreadUpdated,
    ValidationError,
)
from eventlog.events import current_context, new_event_id

__all__ = ["Clock", "Commands", "State", "utc_now"]

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time in UTC: the default clock of every store."""
    return datetime.now(UTC)


_THREAD_IDENTITY = ("tenant_id", "user_id")
_MESSAGE_IDENTITY = ("thread_id", "role", "execution_id")
_LATER = {"updated_at", "deleted_at"}
"""Fields the store moves after a create (a new message bumps a thread's updated_at)."""


def _same_create(current: Thread | Message, given: Thread | Message) -> bool:
    """Whether ``given`` is a retry of the create that made ``current``."""
    return current.model_dump(exclude=_LATER) == given.model_dump(exclude=_LATER)


class State(Protocol):
    """What a write is decided against: the views, or a transaction's view of them."""

    def thread(self, thread_id: str) -> Thread | None:
        """The thread, deleted or not, or None."""
        ...

    def thread_status(self, thread_id: str) -> tuple[str, bool] | None:
        """The thread's (tenant id, whether deleted), or None if unknown."""
        ...

    def message(self, message_id: str) -> Message | None:
        """The message, deleted or not, or None."""
        ...

    def message_version(self, message_id: str) -> int | None:
        """The stream sequence of the message's last change, or None if unknown."""
        ...


class Commands:
    """Turns requested writes into events, given the current state and a clock."""

    def __init__(self, views: State, clock: Clock = utc_now) -> None:
        self._views = views
        self._clock = clock

    def _envelope(
        self,
        tenant_id: str,
        thread_id: str,
        *,
        message_id: str | None = None,
        execution_id: str | None = None,
    ) -> dict[str, Any]:
        context = current_context()
        return {
            "event_id": new_event_id(),
            "occurred_at": self._clock(),
            "tenant_id": tenant_id,
            "thread_id": thread_id,
            "message_id": message_id,
            "execution_id": execution_id,
            "actor": context.actor,
            "correlation_id": context.correlation_id,
            "causation_id": context.causation_id,
        }

    def _live_tenant(self, thread_id: str) -> str:
        """The tenant of a live thread (no model made: most writes need only this)."""
        status = self._views.thread_status(thread_id)
        if status is None:
            raise NotFoundError("thread", thread_id)
        tenant_id, deleted = status
        if deleted:
            raise DeletedError("thread", thread_id)
        return tenant_id

    def _live_thread(self, thread_id: str) -> Thread:
        self._live_tenant(thread_id)
        thread = self._views.thread(thread_id)
        assert thread is not None  # noqa: S101 - it was there a moment ago
        return thread

    def create_thread(self, thread: Thread) -> ThreadCreated | None:
        """Create ``thread`` as given; a retry of the same create is a no-op."""
        existing = self._views.thread(thread.id)
        if existing is not None:
            if _same_create(existing, thread):
                return None
            raise AlreadyExistsError("thread", thread.id)
        return ThreadCreated(**self._envelope(thread.tenant_id, thread.id), thread=thread)

    def update_thread(self, thread: Thread) -> ThreadUpdated | None:
        """Change the title; owner ids are fixed, and the store owns the timestamps."""
        current = self._live_thread(thread.id)
        _same_identity("thread", thread.id, current, thread, _THREAD_IDENTITY)
        if thread.title == current.title:
            return None
        envelope = self._envelope(current.tenant_id, current.id)
        updated = current.model_copy(
            update={
                "title": thread.title,
                "updated_at": max(current.updated_at, envelope["occurred_at"]),
            }
        )
        return ThreadUpdated(**envelope, thread=updated)

    def delete_thread(self, thread_id: str) -> ThreadDeleted | None:
        """Soft-delete a thread; deleting it again is a no-op."""
        thread = self._views.thread(thread_id)
        if thread is None:
            raise NotFoundError("thread", thread_id)
        if thread.deleted_at is not None:
            return None
        envelope = self._envelope(thread.tenant_id, thread.id)
        return ThreadDeleted(**envelope, deleted_at=envelope["occurred_at"])

    def create_message(self, message: Message) -> MessageCreated | None:
        """Add a message to a live thread; a retry of the same create is a no-op."""
        existing = self._views.message(message.id)
        if existing is not None:
            if _same_create(existing, message):
                return None
            raise AlreadyExistsError("message", message.id)
        tenant_id = self._live_tenant(message.thread_id)
        envelope = self._envelope(
            tenant_id, message.thread_id, message_id=message.id, execution_id=message.execution_id
        )
        return MessageCreated(**envelope, message=message)

    def update_message(
        self, message: Message, expected_version: int | None = None
    ) -> MessageUpdated | None:
        """Replace content, parts, metadata and parent; the store sets ``updated_at``.

        With ``expected_version`` the update applies only to that version of the message
        (the sequence of its last change), else :class:`ConflictError`.
        """
        if expected_version is not None and expected_version < 1:
            raise ValidationError(
                f"expected_version is a stream sequence, 1 or more, not {expected_version}"
            )
        current = self._views.message(message.id)
        if current is None:
            raise NotFoundError("message", message.id)
        version = self._views.message_version(message.id)
        if expected_version is not None and version != expected_version:
            raise ConflictError(f"message {message.id}", expected_version, version)
        if current.deleted_at is not None:
            raise DeletedError("message", message.id)
        _same_identity("message", message.id, current, message, _MESSAGE_IDENTITY)
        tenant_id = self._live_tenant(current.thread_id)
        changes = {
            "content": message.content,
            "parts": message.parts,
            "metadata": message.metadata,
            "parent_id": message.parent_id,
            "parent_type": message.parent_type,
        }
        if all(getattr(current, name) == value for name, value in changes.items()):
            return None
        envelope = self._envelope(
            tenant_id, current.thread_id, message_id=current.id, execution_id=current.execution_id
        )
        updated = current.model_copy(update={**changes, "updated_at": envelope["occurred_at"]})
        return MessageUpdated(**envelope, message=updated)

    def delete_message(self, message_id: str) -> MessageDeleted | None:
        """Soft-delete a message (also in a deleted thread); deleting again is a no-op."""
        message = self._views.message(message_id)
        if message is None:
            raise NotFoundError("message", message_id)
        if message.deleted_at is not None:
            return None
        thread = self._views.thread(message.thread_id)
        if thread is None:  # pragma: no cover - the fold never admits such a message
            raise NotFoundError("thread", message.thread_id)
        envelope = self._envelope(
            thread.tenant_id, thread.id, message_id=message.id, execution_id=message.execution_id
        )
        return MessageDeleted(**envelope, deleted_at=envelope["occurred_at"])


def _same_identity(
    kind: str,
    entity_id: str,
    current: Thread | Message,
    given: Thread | Message,
    fields: tuple[str, ...],
) -> None:
    for name in fields:
        if getattr(current, name) != getattr(given, name):
            raise ValidationError(
                f"{kind} {entity_id!r}: {name} cannot change "
                f"(stored {getattr(current, name)!r}, given {getattr(given, name)!r})"
            )
