"""projections.frameworks.ai_sdk: convlog messages to and from the AI SDK's UIMessages.

The JSON made here is checked by the AI SDK itself: examples/ui-messages/validate.mjs runs
``safeValidateUIMessages`` of the ``ai`` package its lockfile pins (node and npm must be
installed, as for tests/test_examples.py; ``npm ci`` runs here when it has no node_modules).
"""

from __future__ import annotations

import copy
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from helpers import node_with_packages

from eventlog import (
    CodePart,
    CostInfo,
    ExecutionId,
    FilePart,
    FinishReason,
    ImagePart,
    Message,
    MessageMetadata,
    ParentType,
    ReasoningPart,
    SourcePart,
    TextPart,
    Thread,
    TokenUsage,
    ToolCallPart,
    ToolResultPart,
    ValidationError,
)
from projections import TransactionError
from projections.frameworks.ai_sdk import (
    FIELDS_CARRIER,
    MESSAGE_CARRIER,
    PART_CARRIER,
    UIMessage,
    decode_ui_messages,
    encode_ui_messages,
    from_ui_messages,
    load_ui_messages,
    save_ui_messages,
    to_ui_messages,
)

UI_MESSAGES = Path(__file__).resolve().parents[1] / "examples" / "ui-messages"
THREAD = "thread_ui"

