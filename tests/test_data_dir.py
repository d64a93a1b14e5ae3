"""One nats-server per data dir: commands sharing a --data-dir share its log and lose nothing.

Each test runs real ``convlog`` processes on one data dir while this process writes to the
log they share, samples how many nats-servers run on that dir, and checks afterwards, on
the store files alone, that every acknowledged event is there exactly once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from typing import TYPE_CHECKING

import nats
import pytest
from helpers import (
    OutputLines,
    ServerCounter,
    ended,
    is_running,
    nats_servers_on,
    run_convlog,
    start_convlog,
    until_acknowledged,
    wait_gone,
)

from eventlog import EmbeddedNats, EmbeddedServerError, Message, TenantId, Thread, ThreadId, UserId
from projections import JetStreamMessageStore
from projections.commands import utc_now

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

SERVE_STARTED = "serving projection of stream CONVLOG at "


def server_pid(data_dir: Path) -> int:
    """The pid ``server.json`` names for the data dir's running server."""
    return int(json.loads((data_dir / "server.json").read_text(encoding="utf-8"))["pid"])


def serve(data_dir: Path) -> tuple[subprocess.Popen[str], OutputLines, str]:
    """Start ``convlog serve`` on ``data_dir``; return it, its output and the URL it serves."""
    process = start_convlog("serve", "--data-dir", str(data_dir), "--interval", "0.5")
    lines = OutputLines(process)
    url = lines.until(SERVE_STARTED, time.monotonic() + 60).removeprefix(SERVE_STARTED)
    return process, lines, url


class Writer:
    """Writes messages to one thread through its own store, keeping the ids acknowledged."""

    def __init__(self, store: JetStreamMessageStore) -> None:
        self.store = store
        now = utc_now()
        self.thread = Thread(
            id=ThreadId.new(),
            tenant_id=TenantId.from_string("writer"),
            user_id=UserId.from_string("w"),
            title="shared data dir",
            created_at=now,
            updated_at=now,
        )
        self.acknowledged: list[str] = []
        self._acked = asyncio.Condition()

    @classmethod
    async def connect(cls, url: str) -> Writer:
        writer = cls(await JetStreamMessageStore.connect(url))
        await writer.store.create_thread(writer.thread)
        return writer

    async def write(self, count: int | None = None, *, until: asyncio.Event | None = None) -> None:
        """Write ``count`` messages (or until ``until`` is set), each retried until acked."""
        while (count is None or len(self.acknowledged) < count) and not (until and until.is_set()):
            message = Message.user(self.thread.id, f"message {len(self.acknowledged)}")
            await until_acknowledged(
                lambda m=message: self.store.create_message(m), self.store.log.connection
            )
            async with self._acked:
                self.acknowledged.append(message.id)
                self._acked.notify_all()

    async def written(self, count: int) -> None:
        """Return once at least ``count`` messages are acknowledged."""
        async with self._acked:
            await self._acked.wait_for(lambda: len(self.acknowledged) >= count)


async def assert_log_holds(data_dir: Path, writer: Writer, *, demo_threads: int = 0) -> None:
    """On the data dir alone: the stream starts at 1 and holds every acked event once."""
    assert nats_servers_on(data_dir) == [], "a nats-server still runs on the data dir"
    async with EmbeddedNats(data_dir=data_dir) as url:
        store = await JetStreamMessageStore.connect(url)
        async with store:
            info = await store.log.jetstream.stream_info("CONVLOG")
            assert info.state.first_seq == 1
            messages = await store.list_messages(writer.thread.id)
            assert [m.id for m in messages] == writer.acknowledged
            demos = await store.list_threads("acme", "alice", 100, 0)
            assert len(demos) == demo_threads
            expected = 1 + len(writer.acknowledged) + 4 * demo_threads
            assert info.state.messages == expected
            assert info.state.last_seq == expected


async def assert_commands_see_the_live_log(data_dir: Path, writer: Writer) -> None:
    """`tail`, `history` and `verify` on serve's data dir read serve's log, as it is now."""
    events = 1 + len(writer.acknowledged)
    dir_args = ("--data-dir", str(data_dir))
    thread = ("--thread", writer.thread.id)
    tail = await asyncio.to_thread(
        run_convlog, "tail", *dir_args, *thread, "--from", "1", "--no-follow", "--json", timeout=120
    )
    assert tail.returncode == 0, tail.stderr
    assert len(tail.stdout.splitlines()) == events
    history = await asyncio.to_thread(
        run_convlog, "history", *dir_args, *thread, "--json", timeout=120
    )
    assert history.returncode == 0, history.stderr
    assert len(json.loads(history.stdout)["entries"]) == events
    verify = await asyncio.to_thread(run_convlog, "verify", *dir_args, *thread, timeout=120)
    assert verify.returncode == 0, verify.stderr
    assert f"{events} events" in verify.stdout


