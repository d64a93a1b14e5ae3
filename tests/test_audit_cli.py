"""The audit commands of ``convlog``: history, replay, show, verify, stats, rebuild, snapshot,
export, import, run in process against a real nats-server."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helpers import copy_stream
from uuid_utils import uuid7

from eventlog import EventLog, Message, StreamSettings, Thread, ThreadDeleted, event_context
from eventlog.events import event_digest, new_event_id
from projections import JetStreamMessageStore
from projections.cli import main
from projections.cli.demo import weather_conversation

if TYPE_CHECKING:
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


def invoke(
    capsys: pytest.CaptureFixture[str], settings: StreamSettings, *args: str
) -> tuple[int, pytest.CaptureResult[str]]:
    """Run ``convlog`` with the stream's options; return the exit code and what it printed."""
    code = main([*args, "--stream", settings.name, "--subject-prefix", settings.subject_prefix])
    return code, capsys.readouterr()


def run(capsys: pytest.CaptureFixture[str], settings: StreamSettings, *args: str) -> str:
    """Run ``convlog`` with the stream's options; return standard output; expect exit 0."""
    code, captured = invoke(capsys, settings, *args)
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


async def _publish_dead_letters(
    url: str, settings: StreamSettings, written: Written, *, linked: bool = True, unlinked: bool
) -> list[int]:
    """Records the projection skips, written raw; return their sequences.

    ``linked``: a newer schema and an unknown type on the thread, each linked to the record
    before it, and an event for a thread that does not exist: dead letters whose chains
    hold. ``unlinked``: bytes that are not an event, which carry no link at all.
    """
    log = await EventLog.connect(url, stream=settings)
    try:
        subject = log.subjects.thread(written.thread.tenant_id, written.thread.id)
        head = [record async for record in log.read(subject=subject)][-1].data
        newer = json.dumps(
            {"type": "thread.deleted", "schema_version": 99, "prev_hash": event_digest(head)}
        ).encode()
        unknown = json.dumps({"type": "thread.archived", "prev_hash": event_digest(newer)}).encode()
        now = datetime.now(UTC)
        orphan = ThreadDeleted(
            event_id=new_event_id(),
            occurred_at=now,
            tenant_id="acme",
            thread_id="thread_nowhere",
            deleted_at=now,
        )
        records = [
            (subject, newer),
            (subject, unknown),
            (log.subjects.thread("acme", "thread_nowhere"), log.codec.encode(orphan)),
        ][: 3 if linked else 0]
        if unlinked:
            records.append((log.subjects.thread("acme", "thread_junk"), b"\xff not an event"))
        return [
            (await log.jetstream.publish(s, data, stream=settings.name)).seq for s, data in records
        ]
    finally:
        await log.close()