RICH: list[dict[str, object]] = [
    {"id": "m-system", "role": "system", "parts": [{"type": "text", "text": "Be brief."}]},
    {
        "id": "m-user",
        "role": "user",
        "metadata": {"createdAt": 1764612000000, "tags": ["a"]},
        "parts": [
            {"type": "text", "text": "What is in this file, and the weather?"},
            {
                "type": "file",
                "mediaType": "application/pdf",
                "filename": "r.pdf",
                "url": "https://x/r.pdf",
            },
            {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,iVBORw0KGgo="},
        ],
    },
    {
        "id": "m-assistant",
        "role": "assistant",
        "metadata": None,
        "parts": [
            {"type": "step-start"},
            {
                "type": "reasoning",
                "text": "Read the file, then ask the tool.",
                "state": "done",
                "providerMetadata": {"anthropic": {"signature": "sig=="}},
            },
            {
                "type": "tool-weather",
                "toolCallId": "call-1",
                "state": "output-available",
                "input": {"city": "Paris", "days": [1, 2]},
                "output": {"sunny": True, "temp": 18.5, "note": None},
            },
            {
                "type": "tool-weather",
                "toolCallId": "call-2",
                "state": "output-error",
                "input": {"city": "Atlantis"},
                "errorText": "no such city",
            },
            {
                "type": "tool-lookup",
                "toolCallId": "call-3",
                "state": "input-available",
                "input": {"q": "pdf"},
            },
            {
                "type": "tool-lookup",
                "toolCallId": "call-4",
                "state": "input-streaming",
                "input": {"q": "pd"},
            },
            {
                "type": "dynamic-tool",
                "toolName": "mcp_search",
                "toolCallId": "call-5",
                "state": "output-available",
                "input": {},
                "output": ["hit"],
            },
            {
                "type": "tool-delete",
                "toolCallId": "call-6",
                "state": "approval-requested",
                "input": {"path": "/"},
                "approval": {"id": "approval-1"},
            },
            {"type": "step-start"},
            {"type": "source-url", "sourceId": "s1", "url": "https://meteo.fr", "title": "Météo"},
            {"type": "source-url", "sourceId": "s2", "url": "https://x/r.pdf"},
            {
                "type": "source-document",
                "sourceId": "s3",
                "mediaType": "application/pdf",
                "title": "Report",
                "filename": "r.pdf",
            },
            {"type": "data-weather", "id": "w1", "data": {"city": "Paris", "status": "done"}},
            {"type": "data-progress", "data": 1},
            {"type": "text", "text": "Sunny, 18.5 °C.", "state": "done"},
            {"type": "text", "text": "The PDF is a report."},
        ],
    },
]
"""Every part kind the AI SDK has, tool states and UI-only fields among them."""


def _rich() -> list[UIMessage]:
    return msgspec.convert(copy.deepcopy(RICH), list[UIMessage])


def _json(messages: list[UIMessage]) -> object:
    return json.loads(encode_ui_messages(messages))


def _native_thread() -> list[Message]:
    """A convlog turn written without any UI: the tool result in a message of its own."""
    run = ExecutionId.new()
    question = Message.user(THREAD, "Weather in Paris?")
    call = Message.assistant(THREAD, run, "", question.id).with_parts(
        [
            ReasoningPart(text="Ask the tool."),
            ToolCallPart(tool_call_id="c1", tool_name="weather", args={"city": "Paris"}),
            ToolCallPart(tool_call_id="c2", tool_name="weather", args={"city": "Atlantis"}),
        ]
    )
    result = (
        Message.assistant(THREAD, run, "", call.id)
        .with_parts(
            [
                ToolResultPart(
                    tool_call_id="c1", tool_name="weather", result={"t": 18}, is_error=False
                ),
                ToolResultPart(
                    tool_call_id="c2", tool_name="weather", result="unknown", is_error=True
                ),
            ]
        )
        .with_parent(call.id, ParentType.TOOL_CALL)
    )
    answer = (
        Message.assistant(THREAD, run, "Sunny, 18 °C.", result.id)
        .with_parts(
            [
                TextPart(text="Sunny, 18 °C."),
                SourcePart(source_id="s1", url="https://meteo.fr", title="Météo"),
                SourcePart(source_id="s2"),
                FilePart(
                    file_id="file_1", filename="chart.png", mime_type="image/png", size_bytes=2048
                ),
                FilePart(file_id="file_2", filename="", mime_type="text/csv", size_bytes=0),
                ImagePart(image_id="img_1", url="https://x/i.png", alt_text="a chart"),
                CodePart(language="python", code="print(18)"),
            ]
        )
        .with_metadata(
            MessageMetadata(
                model="gpt-x",
                provider="openai",
                token_usage=TokenUsage.new(10, 5),
                finish_reason=FinishReason.STOP,
                cost=CostInfo(input_cost=0.1, output_cost=0.2, total_cost=0.3),
                completed_at=1764612000123,
            )
        )
    )
    return [Message.system(THREAD, "Be brief."), question, call, result, answer]


# --- round trips ------------------------------------------------------------------------------


def test_ui_messages_round_trip_exactly() -> None:
    """UI → convlog → UI gives every part back, UI-only fields and metadata included."""
    messages = from_ui_messages(THREAD, _rich())
    assert _json(to_ui_messages(messages)) == RICH


def test_ui_parts_become_convlog_parts_where_convlog_has_them() -> None:
    messages = from_ui_messages(THREAD, _rich())
    system, user, assistant = messages
    assert [m.id for m in messages] == ["m-system", "m-user", "m-assistant"]
    assert [m.thread_id for m in messages] == [THREAD] * 3
    assert system.parent_type == ParentType.SYSTEM
    assert user.parent_type == assistant.parent_type == ParentType.USER_MESSAGE
    assert system.content == "Be brief."
    assert assistant.content == "Sunny, 18.5 °C.\n\nThe PDF is a report."
    assert assistant.metadata == MessageMetadata()

    natives = [p for p in assistant.parts if not isinstance(p, CodePart)]
    assert natives == [
        ReasoningPart(text="Read the file, then ask the tool."),
        ToolCallPart(
            tool_call_id="call-1", tool_name="weather", args={"city": "Paris", "days": [1, 2]}
        ),
        ToolResultPart(
            tool_call_id="call-1",
            tool_name="weather",
            result={"sunny": True, "temp": 18.5, "note": None},
            is_error=False,
        ),
        ToolCallPart(tool_call_id="call-2", tool_name="weather", args={"city": "Atlantis"}),
        ToolResultPart(
            tool_call_id="call-2", tool_name="weather", result="no such city", is_error=True
        ),
        ToolCallPart(tool_call_id="call-3", tool_name="lookup", args={"q": "pdf"}),
        ToolCallPart(tool_call_id="call-5", tool_name="mcp_search", args={}),
        ToolResultPart(
            tool_call_id="call-5", tool_name="mcp_search", result=["hit"], is_error=False
        ),
        SourcePart(source_id="s1", url="https://meteo.fr", title="Météo"),
        SourcePart(source_id="s2", url="https://x/r.pdf"),
        TextPart(text="Sunny, 18.5 °C."),
        TextPart(text="The PDF is a report."),
    ]
    carried = [(p.language, json.loads(p.code)) for p in assistant.parts if isinstance(p, CodePart)]
    whole = [held["type"] for language, held in carried if language == PART_CARRIER]
    assert whole == [
        "step-start",
        "tool-lookup",  # input-streaming
        "tool-delete",  # approval-requested
        "step-start",
        "source-document",
        "data-weather",
        "data-progress",
    ]
    fields = [held for language, held in carried if language == FIELDS_CARRIER]
    assert fields == [
        {"state": "done", "providerMetadata": {"anthropic": {"signature": "sig=="}}},
        {"type": "dynamic-tool", "toolName": "mcp_search"},
        {"state": "done"},
    ]
    assert [held["metadata"] for language, held in carried if language == MESSAGE_CARRIER] == [None]

    files = [p for p in user.parts if isinstance(p, FilePart)]
    assert files == [
        FilePart(
            file_id="https://x/r.pdf", filename="r.pdf", mime_type="application/pdf", size_bytes=0
        ),
        FilePart(
            file_id="data:image/png;base64,iVBORw0KGgo=",
            filename="",
            mime_type="image/png",
            size_bytes=0,
        ),
    ]


def test_convlog_messages_round_trip_for_what_maps() -> None:
    """convlog → UI → convlog: equal, but for the documented differences, asserted here."""
    native = _native_thread()
    ui = to_ui_messages(native)
    back = from_ui_messages(THREAD, ui)

    system, question, call, result, answer = native
    # The result-only message has no UIMessage: its results are in the call's tool parts.
    assert [m.id for m in ui] == [system.id, question.id, call.id, answer.id]
    reasoning, call_1, call_2 = call.parts
    result_1, result_2 = result.parts
    joined = call.with_parts([reasoning, call_1, result_1, call_2, result_2])
    assert back == [system, question, joined, answer]

    tools = [p for p in _json(ui)[2]["parts"] if p["type"] == "tool-weather"]  # type: ignore[index]
    assert tools == [
        {
            "type": "tool-weather",
            "toolCallId": "c1",
            "state": "output-available",
            "input": {"city": "Paris"},
            "output": {"t": 18},
        },
        {
            "type": "tool-weather",
            "toolCallId": "c2",
            "state": "output-error",
            "input": {"city": "Atlantis"},
            "errorText": "unknown",
        },
    ]


def test_convlog_facts_travel_in_metadata_convlog() -> None:
    native = _native_thread()
    answer = _json(to_ui_messages(native))[-1]  # type: ignore[index]
    facts = answer["metadata"]["convlog"]
    assert facts == {
        "created_at": native[-1].created_at.isoformat().replace("+00:00", "Z"),
        "parent_type": "user_message",
        "execution_id": native[-1].execution_id,
        "parent_id": native[3].id,
        "metadata": {
            "completed_at": 1764612000123,
            "model": "gpt-x",
            "provider": "openai",
            "token_usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            "finish_reason": "stop",
            "cost": {"input_cost": 0.1, "output_cost": 0.2, "total_cost": 0.3, "currency": "USD"},
        },
    }
    parts = answer["parts"]
    assert parts[1:5] == [
        {"type": "source-url", "sourceId": "s1", "url": "https://meteo.fr", "title": "Météo"},
        {
            "type": "data-convlog-part",
            "data": {"type": "source", "source_id": "s2", "url": None, "title": None},
        },
        {
            "type": "file",
            "mediaType": "image/png",
            "url": "file_1",
            "filename": "chart.png",
            "providerMetadata": {"convlog": {"sizeBytes": 2048}},
        },
        {"type": "file", "mediaType": "text/csv", "url": "file_2"},
    ]
    assert parts[5]["data"]["type"] == "image"
    assert parts[6]["data"] == {"type": "code", "language": "python", "code": "print(18)"}


def test_content_that_is_not_the_text_is_kept() -> None:
    message = Message.user(THREAD, "summary").with_parts([TextPart(text="the long text")])
    (ui,) = to_ui_messages([message])
    assert ui.metadata["convlog"]["content"] == "summary"
    assert from_ui_messages(THREAD, [ui]) == [message]


def test_changed_facts_show_beside_the_uis_metadata() -> None:
    """Once convlog's facts change (the server adds usage), the UI sees them with its own."""
    (message,) = from_ui_messages(THREAD, _rich()[1:2])
    used = message.with_metadata(MessageMetadata(model="gpt-x"))
    (ui,) = _json(to_ui_messages([used]))  # type: ignore[misc]
    assert ui["metadata"]["createdAt"] == 1764612000000
    assert ui["metadata"]["convlog"]["metadata"] == {"model": "gpt-x"}


def test_decode_refuses_what_is_no_ui_message() -> None:
    assert decode_ui_messages(encode_ui_messages(_rich())) == _rich()
    with pytest.raises(ValidationError, match="not a list of UIMessages"):
        decode_ui_messages(b'[{"id": "a", "role": "tool", "parts": []}]')
    with pytest.raises(ValidationError, match="a part without a string type"):
        from_ui_messages(THREAD, [UIMessage(id="a", role="user", parts=[{"text": "x"}])])
    with pytest.raises(ValidationError, match=r"metadata\.convlog"):
        from_ui_messages(
            THREAD,
            [UIMessage(id="a", role="user", metadata={"convlog": {"created_at": 5}}, parts=[])],
        )


# --- stores -----------------------------------------------------------------------------------


async def _thread(store) -> Thread:
    thread = Thread.with_id(THREAD, "acme", "alice")
    await store.create_thread(thread)
    return thread


async def test_save_and_load_ui_messages(store) -> None:
    """Saved, the UIMessages load back exactly; saving them again writes nothing."""
    await _thread(store)
    saved = await save_ui_messages(store, THREAD, _rich())
    assert saved.created == ("m-system", "m-user", "m-assistant")
    assert saved.updated == ()
    assert await store.count_messages(THREAD) == 3
    assert _json(await load_ui_messages(store, THREAD)) == RICH

    again = await save_ui_messages(store, THREAD, await load_ui_messages(store, THREAD))
    assert (again.created, again.updated) == ((), ())


async def test_save_creates_new_and_updates_changed(store) -> None:
    """useChat's next turn: one message changed, one new; both in one transaction."""
    await _thread(store)
    await save_ui_messages(store, THREAD, _rich())
    stored_user = await store.get_message("m-user")
    turn = await load_ui_messages(store, THREAD)
    turn[2].parts.append({"type": "text", "text": "Anything else?", "state": "streaming"})
    turn.append(UIMessage(id="m-next", role="user", parts=[{"type": "text", "text": "No."}]))

    saved = await save_ui_messages(store, THREAD, turn)
    assert (saved.created, saved.updated) == (("m-next",), ("m-assistant",))
    assert _json(await load_ui_messages(store, THREAD)) == _json(turn)
    assistant = await store.get_message("m-assistant")
    assert assistant is not None
    assert assistant.updated_at is not None
    assert assistant.content.endswith("\n\nAnything else?")
    assert await store.get_message("m-user") == stored_user  # unchanged: not written


async def test_save_keeps_results_where_the_thread_has_them(store) -> None:
    """A result stored in a message of its own is not copied into the call's message."""
    await _thread(store)
    native = _native_thread()
    for message in native:
        await store.create_message(message)
    ui = await load_ui_messages(store, THREAD)
    assert len(ui) == 4

    saved = await save_ui_messages(store, THREAD, ui)
    assert (saved.created, saved.updated) == ((), ())
    assert await store.list_messages(THREAD) == native


async def test_save_is_one_transaction(store) -> None:
    """A refused write refuses them all: nothing of the list is stored."""
    await _thread(store)
    await save_ui_messages(store, THREAD, _rich()[:1])
    changed = _rich()
    changed[0].role = "user"  # a message's role cannot change
    with pytest.raises(TransactionError, match="role cannot change"):
        await save_ui_messages(store, THREAD, changed)
    assert await store.count_messages(THREAD) == 1


# --- the AI SDK's own check -------------------------------------------------------------------


@pytest.fixture(scope="module")
def node() -> str:
    """Node.js, and examples/ui-messages' packages installed from its lockfile."""
    return node_with_packages(UI_MESSAGES, UI_MESSAGES / "node_modules" / "ai")


def _validate(node: str, data: bytes) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our script, fixed arguments
        [node, "validate.mjs"],
        cwd=UI_MESSAGES,
        input=data.decode(),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )


