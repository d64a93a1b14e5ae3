"""Transactions: several writes decided together and appended as one atomic batch.

An agent's turn is a user message, reasoning, tool calls, their results and an answer.
Written as a transaction it is stored whole or not at all, with one fsync, and each write
in it is checked by the same rules as alone, against the views *and the writes before it
in the transaction* (:class:`Overlay`): a message may go into a thread the same
transaction creates, and a message created in it may be updated or deleted further on.

    async with store.transaction() as tx:
        tx.create_message(question)
        tx.create_message(tool_call)
        tx.create_message(answer)

A write that breaks a rule fails the whole transaction before anything is sent, with
:class:`TransactionError` naming each failing write; a concurrent writer's change to one
of its threads makes the store decide the whole transaction again, as for a single write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from eventlog import (
    Message,
    MessageCreated,
    MessageUpdated,
    Thread,
    ThreadCreated,
    ThreadDeleted,
    ThreadUpdated,
    ValidationError,
)
from eventlog.log import MAX_BATCH

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventlog import AnyEvent
    from projections.commands import Commands, State

__all__ = ["Change", "Overlay", "Transaction"]


@dataclass(frozen=True, slots=True)
class Change:
    """One write: the thread it touches, what it is, and how it is decided."""

    thread_id: str
    what: str
    """E.g. ``create_message 'msg_1'``: how errors name it."""
    decide: Callable[[Commands], AnyEvent | None]


class Overlay:
    """What a transaction's next write is decided against: its earlier writes, then the views."""

    def __init__(self, views: State) -> None:
        self._views = views
        self._threads: dict[str, Thread] = {}
        self._messages: dict[str, Message] = {}

    def thread(self, thread_id: str) -> Thread | None:
        """The thread as the transaction has left it so far."""
        if thread_id in self._threads:
            return self._threads[thread_id]
        return self._views.thread(thread_id)

    def thread_status(self, thread_id: str) -> tuple[str, bool] | None:
        """The thread's (tenant id, whether deleted) as the transaction has left it so far."""
        if thread_id in self._threads:
            thread = self._threads[thread_id]
            return thread.tenant_id, thread.deleted_at is not None
        return self._views.thread_status(thread_id)

    def message(self, message_id: str) -> Message | None:
        """The message as the transaction has left it so far."""
        if message_id in self._messages:
            return self._messages[message_id]
        return self._views.message(message_id)

    def message_version(self, message_id: str) -> int | None:
        """-1 for a message this transaction changed: no version a caller can expect.

        Its next version is unknown until the transaction is stored, so an update that
        expects any version of it is a conflict.
        """
        if message_id in self._messages:
            return -1
        return self._views.message_version(message_id)

    def record(self, event: AnyEvent) -> None:
        """Take in a write just decided, for the writes after it."""
        if isinstance(event, ThreadCreated | ThreadUpdated):
            self._threads[event.thread_id] = event.thread
        elif isinstance(event, MessageCreated | MessageUpdated):
            self._messages[event.message.id] = event.message
        elif isinstance(event, ThreadDeleted):
            thread = self.thread(event.thread_id)
            if thread is not None:
                self._threads[thread.id] = thread.model_copy(
                    update={"deleted_at": event.deleted_at}
                )
        else:
            message = self.message(event.message_id or "")
            if message is not None:
                self._messages[message.id] = message.model_copy(
                    update={"deleted_at": event.deleted_at}
                )


@dataclass
class Transaction:
    """The writes of a transaction, recorded in order; the store writes them on leaving the block.

    Each method takes what the store's method of the same name takes. ``sequences`` holds
    the stream sequences written once the block is left (writes that changed nothing, such
    as a repeated delete, have none).
    """

    _threads_of: Callable[[str], str]
    """The thread of a message id, as the store's views know it."""
    changes: list[Change] = field(default_factory=list)
    sequences: list[int] = field(default_factory=list)
    _created: dict[str, str] = field(default_factory=dict)

    def _add(
        self, thread_id: str, what: str, decide: Callable[[Commands], AnyEvent | None]
    ) -> None:
        if len(self.changes) == MAX_BATCH:
            raise ValidationError(f"a transaction holds at most {MAX_BATCH} writes")
        self.changes.append(Change(thread_id, what, decide))

    def create_thread(self, thread: Thread) -> None:
        """Create a thread."""
        self._add(thread.id, f"create_thread {thread.id!r}", lambda c: c.create_thread(thread))

    def update_thread(self, thread: Thread) -> None:
        """Change a thread's title."""
        self._add(thread.id, f"update_thread {thread.id!r}", lambda c: c.update_thread(thread))

    def delete_thread(self, thread_id: str) -> None:
        """Soft-delete a thread."""
        self._add(thread_id, f"delete_thread {thread_id!r}", lambda c: c.delete_thread(thread_id))

    def create_message(self, message: Message) -> None:
        """Add a message to a live thread (one this transaction creates will do)."""
        self._created[message.id] = message.thread_id
        self._add(
            message.thread_id,
            f"create_message {message.id!r}",
            lambda c: c.create_message(message),
        )

    def update_message(self, message: Message, *, expected_version: int | None = None) -> None:
        """Replace a message's content, parts, metadata and parent."""
        self._add(
            message.thread_id,
            f"update_message {message.id!r}",
            lambda c: c.update_message(message, expected_version),
        )

    def delete_message(self, message_id: str) -> None:
        """Soft-delete a message."""
        thread_id = self._created.get(message_id) or self._threads_of(message_id)
        self._add(
            thread_id, f"delete_message {message_id!r}", lambda c: c.delete_message(message_id)
        )