async def test_serve_then_stats_show_the_live_log_and_lose_nothing(tmp_path: Path) -> None:
    """`stats` on serve's data dir attaches to serve's server: live counts, nothing lost."""
    with ServerCounter(tmp_path) as servers:
        process, _, url = serve(tmp_path)
        try:
            writer = await Writer.connect(url)
            writing = asyncio.create_task(writer.write(600))
            counts = []
            for _ in range(3):
                await writer.written(len(counts) * 100 + 50)
                before = len(writer.acknowledged)
                result = await asyncio.to_thread(
                    run_convlog, "stats", "--data-dir", str(tmp_path), "--json", timeout=120
                )
                assert result.returncode == 0, result.stderr
                counts.append(json.loads(result.stdout)["messages"])
                assert counts[-1] >= before
            await writing
            await writer.store.close()
            await assert_commands_see_the_live_log(tmp_path, writer)
            process.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(process.wait, 60) == 0
        finally:
            ended(process)
    assert servers.most == 1
    assert len(servers.pids) == 1
    await assert_log_holds(tmp_path, writer)


async def test_two_serves_share_one_server_and_hand_it_over(tmp_path: Path) -> None:
    """A second serve attaches; when the first stops, the second takes the server over."""
    with ServerCounter(tmp_path) as servers:
        first, _, url = serve(tmp_path)
        second, _, second_url = serve(tmp_path)
        second_err = OutputLines(second, stderr=True)
        try:
            assert second_url == url
            writer = await Writer.connect(url)
            handed_over = asyncio.Event()
            writing = asyncio.create_task(writer.write(until=handed_over))
            await writer.written(50)
            owner_pid = server_pid(tmp_path)
            first.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(first.wait, 60) == 0
            took_over = await asyncio.to_thread(
                second_err.until, "convlog: the nats-server", time.monotonic() + 60
            )
            written = len(writer.acknowledged)
            await writer.written(written + 50)  # writes go on through the hand-over
            handed_over.set()
            await writing
            assert server_pid(tmp_path) != owner_pid
            assert is_running(server_pid(tmp_path))
            await writer.store.close()
            second.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(second.wait, 60) == 0
        finally:
            ended(first)
            ended(second)
    assert f"the nats-server (pid {owner_pid}) on {tmp_path} ended; started it again" in took_over
    assert servers.most == 1
    assert len(servers.pids) == 2
    await assert_log_holds(tmp_path, writer)


async def test_six_concurrent_demos_share_one_server(tmp_path: Path) -> None:
    """Six demos racing to start a server on one dir: one server, six demos, all events kept."""
    with ServerCounter(tmp_path) as servers:
        demos = [start_convlog("demo", "--data-dir", str(tmp_path)) for _ in range(6)]
        try:
            embedded = EmbeddedNats(data_dir=tmp_path, linger=60)
            async with embedded as url:
                supervisor = asyncio.create_task(embedded.keep_running(print))
                writer = await Writer.connect(url)
                await writer.write(200)
                await writer.store.close()
                codes = [await asyncio.to_thread(demo.wait, 120) for demo in demos]
                supervisor.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await supervisor
        finally:
            outputs = [ended(demo) for demo in demos]
    assert codes == [0] * 6, outputs
    for out, _ in outputs:
        assert "rebuilt view matches: yes" in out
        assert f"the log is kept in {tmp_path}" in out
    assert servers.most == 1
    await assert_log_holds(tmp_path, writer, demo_threads=6)


async def test_serve_restarts_its_server_after_sigkill(tmp_path: Path) -> None:
    """serve's embedded server killed with SIGKILL is restarted; no acked event is lost."""
    process, _, url = serve(tmp_path)
    try:
        writer = await Writer.connect(url)
        writing = asyncio.create_task(writer.write(400))
        await writer.written(100)
        killed = server_pid(tmp_path)
        os.kill(killed, signal.SIGKILL)
        await writing
        assert server_pid(tmp_path) != killed
        await writer.store.close()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 60) == 0
    finally:
        _, err = ended(process)
    assert f"the nats-server (pid {killed}) on {tmp_path} exited with code -9" in err
    await assert_log_holds(tmp_path, writer)


EXIT_CODES = {
    ("serve", signal.SIGTERM): 0,
    ("serve", signal.SIGINT): 0,
    ("tail", signal.SIGTERM): 143,
    ("tail", signal.SIGINT): 130,
}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
@pytest.mark.parametrize("command", ["serve", "tail"])
async def test_no_server_outlives_its_command(
    tmp_path: Path, command: str, signum: signal.Signals
) -> None:
    """However the command that started it ends, its nats-server ends too.

    On SIGINT and SIGTERM the command stops it itself, at once (no client of its own is
    left to wait for); on SIGKILL the kernel's parent-death signal does.
    """
    process = start_convlog(command, "--data-dir", str(tmp_path), "-v")
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "server.json").exists():
            assert process.poll() is None, ended(process)
            assert time.monotonic() < deadline, "the command never started its server"
            await asyncio.sleep(0.02)  # another process's file: nothing to await
        pid = server_pid(tmp_path)
        assert is_running(pid)
        process.send_signal(signum)
        code = await asyncio.to_thread(process.wait, 60)
        if signum != signal.SIGKILL:  # the command stopped its server before it ended
            assert not is_running(pid)
            assert not (tmp_path / "server.json").exists()
    finally:
        _, err = ended(process)
    assert code == EXIT_CODES.get((command, signum), -signal.SIGKILL), err
    assert "other client(s)" not in err
    await asyncio.to_thread(wait_gone, pid, 30)
    assert nats_servers_on(tmp_path) == []


