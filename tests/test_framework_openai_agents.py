"""The OpenAI Agents SDK Session over a convlog thread: its contract, a real run, races, tenants."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from agents import Agent, RunConfig, Runner, function_tool
from agents.memory import Session, SessionSettings
from agents.testing import ScriptedModel, assistant_message, function_call
from helpers import CONVLOG, env_without_nats_url

from eventlog import (
    CodePart,
    Message,
    MessageRole,
    PermissionDeniedError,
    ReasoningPart,
    TextPart,
    Thread,
    ToolCallPart,
    ToolResultPart,
)
from projections import JetStreamMessageStore, MessageStore
from projections.frameworks.openai_agents import (
    ITEM_MEDIA_TYPE,
    ConvlogSession,
    session_thread_id,
)

if TYPE_CHECKING:
    from conftest import StoreFactory

    from eventlog import StreamSettings

CHILD = Path(__file__).with_name("openai_agents_child.py")
DOC = Path(__file__).resolve().parents[1] / "docs" / "frameworks" / "openai-agents.md"

ITEMS: list[Any] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris, ça va?"}]},
    {
        "id": "rs_1",
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "Call get_weather for Paris."}],
        "encrypted_content": "opaque==",
    },
    {
        "id": "fc_1",
        "type": "function_call",
        "call_id": "call_1",
        "name": "get_weather",
        "arguments": '{"city": "Paris", "units": [1.5, null, true]}',
        "status": "completed",
    },
    {"type": "function_call_output", "call_id": "call_1", "output": "18 °C, sunny"},
    {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [
            {"type": "output_text", "text": "Sunny, 18 °C.", "annotations": [], "logprobs": []}
        ],
    },
]


def session_on(store: Any, session_id: str = "chat-1", **kwargs: Any) -> ConvlogSession:
    owner = {"tenant_id": "acme", "user_id": "alice"} | kwargs
    return ConvlogSession(session_id, store, **owner)


async def test_the_session_contract(store: MessageStore) -> None:
    """Limits, an empty session, isolation, exact round trip, pop, clear: as SQLiteSession."""
    session = session_on(store)
    assert isinstance(session, Session)
    assert await session.get_items() == []
    assert await session.get_items(limit=3) == []
    assert await session.pop_item() is None
    assert await store.get_thread(session.thread_id) is None  # created by the first write
    await session.add_items([])
    assert await store.get_thread(session.thread_id) is None

    await session.add_items(ITEMS[:2])
    await session.add_items(ITEMS[2:])
    assert await session.get_items() == ITEMS
    assert await session.get_items(limit=2) == ITEMS[-2:]
    assert await session.get_items(limit=len(ITEMS) + 5) == ITEMS
    assert await session.get_items(limit=0) == []
    assert await session_on(store, session_settings=SessionSettings(limit=1)).get_items() == [
        ITEMS[-1]
    ]
    other = session_on(store, "chat-2")
    assert await other.get_items() == []
    await other.add_items([{"role": "user", "content": "another chat"}])
    assert await session.get_items() == ITEMS

    assert await session.pop_item() == ITEMS[-1]
    assert await session.pop_item() == ITEMS[-2]
    assert await session.get_items() == ITEMS[:-2]
    await session.clear_session()
    assert await session.get_items() == []
    assert await session.pop_item() is None
    assert len(await store.list_messages(session.thread_id, include_deleted=True)) == len(ITEMS)
    await session.add_items(ITEMS[:1])  # the thread stays: a cleared session is written again
    assert await session.get_items() == ITEMS[:1]
    assert await other.get_items() == [{"role": "user", "content": "another chat"}]


async def test_items_are_convlog_messages_with_the_seeds_parts(store: MessageStore) -> None:
    """Text, reasoning, tool calls and results as parts; the turn's run as its execution."""
    session = session_on(store)
    await session.add_items(ITEMS)
    messages = await store.list_messages(session.thread_id)
    assert [m.role for m in messages] == [
        MessageRole.SYSTEM,
        MessageRole.USER,
        *[MessageRole.ASSISTANT] * 4,
    ]
    readable = [[p for p in m.parts if not isinstance(p, CodePart)] for m in messages]
    assert readable == [
        [TextPart(text="Be brief.")],
        [TextPart(text="Weather in Paris, ça va?")],
        [ReasoningPart(text="Call get_weather for Paris.")],
        [
            ToolCallPart(
                tool_call_id="call_1",
                tool_name="get_weather",
                args={"city": "Paris", "units": [1.5, None, True]},
            )
        ],
        [
            ToolResultPart(
                tool_call_id="call_1",
                tool_name="get_weather",
                result="18 °C, sunny",
                is_error=False,
            )
        ],
        [TextPart(text="Sunny, 18 °C.")],
    ]
    assert [m.parts[-1] for m in messages] == [
        CodePart(language=ITEM_MEDIA_TYPE, code=json.dumps(item)) for item in ITEMS
    ]
    system, question, *run = messages
    assert system.execution_id is None
    assert question.execution_id is None
    assert run[0].execution_id is not None
    assert {m.execution_id for m in run} == {run[0].execution_id}
    assert run[2].parent_id == run[1].id  # the output points at its call
    assert run[0].parent_id == question.id
    thread = await store.get_thread(session.thread_id)
    assert thread is not None
    assert (thread.tenant_id, thread.user_id) == ("acme", "alice")


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"18 °C and sunny in {city}"


