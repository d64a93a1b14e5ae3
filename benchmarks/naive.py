"""The seed's InMemoryMessageStore ported as it is: the baseline of the query case.

``shared/seed/message_store.rs`` keeps two maps, threads and messages by id, and answers
every list and count by scanning all the values of one and sorting what matched. This port
keeps that design and nothing else; it returns the stored (frozen) models rather than clones,
which only flatters it.
"""

from __future__ import annotations

from operator import attrgetter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eventlog import Message, Thread

_CREATED = attrgetter("created_at")


class NaiveStore:
    """Threads and messages in two dicts; the queries of message_store.rs, scan for scan."""

    def __init__(self) -> None:
        self.threads: dict[str, Thread] = {}
        self.messages: dict[str, Message] = {}

    async def get_message(self, message_id: str) -> Message | None:
        """A lookup by id, as the seed's."""
        return self.messages.get(message_id)

    async def list_threads(
        self, tenant_id: str, user_id: str, limit: int, offset: int
    ) -> list[Thread]:
        """Every thread scanned, the user's live ones sorted newest first, then a page."""
        threads = [
            t
            for t in self.threads.values()
            if t.tenant_id == tenant_id and t.user_id == user_id and t.deleted_at is None
        ]
        threads.sort(key=_CREATED, reverse=True)
        return threads[offset : offset + limit]

    async def list_messages(self, thread_id: str, include_deleted: bool = False) -> list[Message]:
        """Every message scanned, the thread's sorted by creation time."""
        messages = [
            m
            for m in self.messages.values()
            if m.thread_id == thread_id and (include_deleted or m.deleted_at is None)
        ]
        messages.sort(key=_CREATED)
        return messages

    async def get_messages_by_execution(self, execution_id: str) -> list[Message]:
        """Every message scanned for the execution id."""
        return [m for m in self.messages.values() if m.execution_id == execution_id]

    async def count_messages(self, thread_id: str) -> int:
        """The trait's default: the length of list_messages."""
        return len(await self.list_messages(thread_id))
