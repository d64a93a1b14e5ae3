"""The examples in examples/ run, as a user runs them, against a real ``convlog serve``.

This module starts its own nats-server with JetStream and the ``mappings`` block of
deploy/nats-server.conf (the server docker-compose.yml runs), writes threads through
JetStreamMessageStore, and starts ``convlog serve --nats-url`` (stopped by its pid at the
end). The TypeScript example runs under tsx with Node.js: node and npm must be installed
(``.ci/run`` installs them where they are missing); without them these tests fail, they are
never skipped. ``npm ci`` runs here when examples/typescript has no node_modules yet.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import OutputLines, ended, node_with_packages, start_convlog

from eventlog import EmbeddedNats, ExecutionId, Message, StreamSettings, Thread
from eventlog.stream import DEFAULT_PARTITIONS
from eventlog.subjects import encode_token, partition_of
from projections import JetStreamMessageStore
from projections.service.protocol import ServiceSubjects

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DEPLOY = ROOT / "deploy"
TYPESCRIPT = EXAMPLES / "typescript"
TSX = TYPESCRIPT / "node_modules" / ".bin" / "tsx"
TSC = TYPESCRIPT / "node_modules" / ".bin" / "tsc"
RUN_WITHIN = 60.0
"""Seconds an example may take to run (node's start and tsx's compile included), loaded."""
START_WITHIN = 60.0
"""Seconds ``convlog serve`` may take to fold the stream and register, loaded."""

STREAM = StreamSettings().name
"""The default stream, CONVLOG: what the examples ask for unless told otherwise."""
UNSAFE_ID = "thread: Zürich/ü"
"""A thread id that is no subject token: clients send it as ``_`` + base32 of its UTF-8."""


@dataclass(frozen=True)
class Written:
    """The threads written before the replica started."""

    plain: Thread
    unsafe: Thread


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """A server of this module's own, with the mappings that docker-compose.yml's server has."""
    server = EmbeddedNats(
        data_dir=tmp_path_factory.mktemp("examples"), extra_config=_deployed_mappings()
    )
    asyncio.run(server.start())
    try:
        yield server
    finally:
        asyncio.run(server.stop())


def _deployed_mappings() -> str:
    """The ``mappings`` block of deploy/nats-server.conf."""
    config = (DEPLOY / "nats-server.conf").read_text(encoding="utf-8")
    found = re.search(r"^mappings \{\n.*?^\}\n", config, re.MULTILINE | re.DOTALL)
    assert found is not None, "deploy/nats-server.conf has no mappings block"
    return found.group(0)


async def _write(url: str) -> Written:
    async with await JetStreamMessageStore.connect(url) as store:
        plain = Thread.new("acme", "alice").model_copy(update={"title": "Weather in Paris"})
        await store.create_thread(plain)
        await store.create_message(Message.system(plain.id, "You are a weather assistant."))
        question = Message.user(plain.id, "What's the weather in Paris?")
        await store.create_message(question)
        await store.create_message(
            Message.assistant(plain.id, ExecutionId.new(), "Sunny, 18 °C.", question.id)
        )
        retracted = Message.user(plain.id, "Never mind.")
        await store.create_message(retracted)
        await store.delete_message(retracted.id)

        unsafe = Thread.with_id(UNSAFE_ID, "acme", "bob")
        await store.create_thread(unsafe)
        await store.create_message(Message.user(unsafe.id, "Grüezi!"))
    return Written(plain, unsafe)


@pytest.fixture(scope="module")
def written(server: EmbeddedNats) -> Written:
    return asyncio.run(_write(server.url))


@pytest.fixture(scope="module")
def replica(server: EmbeddedNats, written: Written) -> Iterator[str]:  # noqa: ARG001 - order
    """A ``convlog serve`` of every partition, started once the threads are written."""
    process = start_convlog("serve", "--nats-url", server.url, "--interval", "3600")
    lines = OutputLines(process)
    try:
        lines.until(
            f"serving projection of stream {STREAM} at {server.url}", _deadline(START_WITHIN)
        )
        yield server.url
        os.kill(process.pid, signal.SIGTERM)
        lines.until("stopped", _deadline(30.0))
        process.wait(timeout=30)
    finally:
        _, err = ended(process)  # kills it if it still runs (a failed start)
    assert process.returncode == 0, err
    assert "does not route thread subjects" not in err, err


@pytest.fixture(scope="module")
def node() -> str:
    """Node.js, and examples/typescript's packages installed from its lockfile."""
    return node_with_packages(TYPESCRIPT, TSX)


def _deadline(seconds: float) -> float:
    return time.monotonic() + seconds


def _run(
    *command: str | Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "CONVLOG_STREAM")}
    return subprocess.run(  # noqa: S603 - our examples, fixed arguments
        [str(part) for part in command],
        cwd=cwd,
        env={**environment, **(env or {})},
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=RUN_WITHIN,
        check=False,
    )


