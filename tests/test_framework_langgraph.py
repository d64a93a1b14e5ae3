"""The LangGraph checkpointer on a real nats-server: conformance, a real graph, isolation."""

from __future__ import annotations

import json
import operator
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

import pytest
from helpers import run_convlog
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import Capability
from langgraph.checkpoint.conformance.test_utils import generate_checkpoint
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import Command, interrupt

from eventlog import (
    CodePart,
    Message,
    MessageRole,
    PermissionDeniedError,
    Thread,
    ToolCallPart,
    ToolResultPart,
    ValidationError,
)
from projections import JetStreamMessageStore
from projections.frameworks.langgraph import CHECKPOINT_LANGUAGE, WRITE_LANGUAGE, ConvlogSaver

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from eventlog import StreamSettings


def body(message: Any, language: str) -> dict[str, Any] | None:
    for part in message.parts:
        if isinstance(part, CodePart) and part.language == language:
            return json.loads(part.code)
    return None


# --- the conformance suite ---------------------------------------------------------------


@pytest.mark.parametrize("capability", [c.value for c in Capability])
async def test_conformance(connect_store, capability: str) -> None:
    """Each capability of langgraph-checkpoint-conformance, base and optional, passes."""
    store = await connect_store()

    @checkpointer_test(name="ConvlogSaver")
    async def convlog_saver() -> AsyncIterator[ConvlogSaver]:
        yield ConvlogSaver(store, tenant_id="acme", user_id="conformance")

    report = await validate(convlog_saver, capabilities={capability})
    result = report.results[capability]
    # The record: one line per capability in the test output (pytest -s, or on failure).
    print(f"conformance {capability}:", json.dumps(report.to_dict()["results"][capability]))  # noqa: T201
    assert result.detected, f"{capability} is not implemented"
    assert result.passed, result.failures
    assert result.tests_passed > 0


# --- a real graph: a tool node, an interrupt, a resume -------------------------------------


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny, 18 °C in {city}."


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    approvals: Annotated[list[str], operator.add]


def build_graph(saver: ConvlogSaver) -> Any:
    model = FakeMessagesListChatModel(
        responses=[
            AIMessage(
                "",
                tool_calls=[{"id": "call_1", "name": "get_weather", "args": {"city": "Paris"}}],
            ),
            AIMessage("It is sunny and 18 °C in Paris."),
        ]
    )

    def agent(state: State) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    def approve(state: State) -> dict[str, Any]:
        answer = interrupt({"question": "send this answer?", "answer": state["messages"][-1].text})
        return {"approvals": [answer]}

    builder = StateGraph(State)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode([get_weather]))
    builder.add_node("approve", approve)
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition, {"tools": "tools", END: "approve"})
    builder.add_edge("tools", "agent")
    builder.add_edge("approve", END)
    return builder.compile(checkpointer=saver)


