"""Model-based test: random operation sequences against the JetStream store and the reference.

Hypothesis drives both stores with the same writes; after every step each query must give
the same answer (or the same error) from both. Both stores read one deterministic clock
that moves a millisecond per step, so even store-assigned timestamps must agree. The
remote store is driven the same way, through two real ``convlog serve`` replicas.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from helpers import Replicas, new_stream
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from uuid_utils import uuid7

from eventlog import (
    ConvlogError,
    EmbeddedNats,
    ExecutionId,
    Message,
    TextPart,
    Thread,
    ThreadId,
)
from projections import InMemoryMessageStore, JetStreamMessageStore, MessageStore
from projections.service.remote import RemoteMessageStore

if TYPE_CHECKING:
    from collections.abc import Awaitable, Iterator

TENANTS = ["acme", "acme.eu", "globex"]
USERS = ["alice", "bob *"]
EXECUTIONS = [ExecutionId(f"exec_{i}") for i in range(3)]


START = datetime(2026, 1, 1, tzinfo=UTC)


class StoresAgree(RuleBasedStateMachine):
    """Every write goes to both stores; every query must agree."""

    nats_url = ""
    threads = Bundle("threads")
    messages = Bundle("messages")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.ticks: Iterator[int] = itertools.count()
        self.now = START
        self.model: MessageStore = InMemoryMessageStore(clock=self.clock)
        self.real: MessageStore = self.run(self.connect_real())
        self.thread_ids: list[str] = ["thread_ghost"]
        self.message_ids: list[str] = ["msg_ghost"]

    def clock(self) -> datetime:
        """The time of the current step, the same for both stores however often asked."""
        return self.now

    async def connect_real(self) -> MessageStore:
        """The store checked against the reference."""
        token = uuid7().hex[-12:]
        return await JetStreamMessageStore.connect(
            self.nats_url, stream=f"M{token}", subject_prefix=f"m{token}", clock=self.clock
        )

    def run(self, call: Awaitable[Any]) -> Any:
        return self.loop.run_until_complete(call)

    def both(self, method: str, *args: Any) -> None:
        """Call ``method`` on both stores: same result, or the same error type."""
        self.now = START + timedelta(milliseconds=next(self.ticks))
        outcomes = []
        for store in (self.model, self.real):
            try:
                outcomes.append(("ok", self.run(getattr(store, method)(*args))))
            except ConvlogError as err:
                outcomes.append(("error", type(err)))
        assert outcomes[0] == outcomes[1], f"{method}{args}: {outcomes}"

    def teardown(self) -> None:
        self.run(self.real.close())  # type: ignore[attr-defined] # every store here closes
        self.loop.close()

    @rule(target=threads, tenant=st.sampled_from(TENANTS), user=st.sampled_from(USERS))
    def create_thread(self, tenant: str, user: str) -> str:
        thread = Thread.new(tenant, user)
        self.both("create_thread", thread)
        self.thread_ids.append(thread.id)
        return thread.id

    @rule(thread_id=threads, title=st.sampled_from(["a", "b", None]))
    def recreate_or_update_thread(self, thread_id: str, title: str | None) -> None:
        current = self.run(self.model.get_thread(thread_id))
        changed = current.model_copy(update={"title": title})
        self.both("create_thread", changed)
        self.both("update_thread", changed)

    @rule(thread_id=threads)
    def delete_thread(self, thread_id: str) -> None:
        self.both("delete_thread", thread_id)

    @rule(
        target=messages,
        thread_id=threads,
        content=st.text(max_size=20),
        execution=st.sampled_from([None, *EXECUTIONS]),
    )
    def create_message(self, thread_id: str, content: str, execution: ExecutionId | None) -> str:
        if execution is None:
            message = Message.user(ThreadId(thread_id), content)
        else:
            message = Message.assistant(ThreadId(thread_id), execution, content)
        self.both("create_message", message)
        self.message_ids.append(message.id)
        return message.id

    @rule(message_id=messages, content=st.text(max_size=20))
    def update_message(self, message_id: str, content: str) -> None:
        current = self.run(self.model.get_message(message_id))
        if current is None:
            return
        self.both(
            "update_message",
            current.model_copy(update={"content": content, "parts": (TextPart(text=content),)}),
        )

    @rule(message_id=st.one_of(messages, st.just("msg_ghost")))
    def delete_message(self, message_id: str) -> None:
        self.both("delete_message", message_id)

    @precondition(lambda self: self.run(self.model.list_threads(TENANTS[0], USERS[0], 1, 0)))
    @rule()
    def get_or_create_thread(self) -> None:
        """With a live thread both must return the same one (creating would mint random ids)."""
        self.both("get_or_create_thread", TENANTS[0], USERS[0])

    @invariant()
    def queries_agree(self) -> None:
        for tenant, user in itertools.product(TENANTS, USERS):
            self.both("list_threads", tenant, user, 100, 0)
            self.both("list_threads", tenant, user, 2, 1)
        for thread_id in self.thread_ids:
            self.both("get_thread", thread_id)
            self.both("list_messages", thread_id, False)
            self.both("list_messages", thread_id, True)
            self.both("count_messages", thread_id)
        for message_id in self.message_ids:
            self.both("get_message", message_id)
        for execution in EXECUTIONS:
            self.both("get_messages_by_execution", execution)


@pytest.fixture
def machine(nats_server: EmbeddedNats) -> type[StoresAgree]:
    StoresAgree.nats_url = nats_server.url
    return StoresAgree


def test_jetstream_store_agrees_with_the_reference(machine: type[StoresAgree]) -> None:
    """Random writes leave the JetStream store and the in-memory reference in agreement."""
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=30,
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


class RemoteStoresAgree(StoresAgree):
    """The same, with the remote store through two replicas sharing four partitions."""

    def __init__(self) -> None:
        self.replicas: Replicas | None = None
        super().__init__()

    async def connect_real(self) -> MessageStore:
        settings = await new_stream(self.nats_url, 4)
        self.replicas = Replicas(self.nats_url, settings)
        await self.replicas.start_many(2)
        return await RemoteMessageStore.connect(
            self.nats_url, stream=settings.name, clock=self.clock
        )

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            if self.replicas is not None:
                self.replicas.stop()


@pytest.fixture
def remote_machine(nats_server: EmbeddedNats) -> type[RemoteStoresAgree]:
    RemoteStoresAgree.nats_url = nats_server.url
    return RemoteStoresAgree


@pytest.mark.timeout(900)  # each example starts two replicas; a failure shrinks through more
def test_remote_store_agrees_with_the_reference(remote_machine: type[RemoteStoresAgree]) -> None:
    """Random writes through the service leave it and the reference in agreement."""
    run_state_machine_as_test(
        remote_machine,
        settings=settings(
            max_examples=6,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