def list_messages(
    thread_id: str, url: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``npx tsx list-messages.ts THREAD_ID URL`` in examples/typescript."""
    return _run(TSX, "list-messages.ts", thread_id, url, cwd=TYPESCRIPT, env=env)


@pytest.mark.usefixtures("node")
def test_typescript_example_lists_a_threads_messages(replica: str, written: Written) -> None:
    """The example prints the thread and its live messages, in log order, and exits 0."""
    thread = written.plain
    done = list_messages(thread.id, replica)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"thread {thread.id} (Weather in Paris) of tenant acme",
        "[system] You are a weather assistant.",
        "[user] What's the weather in Paris?",
        "[assistant] Sunny, 18 °C.",
    ]
    assert done.stderr == ""


@pytest.mark.usefixtures("node")
def test_typescript_example_encodes_an_id_that_is_no_token(replica: str, written: Written) -> None:
    """An id with spaces, ':', '/' and non-ASCII reaches its partition, encoded as Python does.

    The server hashes the token it is sent: spelt otherwise than encode_token spells it
    (upper case, padded, unmarked), this id's token lands on another partition, which has
    no such thread.
    """
    thread = written.unsafe
    token = encode_token(thread.id)
    near_misses = [token.upper(), f"{token}===", token.removeprefix("_")]
    right = partition_of(token, DEFAULT_PARTITIONS)
    assert all(partition_of(miss, DEFAULT_PARTITIONS) != right for miss in near_misses)
    done = list_messages(thread.id, replica)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"thread {UNSAFE_ID} (untitled) of tenant acme",
        "[user] Grüezi!",
    ]


@pytest.mark.usefixtures("node")
def test_typescript_example_reports_an_error_reply(replica: str) -> None:
    """An unknown thread is a 404 error reply: code and description on stderr, exit 1."""
    done = list_messages("thread_no-such-thread", replica)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert done.stderr.startswith("error 404 (NotFoundError): "), done.stderr
    assert "thread_no-such-thread" in done.stderr


@pytest.mark.usefixtures("node")
def test_typescript_example_reports_no_replica(replica: str) -> None:
    """A stream no replica serves gets "no responders" at once: said so, exit 1."""
    done = list_messages("thread_x", replica, env={"CONVLOG_STREAM": "NOBODY"})
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr == (
        "error: no convlog replica serves stream NOBODY: is convlog serve running?\n"
    )


@pytest.mark.usefixtures("node")
def test_typescript_example_type_checks() -> None:
    """``tsc --noEmit``: the example is typed against the nats.js it installs."""
    checked = _run(TSC, "--noEmit", "-p", ".", cwd=TYPESCRIPT)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.usefixtures("node")
def test_python_remote_store_example(replica: str) -> None:
    """remote_store.py writes and reads through the service; the TS example then lists it."""
    done = _run(sys.executable, EXAMPLES / "python" / "remote_store.py", replica, cwd=EXAMPLES)
    assert done.returncode == 0, done.stderr
    *messages, count, thread = done.stdout.splitlines()
    assert messages == ["[user] What's the weather in Paris?", "[assistant] Sunny, 18 °C."]
    assert count == "messages: 2"
    assert thread.startswith("thread: thread_")
    thread_id = thread.removeprefix("thread: ")

    listed = list_messages(thread_id, replica)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [
        f"thread {thread_id} (Weather in Paris) of tenant acme",
        *messages,
    ]


def test_python_embedded_store_example() -> None:
    """embedded_store.py starts its own nats-server, writes, reads, and stops it."""
    done = _run(sys.executable, EXAMPLES / "python" / "embedded_store.py", cwd=EXAMPLES)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "[user] What's the weather in Paris?",
        "[assistant] Sunny, 18 °C.",
        "messages: 2",
    ]


def test_deployed_mappings_are_the_services() -> None:
    """deploy/nats-server.conf routes as the service of stream CONVLOG, 64 partitions, says."""
    assert _deployed_mappings() == ServiceSubjects(STREAM, DEFAULT_PARTITIONS).server_config()


def test_compose_healthcheck(replica: str) -> None:
    """deploy/healthcheck.py: 0 while every partition answers ok; 1 when no replica serves."""
    healthcheck = DEPLOY / "healthcheck.py"
    healthy = _run(sys.executable, healthcheck, replica, cwd=ROOT)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert healthy.stdout.startswith("ok, applied sequence "), healthy.stdout

    unserved = _run(sys.executable, healthcheck, replica, "NOBODY", cwd=ROOT)
    assert unserved.returncode == 1, unserved.stdout + unserved.stderr
    assert unserved.stdout.startswith("unavailable: "), unserved.stdout
