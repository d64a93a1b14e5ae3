"""Pydantic AI's ConversationStore on convlog, against a real nats-server.

The contract of the five primitives as Pydantic AI documents them, a real Agent over several
turns (then `convlog verify` and `convlog replay` in a subprocess), racing writers, and tenants.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from helpers import run_convlog
from pydantic_ai import Agent
from pydantic_ai.conversation import Conversation
from pydantic_ai.conversation_store import (
    ConversationConflict,
    ConversationEntry,
    ConversationRecord,
)
from pydantic_ai.exceptions import UserError
from pydantic_ai.messages import (
    BinaryContent,
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    RetryFeedbackPart,
    RetryInfo,
    SystemPromptPart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

from eventlog import (
    CodePart,
    FinishReason,
    Message,
    MessageRole,
    ParentType,
    ReasoningPart,
    TokenUsage,
    ValidationError,
)
from eventlog import TextPart as ConvlogText
from eventlog import ToolCallPart as ConvlogToolCall
from eventlog import ToolResultPart as ConvlogToolResult
from projections import JetStreamMessageStore
from projections.frameworks.pydantic_ai import MESSAGE_MEDIA_TYPE, ConvlogConversationStore

T0 = datetime(2026, 11, 1, 9, 30, 15, 123456, tzinfo=UTC)
RUN = "01a23000-0000-7000-8000-000000000001"


def turn(prompt: str, answer: str) -> list[ModelMessage]:
    return [
        ModelRequest(parts=[UserPromptPart(content=prompt, timestamp=T0)], timestamp=T0),
        ModelResponse(parts=[TextPart(content=answer)], model_name="m", timestamp=T0),
    ]


def rich_history() -> list[ModelMessage]:
    """Every kind of part the brief names, with usage, timestamps and a run id."""
    return [
        ModelRequest(
            parts=[
                SystemPromptPart(content="Be brief.", timestamp=T0),
                UserPromptPart(content="Weather in Paris?", timestamp=T0),
            ],
            timestamp=T0,
            instructions="Use tools.",
            run_id=RUN,
        ),
        ModelResponse(
            parts=[
                ThinkingPart(content="Call the weather tool.", signature="sig"),
                ToolCallPart(tool_name="weather", args={"city": "Paris"}, tool_call_id="c1"),
                ToolCallPart(tool_name="weather", args='{"city": "Lyon"}', tool_call_id="c2"),
            ],
            usage=RequestUsage(input_tokens=40, output_tokens=9, details={"x": 1}),
            model_name="gpt-test",
            provider_name="test",
            timestamp=T0,
            finish_reason="tool_call",
            provider_response_id="resp-1",
            run_id=RUN,
        ),
        ModelRequest(
            parts=[
                ToolReturnPart(
                    tool_name="weather",
                    content={"temp_c": 18, "raw": b"\x00\xff"},
                    tool_call_id="c1",
                    timestamp=T0,
                ),
                ToolReturnPart(
                    tool_name="weather",
                    content="no such city",
                    tool_call_id="c2",
                    timestamp=T0,
                    outcome="retried",
                ),
                RetryFeedbackPart(
                    content="answer in one line", retry=RetryInfo(cause="model_retry")
                ),
            ],
            timestamp=T0,
            run_id=RUN,
        ),
        ModelResponse(
            parts=[TextPart(content="Sunny, 18 °C.")],
            usage=RequestUsage(input_tokens=60, output_tokens=5),
            model_name="gpt-test",
            timestamp=T0,
            finish_reason="stop",
            run_id=RUN,
        ),
    ]


@pytest.fixture
async def store(connect_store) -> JetStreamMessageStore:
    return await connect_store()


@pytest.fixture
def conversations(store: JetStreamMessageStore) -> ConvlogConversationStore:
    return ConvlogConversationStore(store, tenant_id="acme", user_id="alice")


async def fresh(connect_store, tenant: str = "acme", user: str = "alice"):
    """A backend on a new connection: what it reads was folded from the stream."""
    return ConvlogConversationStore(await connect_store(), tenant_id=tenant, user_id=user)


# --- the contract ---------------------------------------------------------------------------


async def test_unknown_ids_and_empty_conversations(conversations: ConvlogConversationStore):
    assert await conversations.read_record("nope") is None
    assert await conversations.load("nope") is None
    assert await conversations.load_entries("nope") is None
    assert await conversations.read_records() == []
    with pytest.raises(KeyError):
        await conversations.read_entry("msg_unknown")
    empty = Conversation(conversation_id="empty")
    assert await conversations.save(empty) == []
    record = await conversations.read_record("empty")
    assert record is not None
    assert record.head_id is None
    assert record.revision == empty.revision
    loaded = await conversations.load("empty")
    assert loaded is not None
    assert loaded.messages == []
    assert loaded.revision == record.revision


async def test_exact_round_trip_and_readable_messages(conversations, connect_store):
    history = rich_history()
    entries = await conversations.save(Conversation(conversation_id="c", messages=history))
    assert [entry.message for entry in entries] == history

    reloaded = await (await fresh(connect_store)).load("c")
    assert reloaded is not None
    # Exactly what the adapter gives back itself (a raw `bytes` in an `Any` field reads back
    # as its base64 string there too), byte for byte.
    as_json = ModelMessagesTypeAdapter.dump_json(history)
    assert reloaded.messages == ModelMessagesTypeAdapter.validate_json(as_json)
    assert ModelMessagesTypeAdapter.dump_json(reloaded.messages) == as_json
    assert reloaded.messages[:2] == history[:2]
    assert reloaded.messages[3] == history[3]

    store = conversations.store
    request, call, results, answer = [await store.get_message(e.id) for e in entries]
    assert request is not None
    assert call is not None
    assert results is not None
    assert answer is not None
    assert request.role is MessageRole.USER
    assert request.content == "Be brief.\n\nWeather in Paris?"
    assert request.parts[:2] == (
        ConvlogText(text="Be brief."),
        ConvlogText(text="Weather in Paris?"),
    )
    assert request.execution_id == RUN
    assert call.role is MessageRole.ASSISTANT
    assert call.parent_id == entries[0].id
    assert call.parts[:3] == (
        ReasoningPart(text="Call the weather tool."),
        ConvlogToolCall(tool_call_id="c1", tool_name="weather", args={"city": "Paris"}),
        ConvlogToolCall(tool_call_id="c2", tool_name="weather", args={"city": "Lyon"}),
    )
    assert call.metadata.token_usage == TokenUsage.new(40, 9)
    assert call.metadata.model == "gpt-test"
    assert call.metadata.finish_reason is FinishReason.TOOL_CALLS
    assert results.parent_type is ParentType.TOOL_CALL
    assert results.parts[:2] == (
        ConvlogToolResult(
            tool_call_id="c1",
            tool_name="weather",
            result={"temp_c": 18, "raw": {"binary": "application/octet-stream", "size": 2}},
            is_error=False,
        ),
        ConvlogToolResult(
            tool_call_id="c2", tool_name="weather", result="no such city", is_error=True
        ),
    )
    assert answer.content == "Sunny, 18 °C."
    assert answer.created_at == T0
    for message, model_message in zip([request, call, results, answer], history, strict=True):
        exact = message.parts[-1]
        assert isinstance(exact, CodePart)
        assert exact.language == MESSAGE_MEDIA_TYPE
        assert exact.code.encode() == ModelMessagesTypeAdapter.dump_json([model_message])


async def test_limits_ordering_and_scopes(conversations: ConvlogConversationStore):
    for name, scope in [("first", "team-a"), ("second", "team-b"), ("third", "team-a")]:
        await conversations.save(
            Conversation(conversation_id=name, messages=turn(f"{name}?", f"{name}!")),
            scope=scope,
        )
    listed = await conversations.list_conversations()
    assert [r.conversation_id for r in listed] == ["third", "second", "first"]
    assert [r.conversation_id for r in await conversations.read_records(limit=2)] == [
        "third",
        "second",
    ]
    assert [r.conversation_id for r in await conversations.read_records(scope="team-a")] == [
        "third",
        "first",
    ]
    assert await conversations.read_records(limit=0) == []
    assert await conversations.load("first", scope="team-b") is None  # another scope: unknown

    more = await conversations.load("first")
    assert more is not None
    more.messages.extend(turn("again?", "again!"))
    await conversations.save(more)
    window = await conversations.load("first", limit=3)
    assert window is not None
    assert window.messages == [*turn("first?", "first!"), *turn("again?", "again!")][-3:]
    with pytest.raises(UserError):
        await conversations.load("first", limit=-1)
    assert (await conversations.list_conversations())[0].conversation_id == "first"


async def test_conversations_are_isolated_and_delete_keeps_the_log(conversations, store):
    await conversations.save(Conversation(conversation_id="a", messages=turn("a?", "a!")))
    await conversations.save(Conversation(conversation_id="b", messages=turn("b?", "b!")))
    a = await conversations.load_entries("a")
    assert a is not None
    b = await conversations.load("b")
    assert b is not None
    assert b.messages == turn("b?", "b!")
    thread_a = conversations.thread_id("a")
    assert conversations.thread_id("b") != thread_a

    await conversations.delete("a")
    assert await conversations.read_record("a") is None
    assert [r.conversation_id for r in await conversations.read_records()] == ["b"]
    deleted = await store.get_thread(thread_a)
    assert deleted is not None
    assert deleted.deleted_at is not None
    # Kept, as documented: the log holds them and forks may share them.
    assert (await conversations.read_entry(a[0].id)).message == a[0].message

    again = Conversation(conversation_id="a", messages=turn("new?", "new!"))
    await conversations.save(again)
    loaded = await conversations.load("a")
    assert loaded is not None
    assert loaded.messages == turn("new?", "new!")
    assert conversations.thread_id("a", 1) != thread_a
    assert await store.count_messages(conversations.thread_id("a", 1)) == 3  # two + the record
    assert (await conversations.load("b")) == b


async def test_a_stale_revision_raises_the_conflict_and_writes_nothing(conversations, store):
    await conversations.save(Conversation(conversation_id="c", messages=turn("1?", "1!")))
    mine = await conversations.load("c")
    theirs = await conversations.load("c")
    assert mine is not None
    assert theirs is not None
    mine.messages.extend(turn("2?", "2!"))
    await conversations.save(mine)

    thread_id = conversations.thread_id("c")
    head = store.views.head(store.log.subjects.thread("acme", thread_id))
    assert head is not None
    theirs.messages.extend(turn("other?", "other!"))
    with pytest.raises(ConversationConflict):
        await conversations.save(theirs)
    with pytest.raises(ConversationConflict):  # a new conversation whose id is taken
        await conversations.save(Conversation(conversation_id="c"))
    with pytest.raises(ConversationConflict):
        await conversations.delete_record("c", expected_revision=str(theirs.revision))
    record = await conversations.read_record("c")
    assert record is not None
    with pytest.raises(ConversationConflict):  # the direct call, with the check raced away
        await conversations.write_record(
            ConversationRecord(conversation_id="c", head_id=None), expected_revision="stale"
        )
    with pytest.raises(ConversationConflict):  # a head that no store has
        await conversations.write_record(
            ConversationRecord(conversation_id="c", head_id="msg_nowhere"),
            expected_revision=record.revision,
        )
    assert store.views.head(store.log.subjects.thread("acme", thread_id)) == head
    loaded = await conversations.load("c")
    assert loaded is not None
    assert loaded.messages == [*turn("1?", "1!"), *turn("2?", "2!")]
    assert loaded.revision == mine.revision


async def test_branches_and_forks_are_messages_parents(conversations, store):
    history = [*turn("1?", "1!"), *turn("2?", "2!")]
    saved = await conversations.save(Conversation(conversation_id="c", messages=history))
    loaded = await conversations.load("c")
    assert loaded is not None

    branched = await conversations.branch("c", at=2, expected_revision=loaded.revision)
    branched.messages.extend(turn("2b?", "2b!"))
    new = await conversations.save(branched)
    first_new = await store.get_message(new[0].id)
    assert first_new is not None
    assert first_new.parent_id == saved[1].id
    record = await conversations.read_record("c")
    assert record is not None
    assert record.branches == [saved[-1].id]
    reloaded = await conversations.load("c")
    assert reloaded is not None
    assert reloaded.messages == [*turn("1?", "1!"), *turn("2b?", "2b!")]

    back = await conversations.branch(
        "c", from_entry=saved[-1].id, expected_revision=reloaded.revision
    )
    assert back.messages == history
    with pytest.raises(ConversationConflict):  # branch checks the revision too
        await conversations.branch("c", at=0, expected_revision=reloaded.revision)

    fork = await conversations.fork("c", at=1, new_conversation_id="f")
    fork.messages.extend(turn("fork?", "fork!")[1:])
    forked = await conversations.save(fork)
    in_fork = await store.get_message(forked[0].id)
    assert in_fork is not None
    assert in_fork.thread_id == conversations.thread_id("f")
    assert in_fork.parent_id == saved[0].id  # an entry of the other conversation's thread
    fork_loaded = await conversations.load("f")
    assert fork_loaded is not None
    assert fork_loaded.messages == [history[0], turn("fork?", "fork!")[1]]
    # All of c's entries stay in its thread, each once: nothing was copied.
    thread_c = await store.list_messages(conversations.thread_id("c"))
    assert len(thread_c) == 4 + 2 + 1


# --- a real agent -----------------------------------------------------------------------------


def weather_model(seen: list[int]) -> FunctionModel:
    """Calls the weather tool for the city in the prompt, then answers with its result."""

    def respond(messages: list[ModelMessage], _: AgentInfo) -> ModelResponse:
        seen.append(len(messages))
        last = messages[-1]
        returns = [p for p in last.parts if isinstance(p, ToolReturnPart)]
        if returns:
            return ModelResponse(parts=[TextPart(content=f"It is {returns[0].content}.")])
        prompt = next(p for p in last.parts if isinstance(p, UserPromptPart))
        return ModelResponse(
            parts=[
                ThinkingPart(content="Look it up."),
                ToolCallPart(tool_name="weather", args={"city": prompt.content}),
            ]
        )

    return FunctionModel(respond)


async def test_an_agent_over_several_turns_is_persisted_verified_and_replayed(
    connect_store, nats_url: str, stream_settings
):
    seen: list[int] = []
    agent = Agent(weather_model(seen), instructions="Answer with the weather.")

    @agent.tool_plain
    def weather(city: str) -> str:
        return {"Paris": "sunny", "Oslo": "snowing", "Rome": "warm"}[city]

    runs: list[str] = []
    for city in ["Paris", "Oslo", "Rome"]:
        conversations = await fresh(connect_store)  # each turn, as a new process would
        conversation = await conversations.load("chat") or Conversation(conversation_id="chat")
        result = await agent.run(city, conversation=conversation)
        await conversations.save(result)
        runs.append(next(m.run_id for m in result.new_messages() if m.run_id))

    # Each turn's model saw the whole history before it: 0, 4 and 8 messages, then its prompt.
    assert seen == [1, 3, 5, 7, 9, 11]
    conversations = await fresh(connect_store)
    loaded = await conversations.load("chat")
    assert loaded is not None
    assert len(loaded.messages) == 12
    assert loaded.usage.requests == 6
    assert loaded.usage.tool_calls == 3
    answers = [p.content for m in loaded.messages for p in m.parts if isinstance(p, TextPart)]
    assert answers == ["It is sunny.", "It is snowing.", "It is warm."]

    store = conversations.store
    for run, (city, outcome) in zip(
        runs, [("Paris", "sunny"), ("Oslo", "snowing"), ("Rome", "warm")], strict=True
    ):
        trail = await store.execution_trail(run)
        parts = [
            part
            for entry in trail.entries
            if isinstance(entry.state, Message)
            for part in entry.state.parts
        ]
        calls = [p for p in parts if isinstance(p, ConvlogToolCall)]
        results = [p for p in parts if isinstance(p, ConvlogToolResult)]
        assert [(c.tool_name, c.args) for c in calls] == [("weather", {"city": city})]
        assert [(r.tool_call_id, r.result) for r in results] == [(calls[0].tool_call_id, outcome)]
        assert trail.summary.tool_calls == 1
        assert trail.summary.llm_calls == 2

    options = [
        "--nats-url",
        nats_url,
        "--stream",
        stream_settings.name,
        "--subject-prefix",
        stream_settings.subject_prefix,
    ]
    verified = await asyncio.to_thread(run_convlog, "verify", *options, timeout=60)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("ok:"), verified.stdout
    replayed = await asyncio.to_thread(
        run_convlog, "replay", "--execution", runs[1], "--color", "never", *options, timeout=60
    )
    assert replayed.returncode == 0, replayed.stderr
    assert "tool-call weather {'city': 'Oslo'}" in replayed.stdout
    assert "tool-result weather 'snowing'" in replayed.stdout


# --- racing writers ---------------------------------------------------------------------------


async def test_racing_writers_one_wins_the_other_conflicts(connect_store):
    one, two = await fresh(connect_store), await fresh(connect_store)
    await one.save(Conversation(conversation_id="race", messages=turn("0?", "0!")))
    expected = turn("0?", "0!")
    for round_ in range(5):
        await two.store.wait_for(await one.store.log.last_sequence())
        a, b = await one.load("race"), await two.load("race")
        assert a is not None
        assert b is not None
        assert a.revision == b.revision
        a.messages.extend(turn(f"a{round_}?", "a!"))
        b.messages.extend(turn(f"b{round_}?", "b!"))
        outcomes = await asyncio.gather(one.save(a), two.save(b), return_exceptions=True)
        conflicts = [o for o in outcomes if isinstance(o, ConversationConflict)]
        assert len(conflicts) == 1, outcomes
        winner = a if isinstance(outcomes[1], ConversationConflict) else b
        expected = winner.messages
        judge = await fresh(connect_store)
        loaded = await judge.load("race")
        assert loaded is not None
        assert loaded.messages == expected
        assert loaded.revision == winner.revision
        thread = await judge.store.list_messages(judge.thread_id("race"))
        assert len(thread) == len(expected) + 1  # each message once, and the record


async def test_racing_creates_of_one_conversation(connect_store):
    one, two = await fresh(connect_store), await fresh(connect_store)
    outcomes = await asyncio.gather(
        one.save(Conversation(conversation_id="new", messages=turn("a?", "a!"))),
        two.save(Conversation(conversation_id="new", messages=turn("b?", "b!"))),
        return_exceptions=True,
    )
    assert sum(isinstance(o, ConversationConflict) for o in outcomes) == 1, outcomes
    loaded = await (await fresh(connect_store)).load("new")
    assert loaded is not None
    assert loaded.messages in (turn("a?", "a!"), turn("b?", "b!"))


# --- tenants ----------------------------------------------------------------------------------


async def test_tenants_and_users_never_see_each_other(nats_url: str, stream_settings, store):
    async def confined(tenant: str) -> JetStreamMessageStore:
        return await JetStreamMessageStore.connect(
            nats_url,
            stream=stream_settings.name,
            subject_prefix=stream_settings.subject_prefix,
            tenant_id=tenant,
        )

    acme_store, globex_store = await confined("acme"), await confined("globex")
    try:
        acme = ConvlogConversationStore(acme_store, tenant_id="acme", user_id="alice")
        globex = ConvlogConversationStore(globex_store, tenant_id="globex", user_id="alice")
        with pytest.raises(ValidationError):
            ConvlogConversationStore(acme_store, tenant_id="globex", user_id="alice")
        saved = await acme.save(Conversation(conversation_id="c1", messages=turn("a?", "a!")))
        await globex.save(Conversation(conversation_id="c1", messages=turn("g?", "g!")))

        loaded = await acme.load("c1")
        assert loaded is not None
        assert loaded.messages == turn("a?", "a!")
        other = await globex.load("c1")
        assert other is not None
        assert other.messages == turn("g?", "g!")
        assert acme.thread_id("c1") != globex.thread_id("c1")
        with pytest.raises(KeyError):
            await globex.read_entry(saved[0].id)
        assert [r.conversation_id for r in await globex.read_records()] == ["c1"]

        # On a store that sees every tenant, the backend still reads its own only.
        await store.wait_for(await store.log.last_sequence())
        unconfined = ConvlogConversationStore(store, tenant_id="globex", user_id="alice")
        with pytest.raises(KeyError):
            await unconfined.read_entry(saved[0].id)
        bob = ConvlogConversationStore(store, tenant_id="acme", user_id="bob")
        assert await bob.read_record("c1") is None
        assert await bob.read_records() == []
        with pytest.raises(KeyError):
            await bob.read_entry(saved[0].id)
        own = await globex.load_entries("c1")
        assert own is not None
        assert (await unconfined.read_entry(own[0].id)).message == turn("g?", "g!")[0]
    finally:
        await acme_store.close()
        await globex_store.close()


async def test_another_process_reads_a_save_made_a_moment_ago(connect_store):
    """A save through one store is read at once through another: load never answers stale."""
    writer, reader = await fresh(connect_store), await fresh(connect_store)
    for number in range(20):
        record = ConversationRecord(conversation_id=f"handed-over-{number}", head_id=None)
        await writer.write_record(record, expected_revision=None)
        read = await reader.read_record(record.conversation_id)
        assert read is not None
        assert read.revision == record.revision


async def test_binary_tool_output_counts_once_and_unwritable_values_are_refused(
    conversations: ConvlogConversationStore, store: JetStreamMessageStore
):
    """400 KB of bytes fits (the readable part names them); a value JSON cannot hold is refused."""
    when = datetime(2026, 1, 1, tzinfo=UTC)
    image = BinaryContent(data=b"\x00" * 400_000, media_type="image/png")
    request = ModelRequest(
        parts=[ToolReturnPart(tool_name="draw", tool_call_id="c1", content=image, timestamp=when)],
        timestamp=when,
    )
    entry = ConversationEntry(parent_id=None, message=request)
    record = ConversationRecord(conversation_id="drawing", head_id=entry.id)
    await conversations.write_record(record, new_entries=[entry], expected_revision=None)
    stored = await store.get_message(entry.id)
    assert stored is not None
    result = next(p for p in stored.parts if isinstance(p, ConvlogToolResult))
    assert result.result == {"binary": "image/png", "size": 400_000}

    class Opaque:
        pass

    odd = ModelRequest(
        parts=[ToolReturnPart(tool_name="f", tool_call_id="c2", content=Opaque(), timestamp=when)],
        timestamp=when,
    )
    bad = ConversationEntry(parent_id=None, message=odd)
    with pytest.raises(ValidationError, match="cannot write as JSON"):
        await conversations.write_record(
            ConversationRecord(conversation_id="odd", head_id=bad.id),
            new_entries=[bad],
            expected_revision=None,
        )
    assert await conversations.read_record("odd") is None