def test_stats_prints_counts_health_and_dead_letters(
    nats_url: str, stream_settings: StreamSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`convlog stats` gives counts, sequences, health and each dead letter with its reason."""
    written = write(nats_url, stream_settings)
    dead = asyncio.run(_publish_dead_letters(nats_url, stream_settings, written, unlinked=True))
    assert dead == [6, 7, 8, 9]
    out = run(capsys, stream_settings, "stats", "--nats-url", nats_url)
    lines = out.splitlines()
    assert lines[0] == (
        f"stream {stream_settings.name}: 1 threads, 3 messages (deleted ones included)"
    )
    assert lines[1] == "stream sequence 9, applied sequence 9, health ok"
    assert lines[2] == "dead letters: 4 record(s) the projection skips"
    assert [line.split()[0] for line in lines[3:]] == ["#6", "#7", "#8", "#9"]
    assert "newer than this code reads" in lines[3]
    assert "does not exist" in lines[5]
    assert lines[6].startswith(f"  #9 on {stream_settings.subject_prefix}.acme.thread_junk: ")
    assert "not a convlog event" in lines[6]
    document = json.loads(run(capsys, stream_settings, "stats", "--nats-url", nats_url, "--json"))
    assert {k: document[k] for k in ("threads", "messages", "status")} == {
        "threads": 1,
        "messages": 3,
        "status": "ok",
    }
    assert (document["stream_sequence"], document["applied_sequence"]) == (9, 9)
    assert [d["sequence"] for d in document["dead_letters"]] == dead
    assert document["dead_letters"][2]["subject"].endswith(".acme.thread_nowhere")


def test_stats_without_dead_letters_says_none(
    nats_url: str, stream_settings: StreamSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    write(nats_url, stream_settings)
    out = run(capsys, stream_settings, "stats", "--nats-url", nats_url)
    assert out.splitlines()[1:] == [
        "stream sequence 5, applied sequence 5, health ok",
        "dead letters: none",
    ]


def test_verify_lists_dead_letters_and_fails_only_on_a_broken_chain(
    nats_url: str, stream_settings: StreamSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    """Dead letters with intact links are listed and verify passes; bytes with no link fail it."""
    written = write(nats_url, stream_settings)
    asyncio.run(_publish_dead_letters(nats_url, stream_settings, written, unlinked=False))
    out = run(capsys, stream_settings, "verify", "--nats-url", nats_url)
    lines = out.splitlines()
    assert lines[0].startswith("ok: 8 events in 2 threads, up to sequence 8, every hash chain")
    assert lines[1] == "dead letters: 3 record(s) the projection skips"
    assert [line.split()[0] for line in lines[2:]] == ["#6", "#7", "#8"]
    out = run(capsys, stream_settings, "verify", "--nats-url", nats_url, "--until", "6")
    assert out.splitlines()[1:] == ["dead letters: 1 record(s) the projection skips", lines[2]]

    junk = asyncio.run(
        _publish_dead_letters(nats_url, stream_settings, written, linked=False, unlinked=True)
    )
    assert junk == [9]
    code, captured = invoke(capsys, stream_settings, "verify", "--nats-url", nats_url)
    lines = captured.out.splitlines()
    assert code == 1
    assert lines[0].startswith("broken: ")
    assert "1 broken link(s) in 9 events" in lines[0]
    assert "first at sequence 9 on" in lines[0]
    assert "the record is not a convlog event" in lines[0]
    assert lines[2] == "dead letters: 4 record(s) the projection skips"


def exported_file(
    capsys: pytest.CaptureFixture[str], nats_url: str, settings: StreamSettings, folder: Path
) -> Path:
    """``convlog export --tenant acme -o FILE``; the file."""
    export = folder / "acme.jsonl"
    run(capsys, settings, "export", "--nats-url", nats_url, "--tenant", "acme", "-o", str(export))
    return export


def other_stream() -> StreamSettings:
    """A stream name and subject prefix of its own, to import into."""
    token = uuid7().hex[-12:]
    return StreamSettings(name=f"X{token}", subject_prefix=f"x{token}")


def test_export_then_import_into_another_stream(
    nats_url: str,
    stream_settings: StreamSettings,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """`convlog export -o` and `convlog import` copy the events; a second import adds nothing.

    The export's root, printed and in its trailer, is the one `convlog verify` prints.
    """
    write(nats_url, stream_settings)
    export = exported_file(capsys, nats_url, stream_settings, tmp_path)
    assert len(export.read_bytes().splitlines()) == 6  # 5 events and the trailer
    code, captured = invoke(capsys, stream_settings, "export", "--nats-url", nats_url)
    root = captured.err.split("root ")[1].split()[0]
    assert code == 0
    assert captured.out.encode() == export.read_bytes()
    out = run(capsys, stream_settings, "verify", "--nats-url", nats_url)
    assert f"(root {root})" in out
    target = other_stream()
    code, captured = invoke(capsys, target, "import", "--nats-url", nats_url, str(export))
    assert code == 0
    assert (
        captured.out
        == f"imported 5 events into stream {target.name} across 1 threads (0 were there already)\n"
    )
    assert captured.err.startswith("import: 5 events in ")
    out = run(capsys, target, "import", "--nats-url", nats_url, str(export))
    assert "imported 0 events" in out
    assert "(5 were there already)" in out
    out = run(capsys, target, "rebuild", "--nats-url", nats_url, "--verify")
    assert out.startswith("rebuilt 5 events")


def test_import_of_an_edited_export_writes_nothing_and_exits_1(
    nats_url: str,
    stream_settings: StreamSettings,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """A rejected import names the line and says nothing was written; the stream stays empty."""
    write(nats_url, stream_settings)
    export = exported_file(capsys, nats_url, stream_settings, tmp_path)
    good = export.read_bytes()
    lines = good.splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"event":{', b'"event":{"edited":true,', 1)
    export.write_bytes(b"".join(lines))
    target = other_stream()
    code, captured = invoke(capsys, target, "import", "--nats-url", nats_url, str(export))
    assert code == 1
    assert captured.out == ""
    assert captured.err.startswith("convlog: import refused at line 4: event ")
    assert "nothing was written" in captured.err
    assert len(captured.err.splitlines()) == 1
    export.write_bytes(good)
    out = run(capsys, target, "import", "--nats-url", nats_url, str(export))
    assert "imported 5 events" in out
    assert "(0 were there already)" in out


def test_import_of_a_missing_file_is_a_one_line_error(
    nats_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """No traceback: one sentence naming the file, exit 1."""
    missing = tmp_path / "nowhere.jsonl"
    code, captured = invoke(capsys, other_stream(), "import", "--nats-url", nats_url, str(missing))
    assert code == 1
    assert captured.err == (
        f"convlog: import refused: cannot read {str(missing)!r} (No such file or directory); "
        "nothing was written, check the path.\n"
    )


def test_import_of_an_export_without_a_trailer_needs_the_flag(
    nats_url: str,
    stream_settings: StreamSettings,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """An export cut off (or made before roots) is refused; --allow-missing-root takes it."""
    write(nats_url, stream_settings)
    export = exported_file(capsys, nats_url, stream_settings, tmp_path)
    export.write_bytes(b"".join(export.read_bytes().splitlines(keepends=True)[:-1]))
    target = other_stream()
    code, captured = invoke(capsys, target, "import", "--nats-url", nats_url, str(export))
    assert code == 1
    assert "the file has no trailer with its root" in captured.err
    assert "--allow-missing-root" in captured.err
    out = run(capsys, target, "import", "--nats-url", nats_url, "--allow-missing-root", str(export))
    assert "imported 5 events" in out


DOCS = Path(__file__).parent.parent / "docs" / "cli.md"


def documented_fields() -> dict[str, set[str]]:
    """docs/cli.md's field tables: command -> field paths (``entries[].sequence``, ...)."""
    fields: dict[str, set[str]] = {}
    command = ""
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        if heading := re.fullmatch(r"### `convlog (\w+)`", line):
            command = heading[1]
            fields[command] = set()
        elif row := re.match(r"\| `([\w.\[\]]+)` \|", line):
            fields[command].add(row[1])
    return fields


def assert_documented(value: dict[str, Any], paths: set[str], prefix: str = "") -> None:
    """``value`` has exactly the documented fields, and so has each documented object in it."""
    under = {path.removeprefix(prefix) for path in paths if path.startswith(prefix)}
    own = {name for name in under if "." not in name}
    assert set(value) == own, f"{prefix or 'top level'}: {sorted(value)} vs docs {sorted(own)}"
    for name in own:
        child = value[name]
        if isinstance(child, list) and f"{name}[]" in {n.split(".")[0] for n in under}:
            for item in child:
                assert_documented(item, paths, f"{prefix}{name}[].")
        elif isinstance(child, dict) and any(n.startswith(f"{name}.") for n in under):
            assert_documented(child, paths, f"{prefix}{name}.")


class JsonRun:
    """A log with a conversation and dead letters, and its commands' --json documents."""

    def __init__(
        self, capsys: pytest.CaptureFixture[str], nats_url: str, settings: StreamSettings
    ) -> None:
        self.written = write(nats_url, settings)
        self.dead = asyncio.run(
            _publish_dead_letters(nats_url, settings, self.written, unlinked=False)
        )
        self.docs = documented_fields()
        self.url = ("--nats-url", nats_url, "--json")
        self._capsys = capsys
        self._settings = settings

    def document(self, *args: str, target: StreamSettings | None = None) -> dict[str, Any]:
        """``convlog ARGS --json``'s document; expect exit 0."""
        code, captured = invoke(self._capsys, target or self._settings, *args, *self.url)
        assert code == 0, captured.err
        parsed: dict[str, Any] = json.loads(captured.out)
        return parsed


def test_docs_list_a_json_schema_for_every_command_that_prints_a_result() -> None:
    assert set(documented_fields()) == {
        "tail", "history", "replay", "show", "verify", "stats", "rebuild", "snapshot", "export",
        "import", "migrate",
    }  # fmt: skip


def test_json_of_tail_history_replay_and_show_has_the_documented_fields(
    nats_url: str, stream_settings: StreamSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each command's --json parses and has exactly the fields docs/cli.md lists for it."""
    runs = JsonRun(capsys, nats_url, stream_settings)
    written, docs, url, document = runs.written, runs.docs, runs.url, runs.document
    thread = str(written.thread.id)
    tail = run(capsys, stream_settings, "tail", *url, "--from", "1", "--no-follow")
    lines = [json.loads(line) for line in tail.splitlines()]
    assert [line["sequence"] for line in lines] == [1, 2, 3, 4, 5, 8]  # 6, 7: not readable
    for line in lines:
        assert_documented(line, docs["tail"])
    history = document("history", "--message", str(written.edited.id))
    assert_documented(history, docs["history"])
    assert (history["message_id"], history["thread_id"]) == (written.edited.id, None)
    assert [entry["event_type"] for entry in history["entries"]] == [
        "message.created",
        "message.updated",
    ]
    assert_documented(document("history", "--thread", thread), docs["history"])
    replay = document("replay", "--execution", written.execution_id)
    assert_documented(replay, docs["replay"])
    assert replay["summary"]["total_tokens"] == 508
    assert_documented(document("replay", "--thread", thread), docs["replay"])
    show = document("show", "--thread", thread, "--at", "3")
    assert_documented(show, docs["show"])
    assert (show["sequence"], show["thread"]["id"], len(show["messages"])) == (3, thread, 2)


def test_json_of_checks_and_transfers_has_the_documented_fields(
    nats_url: str,
    stream_settings: StreamSettings,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """verify, stats, rebuild, snapshot, export (its summary) and import, as docs/cli.md says."""
    runs = JsonRun(capsys, nats_url, stream_settings)
    written, docs, url, document, dead = (
        runs.written, runs.docs, runs.url, runs.document, runs.dead
    )  # fmt: skip
    verify = document("verify")
    assert_documented(verify, docs["verify"])
    assert (verify["ok"], verify["events"], verify["breaks"], verify["missing"]) == (
        True,
        8,
        [],
        [],
    )
    assert [letter["sequence"] for letter in verify["dead_letters"]] == dead
    stats = document("stats")
    assert_documented(stats, docs["stats"])
    assert (stats["threads"], stats["applied_sequence"]) == (1, 8)
    rebuild = document("rebuild", "--verify")
    assert_documented(rebuild, docs["rebuild"])
    assert (rebuild["events"], rebuild["verified"], rebuild["live_restored_from"]) == (
        8,
        True,
        None,
    )
    snapshot = document("snapshot")
    assert_documented(snapshot, docs["snapshot"])
    assert snapshot["name"] == "views-00000000000000000008"
    export = tmp_path / "all.jsonl"
    code, captured = invoke(capsys, stream_settings, "export", *url, "-o", str(export))
    assert code == 0
    summary = json.loads(captured.err)
    assert_documented(summary, docs["export"])
    assert (summary["events"], summary["not_exported"]) == (6, [6, 7])  # 6, 7: not events
    target = other_stream()
    imported = document("import", str(export), target=target)
    assert_documented(imported, docs["import"])
    assert (imported["stream"], imported["appended"], imported["already_present"]) == (
        target.name,
        6,
        0,
    )
    asyncio.run(
        _publish_dead_letters(nats_url, stream_settings, written, linked=False, unlinked=True)
    )
    code, captured = invoke(capsys, stream_settings, "verify", *url)
    broken = json.loads(captured.out)
    assert (code, broken["ok"], [b["sequence"] for b in broken["breaks"]]) == (1, False, [9])
    assert_documented(broken, docs["verify"])
