"""The audit commands of ``convlog``: history, replay, show, verify, rebuild, snapshot, export,
import, run in process against a real nats-server."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from test_verify import copy_stream
from uuid_utils import uuid7

from eventlog import EventLog, Message, StreamSettings, Thread, event_context
from projections import JetStreamMessageStore
from projections.cli import main, weather_conversation

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


class Written:
    """What :func:`write` put in the stream."""

    def __init__(self, thread: Thread, execution_id: str, edited: Message) -> None:
        self.thread = thread
        self.execution_id = execution_id
        self.edited = edited


async def _write(url: str, settings: StreamSettings) -> Written:
    store = await JetStreamMessageStore.connect(
        url, stream=settings.name, subject_prefix=settings.subject_prefix
    )
    try:
        thread = Thread.new("acme", "alice")
        with event_context(actor="agent:weather"):
            await store.create_thread(thread)
            conversation = weather_conversation(thread.id)
            for message in conversation:
                await store.create_message(message)
        with event_context(actor="user:alice"):
            edited = conversation[1]
            await store.update_message(edited.model_copy(update={"content": "And tomorrow?"}))
    finally:
        await store.close()
    execution_id = conversation[2].execution_id
    assert execution_id is not None
    return Written(thread, str(execution_id), edited)  # a plain str, as argv holds


def write(url: str, settings: StreamSettings) -> Written:
    """A weather conversation (5 events), its question edited by the user."""
    return asyncio.run(_write(url, settings))


def run(capsys: pytest.CaptureFixture[str], settings: StreamSettings, *args: str) -> str:
    """Run ``convlog`` with the stream's options; return standard output; expect exit 0."""
    code = main([*args, "--stream", settings.name, "--subject-prefix", settings.subject_prefix])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def test_history_lists_events_with_state(
    nats_url: str, stream_settings: StreamSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`convlog history --message` shows each event's sequence, type, actor and the message."""
    written = write(nats_url, stream_settings)
    out = run(
        capsys,
        stream_settings,
        "history",
        "--nats-url",
        nats_url,
        "--message",
        str(written.edited.id),
    )
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("#3 ")
    assert "message.created  agent:weather" in lines[0]
    assert '[user] "What\'s the weather like in Paris right now?"' in lines[0]
    assert "message.updated  user:alice" in lines[1]
    assert "'And tomorrow?'" in lines[1]
    out = run(
        capsys,
        stream_settings,
        "history",
        "--nats-url",
        nats_url,
        "--thread",
        str(written.thread.id),
        "--json",
    )
    document = json.loads(out)
    assert document["thread_id"] == written.thread.id
    assert [e["sequence"] for e in document["entries"]] == [1, 2, 3, 4, 5]
    assert document["entries"][4]["event"]["type"] == "message.updated"
    assert document["entries"][4]["state"]["content"] == "And tomorrow?"


def test_replay_renders_an_execution_with_its_summary(
    nats_url: str, stream_settings: StreamSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`convlog replay --execution` shows parts, tools, tokens and cost; --json for machines."""
    written = write(nats_url, stream_settings)
    args = ("replay", "--nats-url", nats_url, "--execution", written.execution_id)
    out = run(capsys, stream_settings, *args, "--color", "never")
    assert out.splitlines()[0] == f"execution {written.execution_id}"
    assert '[assistant] "It\'s 18°C and sunny in Paris right now."' in out
    assert "tool-call get_weather {'city': 'Paris'}" in out
    assert "tool-result get_weather {'temp_c': 18, 'conditions': 'sunny'}" in out
    assert "summary: 1 message(s) in 1 event(s); 2 LLM call(s), 1 tool call(s) (0 failed)" in out
    assert "tokens 412 in + 96 out = 508; cost 0.001990 USD" in out
    assert "\x1b[" not in out
    coloured = run(capsys, stream_settings, *args, "--color", "always")
    assert "\x1b[36m[assistant]\x1b[0m" in coloured
    document = json.loads(run(capsys, stream_settings, *args, "--json"))
    assert document["summary"]["total_tokens"] == 508
    assert document["summary"]["tool_calls"] == 1
    assert document["entries"][0]["state"]["parts"][1]["type"] == "tool-call"


def test_replay_of_a_thread_and_show_as_of_a_sequence(
    nats_url: str, stream_settings: StreamSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`convlog replay --thread` walks every event; `convlog show --at` shows the thread then."""
    written = write(nats_url, stream_settings)
    thread = str(written.thread.id)
    out = run(capsys, stream_settings, "replay", "--nats-url", nats_url, "--thread", thread)
    assert [line.split()[2] for line in out.splitlines() if line.startswith("#")] == [
        "thread.created",
        "message.created",
        "message.created",
        "message.created",
        "message.updated",
    ]
    out = run(
        capsys, stream_settings, "show", "--nats-url", nats_url, "--thread", thread, "--at", "3"
    )
    assert out.startswith("as of sequence 3 (stored ")
    assert '[user] "What\'s the weather like in Paris right now?"' in out
    assert "[assistant]" not in out
    out = run(
        capsys, stream_settings, "show", "--nats-url", nats_url, "--thread", thread, "--at", "0"
    )
    assert f"thread {thread!r} did not exist yet" in out


def test_verify_rebuild_and_snapshot(
    nats_url: str, stream_settings: StreamSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    """verify says ok; rebuild --verify matches before and after a snapshot is written."""
    write(nats_url, stream_settings)
    out = run(capsys, stream_settings, "verify", "--nats-url", nats_url)
    assert out.startswith("ok: 5 events in 1 threads, up to sequence 5, every hash chain intact")
    out = run(capsys, stream_settings, "rebuild", "--nats-url", nats_url, "--verify")
    assert out.startswith("rebuilt 5 events up to sequence 5 in ")
    assert "verified: the live views (folded from sequence 1) have the same digest" in out
    out = run(capsys, stream_settings, "snapshot", "--nats-url", nats_url)
    assert out.startswith(
        "snapshot views-00000000000000000005 at sequence 5: 1 threads, 3 messages"
    )
    out = run(capsys, stream_settings, "rebuild", "--nats-url", nats_url, "--verify")
    assert "restored from views-00000000000000000005 plus the tail" in out


def test_verify_fails_on_an_altered_copy(
    nats_url: str, stream_settings: StreamSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`convlog verify` exits 1 on a copy with an altered event and names the broken link."""
    write(nats_url, stream_settings)

    async def altered_copy() -> StreamSettings:
        log = await EventLog.connect(nats_url, stream=stream_settings)
        copy = await copy_stream(
            log,
            nats_url,
            lambda r: r.data.replace(b"Paris", b"Lyon") if r.sequence == 3 else r.data,
        )
        await log.close()
        await copy.close()
        return copy.stream

    copy = asyncio.run(altered_copy())
    code = main(
        [
            "verify",
            "--nats-url",
            nats_url,
            "--stream",
            copy.name,
            "--subject-prefix",
            copy.subject_prefix,
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert out.startswith("broken: 1 broken link(s) in 5 events")
    assert "sequence 4 on" in out
    assert "previous record 3" in out


def test_export_then_import_into_another_stream(
    nats_url: str,
    stream_settings: StreamSettings,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """`convlog export -o` and `convlog import` copy the events; a second import adds nothing."""
    write(nats_url, stream_settings)
    export = tmp_path / "acme.jsonl"
    run(
        capsys,
        stream_settings,
        "export",
        "--nats-url",
        nats_url,
        "--tenant",
        "acme",
        "-o",
        str(export),
    )
    assert len(export.read_bytes().splitlines()) == 5
    token = uuid7().hex[-12:]
    target = StreamSettings(name=f"X{token}", subject_prefix=f"x{token}")
    out = run(capsys, target, "import", "--nats-url", nats_url, str(export))
    assert (
        out
        == f"imported 5 events into stream {target.name} across 1 threads (0 were there already)\n"
    )
    out = run(capsys, target, "import", "--nats-url", nats_url, str(export))
    assert "imported 0 events" in out
    assert "(5 were there already)" in out
    out = run(capsys, target, "rebuild", "--nats-url", nats_url, "--verify")
    assert out.startswith("rebuilt 5 events")
