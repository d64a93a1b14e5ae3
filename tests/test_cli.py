"""The ``convlog`` command, run as users run it: the installed script, in a subprocess."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from typing import TYPE_CHECKING

import pytest
from helpers import CONVLOG, OutputLines, env_without_nats_url, run_convlog

import eventlog.server
from eventlog import (
    EmbeddedNats,
    EmbeddedServerError,
    Message,
    StreamSettings,
    TenantId,
    Thread,
    ThreadId,
    UserId,
)
from projections import JetStreamMessageStore
from projections.cli import main
from projections.commands import utc_now

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def test_demo_writes_a_conversation_and_rebuilds_the_same_view() -> None:
    """`convlog demo` on an embedded server prints the thread, its events and a matching rebuild."""
    result = run_convlog("demo", timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Weather in Paris" in out
    assert "tool-call get_weather {'city': 'Paris'}" in out
    assert "tool-result get_weather {'temp_c': 18, 'conditions': 'sunny'}" in out
    assert "tokens 412 in + 96 out = 508" in out
    assert "thread.created" in out
    assert out.count("message.created") == 3
    assert "agent:weather" in out
    assert "rebuilt view matches: yes" in out
    assert "Traceback" not in result.stderr


def test_demo_uses_the_given_server_stream_and_prefix(
    nats_url: str, stream_settings: StreamSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`convlog demo --nats-url` writes to the named stream under the named subject prefix."""
    code = main(
        [
            "demo",
            "--nats-url",
            nats_url,
            "--stream",
            stream_settings.name,
            "--subject-prefix",
            stream_settings.subject_prefix,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert (
        f"events in stream {stream_settings.name} on {stream_settings.subject_prefix}.acme." in out
    )
    assert "rebuilt view matches: yes" in out


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_reports_status_and_stops_cleanly_on_a_signal(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """`convlog serve` prints where and what it serves, then status, and exits 0 on a signal."""
    process = subprocess.Popen(  # noqa: S603 - our own script, fixed arguments
        [str(CONVLOG), "serve", "--data-dir", str(tmp_path), "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        env=env_without_nats_url(),
    )
    try:
        lines = OutputLines(process)
        deadline = time.monotonic() + 30
        assert lines.next(deadline).startswith("serving projection of stream CONVLOG at nats://")
        served = lines.next(deadline)
        assert served == (
            "partitions 0-63 of 64: service 'convlog' on convlog-q.CONVLOG.<partition>.<endpoint>"
        )
        status = lines.next(deadline)
        assert status.startswith("applied sequence 0, health ok"), status
        process.send_signal(signum)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        _, stderr = process.communicate()
    assert "Traceback" not in stderr, stderr
    assert (tmp_path / "jetstream").is_dir()  # the log persists in --data-dir


def test_unreachable_server_is_a_one_line_error() -> None:
    """An unreachable --nats-url exits 1 with one line on stderr that names the URL."""
    result = run_convlog(
        "demo", "--nats-url", "nats://127.0.0.1:1", "--connect-timeout", "1", timeout=30
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "nats://127.0.0.1:1" in lines[0]
    assert result.stdout == ""


def test_missing_nats_server_binary_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --nats-url and without a nats-server binary, the command says how to get one."""

    def missing() -> Path:
        raise EmbeddedServerError("nats-server was not found; install it.")

    monkeypatch.delenv("NATS_URL", raising=False)
    monkeypatch.setattr(eventlog.server, "find_nats_server", missing)
    code = main(["demo"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err == "convlog: nats-server was not found; install it.\n"
    assert captured.out == ""


async def test_output_to_a_closed_pipe_ends_quietly(
    nats_url: str, stream_settings: StreamSettings
) -> None:
    """`convlog tail | head -1`: the reader goes away; tail exits with no traceback."""
    store = await JetStreamMessageStore.connect(
        nats_url, stream=stream_settings.name, subject_prefix=stream_settings.subject_prefix
    )
    async with store:
        now = utc_now()
        thread = Thread(
            id=ThreadId.new(),
            tenant_id=TenantId.from_string("pipe"),
            user_id=UserId.from_string("u"),
            title="many events",
            created_at=now,
            updated_at=now,
        )
        await store.create_thread(thread)
        for n in range(2000):
            await store.create_message(Message.user(thread.id, f"line {n} " + "x" * 200))
    process = subprocess.Popen(  # noqa: S603, ASYNC220 - our own script; the test waits on it
        [
            str(CONVLOG),
            "tail",
            "--nats-url",
            nats_url,
            "--stream",
            stream_settings.name,
            "--subject-prefix",
            stream_settings.subject_prefix,
            "--from",
            "1",
            "--no-follow",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env_without_nats_url(),
    )
    assert process.stdout is not None
    assert process.stdout.readline().startswith(b"#1 ")
    process.stdout.close()  # as `head -1` does once it has its line
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 141  # 128 + SIGPIPE, as a shell reports it
    assert b"Traceback" not in stderr, stderr
    assert b"BrokenPipe" not in stderr, stderr


PASSWORD = "s3cret"  # noqa: S105 - the test server's only password


@pytest.fixture
def locked_server(tmp_path: Path) -> Iterator[str]:
    """A server of this test's own that lets in user alice with PASSWORD, and nobody else."""
    server = EmbeddedNats(
        data_dir=tmp_path / "locked",
        extra_config=f'authorization {{ users: [ {{ user: alice, password: "{PASSWORD}" }} ] }}',
    )
    asyncio.run(server.start())
    try:
        yield server.url
    finally:
        asyncio.run(server.stop())


def test_connection_settings_flags_beat_environment_beat_context(
    locked_server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The nats CLI's settings: a context gives the server and login, NATS_* beat it, flags beat
    both; a wrong password from the winning source is refused (exit 1, one line)."""
    config = tmp_path / "config"
    (config / "nats" / "context").mkdir(parents=True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # never the user's data dir
    for name in ("NATS_URL", "NATS_CONTEXT", "NATS_USER", "NATS_PASSWORD", "NATS_CREDS"):
        monkeypatch.delenv(name, raising=False)

    def context(name: str, password: str) -> None:
        document = {"url": locked_server, "user": "alice", "password": password}
        (config / "nats" / "context" / f"{name}.json").write_text(json.dumps(document))

    def stats(*flags: str) -> int:
        code = main(["stats", "--json", "--connect-timeout", "2", "--stream", "LOCKED", *flags])
        captured = capsys.readouterr()
        if code == 0:
            assert json.loads(captured.out)["stream"] == "LOCKED"
        else:
            assert captured.out == ""
            assert len(captured.err.strip().splitlines()) == 1, captured.err
        return code

    context("lab", PASSWORD)
    context("stale", "wrong")
    (config / "nats" / "context.txt").write_text("lab")
    assert stats() == 0  # the selected context: its URL, user and password
    assert stats("--context", "stale") == 1  # a named context beats the selected one
    monkeypatch.setenv("NATS_CONTEXT", "stale")
    assert stats() == 1
    monkeypatch.setenv("NATS_PASSWORD", PASSWORD)
    assert stats() == 0  # the environment beats the context
    assert stats("--password", "wrong") == 1  # a flag beats the environment
    monkeypatch.setenv("NATS_PASSWORD", "wrong")
    assert stats() == 1
    assert stats("--password", PASSWORD) == 0
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:1")
    assert stats("--password", PASSWORD) == 1  # NATS_URL beats the context's URL
    assert stats("--password", PASSWORD, "--nats-url", locked_server) == 0


def test_a_missing_context_is_a_one_line_error_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    code = main(["stats", "--context", "nowhere"])
    captured = capsys.readouterr()
    assert code == 1
    assert str(tmp_path / "nats" / "context" / "nowhere.json") in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    assert captured.out == ""