async def test_graph_with_tool_interrupt_and_resume(
    nats_url: str, stream_settings: StreamSettings, connect_store
) -> None:
    """A graph runs to an interrupt, resumes from convlog, and its history is on the log."""
    store = await connect_store()
    saver = ConvlogSaver(store, tenant_id="acme", user_id="alice")
    config = {"configurable": {"thread_id": "weather-1"}}
    graph = build_graph(saver)

    # A run id in the metadata (LangGraph Platform sets one) makes the run an execution.
    first = await graph.ainvoke(
        {"messages": [HumanMessage("Weather in Paris?")]},
        {**config, "metadata": {"run_id": "run-ask"}},
    )
    assert first["__interrupt__"][0].value["answer"] == "It is sunny and 18 °C in Paris."

    # A new process: another store and saver on the same stream resume the graph.
    resumed_store = await connect_store()
    resumed = build_graph(ConvlogSaver(resumed_store, tenant_id="acme", user_id="alice"))
    state = await resumed.aget_state(config)
    assert state.next == ("approve",)
    final = await resumed.ainvoke(
        Command(resume="approved"), {**config, "metadata": {"run_id": "run-resume"}}
    )
    assert final["approvals"] == ["approved"]
    assert [m.type for m in final["messages"]] == ["human", "ai", "tool", "ai"]

    history = [s async for s in resumed.aget_state_history(config)]
    assert history[0].next == ()
    assert [s.metadata["step"] for s in history] == list(range(len(history) - 2, -2, -1))

    thread = await resumed_saver_thread(resumed_store, "weather-1")
    messages = await resumed_store.list_messages(thread)
    checkpoints = [body(m, CHECKPOINT_LANGUAGE) for m in messages]
    stored = [c for c in checkpoints if c is not None]
    assert {c["checkpoint_id"] for c in stored} == {
        s.config["configurable"]["checkpoint_id"] for s in history
    }
    assert all(
        m.role == MessageRole.SYSTEM for m, c in zip(messages, checkpoints, strict=True) if c
    )
    parts = [part for m in messages for part in m.parts]
    calls = [p for p in parts if isinstance(p, ToolCallPart)]
    results = [p for p in parts if isinstance(p, ToolResultPart)]
    assert [(c.tool_name, dict(c.args)) for c in calls] == [("get_weather", {"city": "Paris"})]
    assert [(r.tool_call_id, r.result, r.is_error) for r in results] == [
        ("call_1", "Sunny, 18 °C in Paris.", False)
    ]
    writes = [body(m, WRITE_LANGUAGE) for m in messages]
    assert any(w and w["channel"] == "__interrupt__" for w in writes)

    # Each checkpoint message points at its parent's, as LangGraph's parent_config does.
    by_id = {m.id: body(m, CHECKPOINT_LANGUAGE) for m in messages}
    for message in messages:
        own = by_id[message.id]
        if own is not None and own["parent_checkpoint_id"] is not None:
            assert by_id[message.parent_id]["checkpoint_id"] == own["parent_checkpoint_id"]

    # Each run is an execution: the first one's trail counts the tool call.
    assert {s.metadata["run_id"] for s in history} == {"run-ask", "run-resume"}
    trail = await resumed_store.execution_trail("run-ask")
    assert trail.summary.tool_calls == 1
    resume_trail = await resumed_store.execution_trail("run-resume")
    assert {e.state.role for e in resume_trail.entries} == {
        MessageRole.SYSTEM,
        MessageRole.ASSISTANT,
    }

    result = run_convlog(
        "verify",
        "--nats-url",
        nats_url,
        "--stream",
        stream_settings.name,
        "--subject-prefix",
        stream_settings.subject_prefix,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok:"), result.stdout
    replay = run_convlog(
        "history",
        "--thread",
        thread,
        "--nats-url",
        nats_url,
        "--stream",
        stream_settings.name,
        "--subject-prefix",
        stream_settings.subject_prefix,
        timeout=60,
    )
    assert replay.returncode == 0, replay.stderr
    assert replay.stdout.count("checkpoint ") >= len(history)


async def resumed_saver_thread(store: JetStreamMessageStore, thread_id: str) -> str:
    """The convlog thread of a LangGraph thread of acme/alice, found as the saver finds it."""
    saver = ConvlogSaver(store, tenant_id="acme", user_id="alice")
    thread = await saver._live_thread(thread_id)
    assert thread is not None
    return thread


# --- isolation and deletes -----------------------------------------------------------------


def checkpoint(number: int) -> dict[str, Any]:
    return generate_checkpoint(channel_values={"n": number}, channel_versions={"n": 1})


async def put(saver: ConvlogSaver, thread_id: str, number: int, run_id: str) -> dict[str, Any]:
    config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    metadata = {"source": "loop", "step": number, "parents": {}, "run_id": run_id}
    return await saver.aput(config, checkpoint(number), metadata, {"n": 1})


async def test_a_saver_never_reads_or_writes_another_tenants_threads(connect_store) -> None:
    """Same LangGraph thread id, two tenants: each sees, lists and deletes only its own."""
    store = await connect_store()
    acme = ConvlogSaver(store, tenant_id="acme", user_id="alice")
    globex = ConvlogSaver(store, tenant_id="globex", user_id="alice")
    await put(acme, "shared", 1, "run-acme")
    await put(globex, "shared", 2, "run-globex")

    config = {"configurable": {"thread_id": "shared", "checkpoint_ns": ""}}
    assert (await acme.aget_tuple(config)).checkpoint["channel_values"] == {"n": 1}
    assert (await globex.aget_tuple(config)).checkpoint["channel_values"] == {"n": 2}
    assert [t.checkpoint["channel_values"]["n"] async for t in acme.alist(None)] == [1]

    await globex.adelete_for_runs(["run-acme"])  # another tenant's run: nothing of globex
    await globex.adelete_thread("shared")
    assert await globex.aget_tuple(config) is None
    assert (await acme.aget_tuple(config)).checkpoint["channel_values"] == {"n": 1}
    threads = {(t.tenant_id, t.user_id) for t in await store.list_threads("acme", "alice", 10, 0)}
    assert threads == {("acme", "alice")}


async def test_a_tenants_store_refuses_a_saver_of_another_tenant(
    nats_url: str, stream_settings: StreamSettings
) -> None:
    """A store opened for one tenant: a saver for another is refused, and its writes too."""
    store = await JetStreamMessageStore.connect(
        nats_url,
        stream=stream_settings.name,
        subject_prefix=stream_settings.subject_prefix,
        tenant_id="acme",
    )
    try:
        with pytest.raises(ValidationError, match="sees tenant 'acme' only"):
            ConvlogSaver(store, tenant_id="globex", user_id="bob")
        saver = ConvlogSaver(store, tenant_id="acme", user_id="bob")
        saver.tenant_id = "globex"  # forced past the check: the store still refuses
        with pytest.raises(PermissionDeniedError):
            await put(saver, "t", 1, "run-1")
    finally:
        await store.close()


async def test_a_deleted_thread_keeps_its_history_and_its_id_starts_afresh(connect_store) -> None:
    """adelete_thread is a soft delete; the LangGraph thread id can be used again."""
    store = await connect_store()
    saver = ConvlogSaver(store, tenant_id="acme", user_id="alice")
    first = await put(saver, "again", 1, "run-1")
    old = await saver._live_thread("again")
    await saver.adelete_thread("again")
    assert await saver.aget_tuple(first) is None
    await put(saver, "again", 2, "run-2")
    new = await saver._live_thread("again")
    assert new not in (None, old)
    assert (await store.get_thread(old)).is_deleted()
    assert len(await store.thread_history(old)) == 3  # created, checkpoint, deleted
    config = {"configurable": {"thread_id": "again", "checkpoint_ns": ""}}
    assert [t.checkpoint["channel_values"]["n"] async for t in saver.alist(config)] == [2]


async def test_another_process_reads_the_checkpoint_put_a_moment_ago(connect_store) -> None:
    """Each put is read at once through another store: a resume never forks from an old one."""
    writer = ConvlogSaver(await connect_store(), tenant_id="acme", user_id="alice")
    reader = ConvlogSaver(await connect_store(), tenant_id="acme", user_id="alice")
    config = {"configurable": {"thread_id": "handed-over", "checkpoint_ns": ""}}
    for number in range(20):
        await put(writer, "handed-over", number, "run-1")
        latest = await reader.aget_tuple(config)
        assert latest is not None
        assert latest.checkpoint["channel_values"] == {"n": number}


async def test_deleting_runs_deletes_only_langgraph_records(connect_store) -> None:
    """A message of the user's own with the run's execution id is not the saver's to delete."""
    store = await connect_store()
    saver = ConvlogSaver(store, tenant_id="acme", user_id="alice")
    await put(saver, "graph", 1, "exec_0000000000000000000000000000000a")
    chat = Thread.new("acme", "alice")
    await store.create_thread(chat)
    note = Message.assistant(chat.id, "exec_0000000000000000000000000000000a", "mine")
    await store.create_message(note)
    await saver.adelete_for_runs(["exec_0000000000000000000000000000000a"])
    config = {"configurable": {"thread_id": "graph", "checkpoint_ns": ""}}
    assert await saver.aget_tuple(config) is None
    assert (await store.get_message(note.id)).deleted_at is None
