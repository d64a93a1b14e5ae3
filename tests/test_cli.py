"""The ``convlog`` command, run as users run it: the installed script, in a subprocess."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import eventlog.server
from eventlog import EmbeddedServerError, StreamSettings
from projections.cli import main

CONVLOG = Path(sys.executable).parent / "convlog"


def _env_without_nats_url() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name != "NATS_URL"}


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own script, fixed arguments
        [str(CONVLOG), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=_env_without_nats_url(),
        timeout=timeout,
        check=False,
    )


class _Lines:
    """A subprocess's stdout lines, read on a thread so the test can wait with a deadline."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        stdout = process.stdout

        def pump() -> None:
            for line in stdout:
                self._queue.put(line.rstrip("\n"))
            self._queue.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def next(self, deadline: float) -> str:
        """The next line; fails if the output ends or the deadline passes first."""
        try:
            line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail(f"no output line before the deadline; saw {self.seen}")
        if line is None:
            pytest.fail(f"output ended early; saw {self.seen}")
        self.seen.append(line)
        return line


def test_demo_writes_a_conversation_and_rebuilds_the_same_view() -> None:
    """`convlog demo` on an embedded server prints the thread, its events and a matching rebuild."""
    result = _run("demo", timeout=60)
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
    """`convlog serve` prints where it serves, then status lines, and exits 0 on a signal."""
    process = subprocess.Popen(  # noqa: S603 - our own script, fixed arguments
        [str(CONVLOG), "serve", "--data-dir", str(tmp_path), "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        env=_env_without_nats_url(),
    )
    try:
        lines = _Lines(process)
        deadline = time.monotonic() + 30
        assert lines.next(deadline).startswith("serving projection of stream CONVLOG at nats://")
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
    result = _run("demo", "--nats-url", "nats://127.0.0.1:1", "--connect-timeout", "1", timeout=30)
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