def test_the_ai_sdk_accepts_what_we_make(node: str) -> None:
    """Both directions' JSON passes the ai package's safeValidateUIMessages, unchanged."""
    ui = [*to_ui_messages(_native_thread()), *to_ui_messages(from_ui_messages(THREAD, _rich()))]
    checked = _validate(node, encode_ui_messages(ui))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout == f"valid: {len(ui)} messages\n"


@pytest.mark.parametrize(
    "part",
    [
        {"type": "tool-weather", "toolCallId": "c1", "state": "output-available", "input": {}},
        {"type": "file", "mediaType": "image/png"},
        {"type": "text", "text": "x", "extra": 1},  # the validator would drop it
    ],
    ids=["no-output", "no-url", "unknown-field"],
)
def test_the_ai_sdk_refuses_an_invalid_message(node: str, part: dict[str, object]) -> None:
    message = {"id": "a", "role": "assistant", "parts": [{"type": "text", "text": "ok"}, part]}
    checked = _validate(node, json.dumps([message]).encode())
    assert checked.returncode == 1, checked.stdout
    assert checked.stderr.startswith("invalid: "), checked.stderr


def test_created_now_when_the_ui_says_nothing() -> None:
    before = datetime.now(UTC)
    (message,) = from_ui_messages(THREAD, _rich()[:1])
    assert before <= message.created_at <= datetime.now(UTC)