async def test_a_take_over_keeps_the_owners_settings(tmp_path: Path) -> None:
    """An attached process that takes a data dir over restarts the server as it was."""
    owner = await EmbeddedNats(data_dir=tmp_path, max_payload=4 * 1024 * 1024).start()
    attached = await EmbeddedNats(data_dir=tmp_path, sync_always=False).start()
    restarted = asyncio.Event()
    supervisor = asyncio.create_task(attached.keep_running(lambda _: restarted.set()))
    try:
        await owner.stop()
        await restarted.wait()
        assert attached.owner
        assert attached.url == owner.url
        config = (tmp_path / "nats-server.conf").read_text(encoding="utf-8")
        assert "max_payload: 4194304" in config
        assert "sync_interval: always" in config
    finally:
        supervisor.cancel()
        with pytest.raises(asyncio.CancelledError):
            await supervisor
        await attached.stop()
    assert nats_servers_on(tmp_path) == []


async def test_a_cancelled_stop_still_stops_the_server(tmp_path: Path) -> None:
    """Cancelling stop() while it waits for other clients cuts the wait, not the stop."""
    owner = await EmbeddedNats(data_dir=tmp_path, linger=60).start()
    pid = owner.pid
    assert pid is not None
    other = start_convlog("tail", "--nats-url", owner.url)  # a client of another process
    await other_clients(owner, 1)
    lingering = asyncio.Event()

    class Lingering(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "other client(s)" in record.getMessage():
                lingering.set()

    handler = Lingering()
    logging.getLogger("eventlog.server").addHandler(handler)
    try:
        stopping = asyncio.create_task(owner.stop())
        await lingering.wait()
        stopping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopping
        assert not is_running(pid)
        assert not (tmp_path / "server.json").exists()
        assert nats_servers_on(tmp_path) == []
    finally:
        logging.getLogger("eventlog.server").removeHandler(handler)
        ended(other)


async def test_clients_of_this_process_keep_nobody_waiting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The owner's linger counts other processes' clients only: its own do not hold it."""
    owner = await EmbeddedNats(data_dir=tmp_path, linger=60).start()
    own = await nats.connect(owner.url)
    try:
        assert await other_clients(owner, 0) == 0
        with caplog.at_level("WARNING", logger="eventlog.server"):
            await owner.stop()
        assert "other client(s)" not in caplog.text
        assert nats_servers_on(tmp_path) == []
    finally:
        await own.close()


async def other_clients(server: EmbeddedNats, count: int) -> int:
    """Return once the server counts ``count`` clients of other processes (within 60 s)."""
    running = server._running
    assert running is not None
    deadline = time.monotonic() + 60
    while (found := await asyncio.to_thread(running.other_clients)) != count:
        assert time.monotonic() < deadline, f"{found} other clients, not {count}"
        await asyncio.sleep(0.05)  # another process's connection: nothing to await
    return found


async def test_a_stale_server_file_is_replaced(tmp_path: Path) -> None:
    """A server.json left by a server that died (its lock free) is cleaned up, not trusted."""
    (tmp_path / "server.json").write_text(
        json.dumps({"pid": 999_999_999, "url": "nats://127.0.0.1:1", "port": 1, "monitor_port": 1}),
        encoding="utf-8",
    )
    async with EmbeddedNats(data_dir=tmp_path) as url:
        assert url != "nats://127.0.0.1:1"
        assert server_pid(tmp_path) == nats_servers_on(tmp_path)[0]
    assert not (tmp_path / "server.json").exists()


async def test_a_second_embedded_server_attaches(tmp_path: Path) -> None:
    """In one process too: the second EmbeddedNats on a dir attaches and never stops it."""
    first = await EmbeddedNats(data_dir=tmp_path).start()
    second = EmbeddedNats(data_dir=tmp_path)
    try:
        await second.start()
        assert (first.owner, second.owner) == (True, False)
        assert (second.url, second.pid) == (first.url, first.pid)
        with pytest.raises(EmbeddedServerError, match="only the process that started it"):
            await second.kill()
        await second.stop()
        assert first.pid is not None
        assert is_running(first.pid)
    finally:
        await first.stop()


async def test_racing_starts_are_settled_by_the_lock(tmp_path: Path) -> None:
    """Several starts at once on one dir: exactly one owner, one server, one URL."""
    servers = [EmbeddedNats(data_dir=tmp_path) for _ in range(4)]
    await asyncio.gather(*(server.start() for server in servers))
    try:
        assert [server.owner for server in servers].count(True) == 1
        assert len({server.url for server in servers}) == 1
        assert len(nats_servers_on(tmp_path)) == 1
    finally:
        for server in sorted(servers, key=lambda s: s.owner):
            await server.stop()
    assert nats_servers_on(tmp_path) == []