async def test_a_runner_run_over_several_turns(
    connect_store: StoreFactory, nats_url: str, stream_settings: StreamSettings
) -> None:
    """Runner.run with the session: a turn sees the earlier ones; the log verifies and replays."""
    store = await connect_store()
    session = session_on(store)
    model = ScriptedModel(
        [
            [function_call("get_weather", {"city": "Paris"}, call_id="call_1")],
            [assistant_message("Sunny, 18 °C.", item_id="msg_a")],
            [function_call("get_weather", {"city": "Rome"}, call_id="call_2")],
            [assistant_message("Rome too.", item_id="msg_b")],
        ]
    )
    agent = Agent(name="weather", model=model, tools=[get_weather])
    config = RunConfig(tracing_disabled=True)

    first = await Runner.run(agent, "Weather in Paris?", session=session, run_config=config)
    assert first.final_output == "Sunny, 18 °C."
    after_first = await session.get_items()
    assert [item.get("type", "message") for item in after_first] == [
        "message",
        "function_call",
        "function_call_output",
        "message",
    ]
    second = await Runner.run(agent, "And Rome?", session=session, run_config=config)
    assert second.final_output == "Rome too."
    seen = model.calls[2].input  # the second turn's first model call
    assert seen == [*after_first, {"role": "user", "content": "And Rome?"}]
    model.assert_complete()

    # A fresh store, as another process would read it, holds both turns.
    reader = session_on(await connect_store())
    items = await reader.get_items()
    assert len(items) == 8
    assert items[:4] == after_first

    history = await store.thread_history(session.thread_id)
    parts = [p for entry in history if isinstance(entry.state, Message) for p in entry.state.parts]
    calls = [p for p in parts if isinstance(p, ToolCallPart)]
    results = [p for p in parts if isinstance(p, ToolResultPart)]
    assert [(c.tool_call_id, c.args) for c in calls] == [
        ("call_1", {"city": "Paris"}),
        ("call_2", {"city": "Rome"}),
    ]
    assert [(r.tool_name, r.result) for r in results] == [
        ("get_weather", "18 °C and sunny in Paris"),
        ("get_weather", "18 °C and sunny in Rome"),
    ]
    runs = [m.execution_id for m in await store.list_messages(session.thread_id)]
    assert runs[0] is None
    assert runs[4] is None
    assert runs[1] is not None
    assert runs[5] is not None
    assert runs[1] != runs[5]
    trail = await store.execution_trail(runs[5])
    assert trail.summary.tool_calls == 1
    assert trail.summary.messages == 3
    assert [type(p) for e in trail.entries for p in e.state.parts if type(p) is not CodePart] == [
        ToolCallPart,
        ToolResultPart,
        TextPart,
    ]

    verify = await asyncio.create_subprocess_exec(
        str(CONVLOG),
        "verify",
        "--nats-url",
        nats_url,
        "--stream",
        stream_settings.name,
        "--subject-prefix",
        stream_settings.subject_prefix,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env_without_nats_url(),
    )
    out, err = await verify.communicate()
    assert verify.returncode == 0, err.decode()
    assert out.decode().startswith("ok: 9 events in 1 threads"), out.decode()


