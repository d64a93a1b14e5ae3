"""The MessageStore's queries, answered from the views a projection keeps.

One definition, shared by every store: the live ones, which also write, and the read-only
stores that show the log as it was at a past sequence or time (:mod:`projections.audit`).
It also answers ``requires_network`` and ``health_check`` for stores that live wholly in
this process; a store on a server overrides them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventlog import ValidationError
from projections.health import Health

if TYPE_CHECKING:
    from eventlog import Message, Thread
    from projections.fold import Projection
    from projections.views import Views

__all__ = ["ViewQueries", "check_count"]


class ViewQueries:
    """The read half of the MessageStore contract, over a :class:`Projection`'s views."""

    def __init__(self, projection: Projection) -> None:
        self._projection = projection

    @property
    def views(self) -> Views:
        """The folded state this store answers from."""
        return self._projection.views

    @property
    def sequence(self) -> int:
        """The last stream sequence the views have folded."""
        return self._projection.sequence

    @property
    def requires_network(self) -> bool:
        """No server involved: the views are in this process."""
        return False

    async def health_check(self) -> Health:
        """Always ok: nothing in this process can be away."""
        return Health(
            status="ok",
            applied_sequence=self._projection.sequence,
            connected=True,
            skipped=tuple(self._projection.skipped),
        )

    async def get_thread(self, thread_id: str) -> Thread | None:
        """The thread, deleted or not, or None."""
        return self.views.thread(thread_id)

    async def list_threads(
        self, tenant_id: str, user_id: str, limit: int, offset: int
    ) -> list[Thread]:
        """A user's live threads, newest first (log order breaks ties)."""
        check_count("limit", limit)
        check_count("offset", offset)
        return self.views.list_threads(tenant_id, user_id, limit, offset)

    async def get_message(self, message_id: str) -> Message | None:
        """The message, deleted or not, or None."""
        return self.views.message(message_id)

    async def list_messages(self, thread_id: str, include_deleted: bool = False) -> list[Message]:  # noqa: FBT001, FBT002 - the seed's signature
        """A thread's messages in log order."""
        return self.views.list_messages(thread_id, include_deleted=include_deleted)

    async def get_messages_by_execution(self, execution_id: str) -> list[Message]:
        """Every message of one agent execution, in log order, deleted ones included."""
        return self.views.messages_by_execution(execution_id)

    async def count_messages(self, thread_id: str) -> int:
        """How many live messages a thread has."""
        return self.views.count_messages(thread_id)


def check_count(name: str, value: object) -> None:
    """A page bound is a plain int (not a bool, a float or a str) and never negative."""
    if type(value) is not int or value < 0:
        raise ValidationError(
            f"{name} must be an integer ≥ 0, not {value!r}; pass a whole number such as 10."
        )
