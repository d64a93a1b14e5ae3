"""What the tests share: the ``convlog`` script and its output, pids, and retried writes.

No test module imports another; what two of them need lives here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

import nats
import pytest
from uuid_utils import uuid7

from eventlog import (
    EventLog,
    Message,
    MessageCreated,
    StreamSettings,
    Thread,
    ThreadCreated,
    UnavailableError,
)
from eventlog.events import new_event_id

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from eventlog import LogRecord
    from eventlog.connection import ConnectionState

CONVLOG = Path(sys.executable).parent / "convlog"


def env_without_nats_url() -> dict[str, str]:
    """The environment, less NATS_URL: commands then use their embedded server."""
    return {name: value for name, value in os.environ.items() if name != "NATS_URL"}


def run_convlog(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``convlog ARGS`` to its end and capture what it printed."""
    return subprocess.run(  # noqa: S603 - our own script, fixed arguments
        [str(CONVLOG), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env_without_nats_url(),
        timeout=timeout,
        check=False,
    )


def start_convlog(*args: str) -> subprocess.Popen[str]:
    """Start ``convlog ARGS`` with its stdout and stderr piped."""
    return subprocess.Popen(  # noqa: S603 - our own script, fixed arguments
        [str(CONVLOG), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        env=env_without_nats_url(),
    )


def ended(process: subprocess.Popen[str]) -> tuple[str, str]:
    """Kill ``process`` if it still runs; return the rest of its stdout and its stderr."""
    if process.poll() is None:
        process.kill()
    out, err = process.communicate(timeout=30)
    return out or "", err or ""


class OutputLines:
    """A subprocess's stdout (or stderr) lines, read on a thread, to wait for with a deadline."""

    def __init__(self, process: subprocess.Popen[str], *, stderr: bool = False) -> None:
        stream = process.stderr if stderr else process.stdout
        assert stream is not None
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []

        def pump() -> None:
            for line in stream:
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

    def until(self, prefix: str, deadline: float) -> str:
        """The first next line that starts with ``prefix``."""
        while not (line := self.next(deadline)).startswith(prefix):
            pass
        return line


def is_running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


def wait_gone(pid: int, seconds: float) -> None:
    """Fail unless process ``pid`` ends within ``seconds`` (a correctness bound, generous)."""
    deadline = time.monotonic() + seconds
    while is_running(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            pytest.fail(f"process {pid} still ran {seconds}s later (killed now)")
        time.sleep(0.02)  # another process's exit: there is nothing to await


def nats_servers_on(data_dir: Path) -> list[int]:
    """The pids of the nats-server processes running on ``data_dir``'s config."""
    config = str(data_dir / "nats-server.conf").encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
            if Path(arguments[0].decode()).name == "nats-server" and config in arguments:
                pids.append(int(entry.name))
    return [pid for pid in pids if is_running(pid)]


class ServerCounter:
    """Samples, on a thread, how many nats-servers run on a data dir; keeps the most seen."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._stop = threading.Event()
        self.most = 0
        self.pids: set[int] = set()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            running = nats_servers_on(self._data_dir)
            self.pids.update(running)
            self.most = max(self.most, len(running))

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


# --- writes repeated across server restarts (the fault and soak tests) ---------------------

T = TypeVar("T")


class Retried:
    """How many calls :func:`until_acknowledged` made in all, and how many of them failed."""

    def __init__(self) -> None:
        self.calls = 0
        self.unavailable = 0


async def until_acknowledged(
    call: Callable[[], Awaitable[T]],
    connection: ConnectionState,
    *,
    seconds: float = 60.0,
    retried: Retried | None = None,
) -> T:
    """Repeat ``call`` until it returns; give up with its last error after ``seconds``.

    Repeating is safe: an append of the same event is stored once (its id is the msg id),
    and a repeated store call is a no-op once the first landed. A restarted server accepts
    connections before JetStream has recovered its streams, so each failure waits for the
    connection to be up and tries again, paced by the call's own write timeout: the way
    the first fault tests did it, with a deadline instead of a count.
    """
    deadline = time.monotonic() + seconds
    counts = retried or Retried()
    while True:
        counts.calls += 1
        try:
            return await call()
        except UnavailableError:
            counts.unavailable += 1
            if time.monotonic() > deadline:
                raise
            await connection.wait()


def report(scenario: str, **counts: int) -> None:
    """One line of counts per scenario, shown with ``pytest -s`` and quoted in run notes."""
    print(f"[{scenario}] " + " ".join(f"{name}={value}" for name, value in counts.items()))  # noqa: T201


# --- events, built and read back (the log and group-commit tests) -----------------------------


def thread_created(tenant_id: str = "tenant_acme", thread_id: str = "thread_1") -> ThreadCreated:
    """A ThreadCreated event for ``thread_id`` of ``tenant_id``, with a fresh event id."""
    return ThreadCreated(
        event_id=new_event_id(),
        occurred_at=datetime.now(UTC),
        tenant_id=tenant_id,
        thread_id=thread_id,
        thread=Thread.with_id(thread_id, tenant_id, "user_1"),
    )


def message_created(
    content: str, tenant_id: str = "tenant_acme", thread_id: str = "thread_1"
) -> MessageCreated:
    """A MessageCreated event carrying a user message with ``content``."""
    message = Message.user(thread_id, content)
    return MessageCreated(
        event_id=new_event_id(),
        occurred_at=datetime.now(UTC),
        tenant_id=tenant_id,
        thread_id=thread_id,
        message_id=message.id,
        message=message,
    )


async def collect(records: AsyncIterator[LogRecord]) -> list[LogRecord]:
    return [record async for record in records]


# --- copies of a stream (the verify tests) ----------------------------------------------------


async def copy_stream(
    source: EventLog, nats_url: str, rewrite: Callable[[LogRecord], bytes | None]
) -> EventLog:
    """A copy of ``source`` in a new stream, each record through ``rewrite`` (None: dropped)."""
    token = uuid7().hex[-12:]
    copy = await EventLog.connect(
        nats_url, stream=StreamSettings(name=f"C{token}", subject_prefix=f"c{token}")
    )
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    old, new = source.subjects.prefix + ".", copy.subjects.prefix + "."
    async for record in source.read():
        data = rewrite(record)
        if data is not None:
            await js.publish(new + record.subject.removeprefix(old), data, stream=copy.stream.name)
    await nc.close()
    return copy


# --- seed documents (the model and wire tests) ----------------------------------------------

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"


def message_doc(**changes: Any) -> dict[str, Any]:
    """Return a minimal valid message document, with top-level keys replaced."""
    doc: dict[str, Any] = {
        "id": "msg_1",
        "thread_id": "thread_1",
        "execution_id": None,
        "parent_id": None,
        "parent_type": "user_message",
        "role": "user",
        "content": "hi",
        "parts": [{"type": "text", "text": "hi"}],
        "created_at": "2024-05-06T07:08:09.123Z",
        "updated_at": None,
        "deleted_at": None,
        "metadata": {
            "completed_at": 1,
            "duration_ms": 2,
            "model": None,
            "provider": None,
            "token_usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
            "stats": None,
            "finish_reason": None,
            "cost": {"input_cost": 0.0, "output_cost": 1, "total_cost": 1.5, "currency": "EUR"},
        },
    }
    doc.update(changes)
    return doc


def thread_doc() -> dict[str, Any]:
    """Return a minimal valid thread document."""
    return {
        "id": "thread_1",
        "tenant_id": "tenant_1",
        "user_id": "user_1",
        "title": None,
        "created_at": "2024-05-06T07:08:09Z",
        "updated_at": "2024-05-06T07:08:09Z",
        "deleted_at": None,
    }


EVERY_PART_MESSAGE: dict[str, Any] = {
    "id": "msg_every_part",
    "thread_id": "thread_literal",
    "execution_id": "exec_literal",
    "parent_id": None,
    "parent_type": "tool_call",
    "role": "user",
    "content": "every part",
    "parts": [
        {"type": "text", "text": "hello"},
        {"type": "reasoning", "text": "hmm"},
        {
            "type": "tool-call",
            "tool_call_id": "tc_1",
            "tool_name": "search",
            "args": {"q": "nats", "n": 3, "deep": {"x": [1.5, None, True]}},
        },
        {
            "type": "tool-result",
            "tool_call_id": "tc_1",
            "tool_name": "search",
            "result": ["a", "b"],
            "is_error": False,
        },
        {"type": "source", "source_id": "s1", "url": None, "title": None},
        {
            "type": "file",
            "file_id": "f1",
            "filename": "a.pdf",
            "mime_type": "application/pdf",
            "size_bytes": 2**64 - 1,
        },
        {"type": "image", "image_id": "i1", "url": "https://x/y.png", "alt_text": None},
        {"type": "code", "language": None, "code": "x = 1"},
    ],
    "created_at": "2024-05-06T07:08:09.123456Z",
    "updated_at": "2024-05-06T07:08:10Z",
    "deleted_at": None,
    "metadata": {
        "completed_at": -(2**63),
        "duration_ms": 0,
        "model": "m",
        "provider": None,
        "token_usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        "stats": {
            "llm_calls": 1,
            "tool_calls": 1,
            "sub_agents": 0,
            "steps": 2,
            "decisions": 0,
            "artifacts": 2**32 - 1,
        },
        "finish_reason": "tool_calls",
        "cost": {"input_cost": 0.0, "output_cost": 0.5, "total_cost": 0.5, "currency": "USD"},
    },
}


SERDE_REJECTS: list[tuple[tuple[str, ...], object]] = [
    (("metadata", "token_usage", "prompt_tokens"), 1.0),
    (("metadata", "completed_at"), 1.0),
    (("metadata", "duration_ms"), 2.0),
    (("metadata", "token_usage", "total_tokens"), True),
    (("metadata", "token_usage", "total_tokens"), "3"),
    (("metadata", "token_usage", "prompt_tokens"), -1),
    (("metadata", "token_usage", "prompt_tokens"), 2**32),
    (("metadata", "duration_ms"), -1),
    (("metadata", "duration_ms"), 2**64),
    (("metadata", "completed_at"), 2**63),
    (("metadata", "cost", "input_cost"), "0.5"),
    (("metadata", "finish_reason"), "Stop"),
    (("role",), "User"),
    (("parent_type",), "tool-call"),
    (("content",), 5),
    (("created_at",), 1715000000),
    (("created_at",), "2024-05-06T07:08:09"),
    (("created_at",), "2024-05-06"),
]


BAD_PARTS: list[dict[str, Any]] = [
    {"type": "video", "video_id": "v"},
    {"text": "no tag"},
    {"type": "Text", "text": "wrong case"},
    {"type": "tool_call", "tool_call_id": "t", "tool_name": "n", "args": None},
    {"type": "tool-result", "tool_call_id": "t", "tool_name": "n", "result": 1, "is_error": 1},
    {"type": "file", "file_id": "f", "filename": "a", "mime_type": "b", "size_bytes": 1.0},
]


# --- replicas of the query service ---------------------------------------------------------

REPLICA_STARTED = "serving projection of stream "
REPLICA_START_WITHIN = 60.0
"""Seconds a replica may take to fold and register, on a loaded machine."""


class Replicas:
    """Replica processes of one stream: start them, kill one, stop them all by pid."""

    def __init__(self, url: str, settings: StreamSettings) -> None:
        self.url = url
        self.settings = settings
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, *args: str) -> subprocess.Popen[str]:
        """Start a replica and return once it serves (its partitions caught up)."""
        process = start_convlog(
            "serve",
            "--nats-url",
            self.url,
            "--stream",
            self.settings.name,
            "--subject-prefix",
            self.settings.subject_prefix,
            "--interval",
            "3600",
            *args,
        )
        self.processes.append(process)
        OutputLines(process).until(REPLICA_STARTED, time.monotonic() + REPLICA_START_WITHIN)
        return process

    async def start_many(self, count: int, *args: str) -> None:
        """Start ``count`` replicas at once."""
        await asyncio.gather(*(asyncio.to_thread(self.start, *args) for _ in range(count)))

    def kill(self, process: subprocess.Popen[str]) -> None:
        """SIGKILL one replica and reap it."""
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM every replica still running; kill any that does not stop."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            with contextlib.suppress(Exception):
                process.wait(timeout=30)
            ended(process)


def stream_settings_of(partitions: int) -> StreamSettings:
    """Settings of a stream of its own: unique name and prefix, ``partitions`` partitions."""
    token = uuid7().hex[-12:]
    return StreamSettings(name=f"S{token}", subject_prefix=f"s{token}", partitions=partitions)


async def new_stream(
    url: str, partitions: int, settings: StreamSettings | None = None
) -> StreamSettings:
    """Create a stream of this test's own with ``partitions`` partitions."""
    settings = settings or stream_settings_of(partitions)
    log = await EventLog.connect(url, stream=settings)
    await log.close()
    return settings


def node_with_packages(project: Path, installed: Path) -> str:
    """Node.js, with ``project``'s npm packages installed from its lockfile if ``installed``
    (a path npm ci makes) is missing; fails the test, saying how, without node and npm."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail(
            f"node and npm are needed for {project.name} and are not on PATH: install them "
            f"(`apt-get install nodejs npm`, as .ci/run does), then `npm ci` in {project}"
        )
    if not installed.exists():
        done = subprocess.run(  # noqa: S603 - npm, fixed arguments
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}{done.stderr}"
    return node