class _Child:
    """A child process of the race, spoken to a line at a time."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def line(self) -> str:
        assert self.process.stdout is not None
        return (await self.process.stdout.readline()).decode().strip()

    def say(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")


async def test_two_processes_adding_lose_nothing_and_see_one_order(
    connect_store: StoreFactory, nats_url: str, stream_settings: StreamSettings
) -> None:
    """Each add_items is atomic and whole; both processes read the log's one order."""
    batches = 8
    children = [
        _Child(
            await asyncio.create_subprocess_exec(
                sys.executable,
                str(CHILD),
                nats_url,
                stream_settings.name,
                stream_settings.subject_prefix,
                "chat-race",
                name,
                str(batches),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
        )
        for name in ("a", "b")
    ]
    try:
        assert [await child.line() for child in children] == ["ready", "ready"]
        for child in children:
            child.say()  # both start adding at once, the first write creating the thread
        assert [await child.line() for child in children] == ["added", "added"]
        for child in children:
            child.say()
        seen = [json.loads(await child.line()) for child in children]
    finally:
        for child in children:
            assert await child.process.wait() == 0
    assert seen[0] == seen[1]
    items = seen[0]
    assert await session_on(await connect_store(), "chat-race").get_items() == items
    assert len(items) == 2 * batches * 3
    for name in ("a", "b"):
        questions = [i["content"] for i in items if i.get("content", "").startswith(f"{name} ")]
        assert questions == [f"{name} {batch} question" for batch in range(batches)]
    for start in range(0, len(items), 3):  # a batch is never split by the other's
        call_id = items[start + 1]["call_id"]
        name, batch = call_id.split("-")
        assert items[start]["content"] == f"{name} {batch} question"
        assert items[start + 2] == {
            "type": "function_call_output",
            "call_id": call_id,
            "output": f"{name} {batch} answer",
        }


async def test_concurrent_pops_never_return_one_item_twice(connect_store: StoreFactory) -> None:
    """Two stores (two sets of views, as two processes) and two tasks on each, popping at once."""
    count = 40
    items = [{"role": "user", "content": f"item {n}"} for n in range(count)]
    first, second = await connect_store(), await connect_store()
    await session_on(first).add_items(items)
    sessions = [session_on(first), session_on(second)]

    async def pop_all(session: ConvlogSession) -> list[Any]:
        popped = []
        while (item := await session.pop_item()) is not None:
            popped.append(item)
        return popped

    popped = await asyncio.gather(*(pop_all(s) for s in [*sessions, *sessions]))
    everything = [item["content"] for run in popped for item in run]
    assert sorted(everything) == sorted(item["content"] for item in items)
    assert all(run == sorted(run, key=lambda i: -int(i["content"][5:])) for run in popped)
    assert sum(1 for run in popped if run) >= 2  # they did race
    for session in sessions:
        assert await session.get_items() == []


async def test_a_session_never_reaches_another_tenants_or_users_thread(
    connect_store: StoreFactory, nats_url: str, stream_settings: StreamSettings
) -> None:
    """Same session id, other tenant: another thread; a thread of another owner: refused."""
    store = await connect_store()
    acme = session_on(store, "chat-1")
    globex = session_on(store, "chat-1", tenant_id="globex", user_id="bob")
    assert acme.thread_id != globex.thread_id
    assert acme.thread_id == session_thread_id("acme", "chat-1")
    await acme.add_items([{"role": "user", "content": "acme's secret"}])
    await globex.add_items([{"role": "user", "content": "globex's secret"}])
    assert await acme.get_items() == [{"role": "user", "content": "acme's secret"}]
    assert await globex.get_items() == [{"role": "user", "content": "globex's secret"}]

    intruders = [
        session_on(store, "x", tenant_id="acme", user_id="alice", thread_id=globex.thread_id),
        session_on(store, "chat-1", tenant_id="acme", user_id="mallory"),
    ]
    for intruder in intruders:
        with pytest.raises(PermissionDeniedError):
            await intruder.get_items()
        with pytest.raises(PermissionDeniedError):
            await intruder.add_items([{"role": "user", "content": "injected"}])
        with pytest.raises(PermissionDeniedError):
            await intruder.pop_item()
        with pytest.raises(PermissionDeniedError):
            await intruder.clear_session()
    assert await globex.get_items() == [{"role": "user", "content": "globex's secret"}]
    assert await acme.get_items() == [{"role": "user", "content": "acme's secret"}]

    async with await JetStreamMessageStore.connect(
        nats_url,
        stream=stream_settings.name,
        subject_prefix=stream_settings.subject_prefix,
        tenant_id="acme",
    ) as confined:
        assert await session_on(confined, "chat-1").get_items() == [
            {"role": "user", "content": "acme's secret"}
        ]
        with pytest.raises(PermissionDeniedError):
            session_on(confined, "chat-1", tenant_id="globex", user_id="bob")


async def test_a_thread_written_by_others_reads_as_input_messages(store: MessageStore) -> None:
    """A mapped thread's messages without item JSON come back as {"role", "content"}."""
    thread = Thread.new("acme", "alice")
    await store.create_thread(thread)
    await store.create_message(Message.system(thread.id, "Be brief."))
    await store.create_message(Message.user(thread.id, "Hi"))
    session = session_on(store, "mapped", thread_id=thread.id)
    await session.add_items([{"role": "user", "content": [{"type": "input_text", "text": "x"}]}])
    assert await session.get_items() == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "user", "content": [{"type": "input_text", "text": "x"}]},
    ]


def test_the_docs_example_runs_and_prints_what_it_shows(capsys: pytest.CaptureFixture[str]) -> None:
    """The example of docs/frameworks/openai-agents.md, on its own embedded server."""
    text = DOC.read_text(encoding="utf-8")
    [source] = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    [shown] = re.findall(r"```text\n(.*?)```", text, re.DOTALL)
    exec(compile(source, str(DOC), "exec"), {"__name__": "docs"})  # noqa: S102
    printed = capsys.readouterr().out.splitlines()
    assert printed[:-1] == shown.splitlines()[:-1]
    assert printed[-1].startswith("ok: 7 events in 1 threads, up to sequence 7")
