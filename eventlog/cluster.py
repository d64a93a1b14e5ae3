"""EmbeddedCluster: a NATS cluster of real nats-server processes on loopback, for R3 streams.

Production keeps the stream in three replicas on a NATS cluster, so that one lost disk or
one dead node loses no acknowledged event. That promise rests on NATS's own Raft, not on
anything of convlog's; what convlog must show is that it keeps its own promises on top
(every acknowledged event kept once, writers back within a bounded time, a node that was
away catching up). This module runs such a cluster on one machine, for the tests, the
benchmarks, and anyone trying R3 locally:

>>> async with EmbeddedCluster() as cluster:  # doctest: +SKIP
...     store = await JetStreamMessageStore.connect(cluster.urls, replicas=3)
...     await (await cluster.stream_leader("CONVLOG")).kill()

Each node is an :class:`~eventlog.server.EmbeddedNats` with a store dir of its own,
``sync_interval: always`` (each node syncs every write to disk, as the single server does), a
``server_name`` (what the API names a leader by) and a cluster block routing to every node.

**Fixed ports, reserved.** Routes must name their peers' ports before any node starts, and
a node restarted after a kill must come back where its peers and clients look for it; so a
cluster takes a block of fixed ports (clients, then routes) outside the kernel's ephemeral
range, where no outgoing connection is ever given one of them. Two clusters on one machine
(parallel test runs) must not take the same block: each holds an exclusive ``flock`` on a
file named after its block for as long as it runs, and a block any of whose ports something
else listens on is passed over. Only each node's monitoring port is left to the server to
pick, anew at each start (:attr:`ClusterNode.monitor_port` reads it).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import random
import socket
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final, Self

import msgspec
import nats
import nats.errors

from eventlog._nats import ApiError
from eventlog.errors import EmbeddedServerError
from eventlog.server import EmbeddedNats, RunningServer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from types import TracebackType

    from nats.aio.client import Client

__all__ = [
    "PORT_BLOCKS",
    "ClusterNode",
    "EmbeddedCluster",
    "StreamCopy",
    "request_step_down",
    "stream_leader",
]

PORT_BLOCKS: Final = range(7000, 10000, 10)
"""The first port of each block a cluster may take: ten ports, at most five nodes."""

_MAX_NODES: Final = 5
_MIN_NODES: Final = 3
"""A cluster of fewer than three cannot keep a stream of three replicas."""
_POLL: Final = 0.1
"""Seconds between looks at the nodes' monitoring endpoints: an election raises no event."""
_ASK: Final = 2.0
"""Seconds one question to a node (monitoring or JetStream API) may take on a loaded machine."""
_UNAVAILABLE: Final = 503


def _ephemeral_ports() -> range:
    """The kernel's ephemeral port range (Linux says where; elsewhere its usual default)."""
    with contextlib.suppress(OSError, ValueError):
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    return range(32768, 61000)


def _free(port: int) -> bool:
    """Whether nothing listens on loopback ``port`` (a socket left in TIME_WAIT does not count).

    nats-server binds with SO_REUSEADDR, and so does this probe: what stops the probe stops
    the server, and a port a stopped cluster just let go is free again.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class _PortBlock:
    """A block of fixed loopback ports, held by an exclusive lock on a file named after it."""

    def __init__(self, base: int, lock: IO[bytes]) -> None:
        self.base = base
        self._lock: IO[bytes] | None = lock

    @classmethod
    def reserve(cls, count: int, base: int | None = None) -> _PortBlock:
        """Take a block of ``count`` ports that no other cluster holds and nothing listens on.

        Blocks are tried from a random one on, so that runs started together spread out.
        """
        if base is not None:
            candidates = [base]
        else:
            start = random.randrange(len(PORT_BLOCKS))  # noqa: S311 - spreading, not secrecy
            candidates = [*PORT_BLOCKS[start:], *PORT_BLOCKS[:start]]
        ephemeral = _ephemeral_ports()
        folder = Path(tempfile.gettempdir()) / f"convlog-cluster-ports-{os.getuid()}"
        folder.mkdir(parents=True, exist_ok=True)
        for first in candidates:
            ports = range(first, first + count)
            if ports.start in ephemeral or ports[-1] in ephemeral:
                continue
            lock = (folder / f"{first}.lock").open("ab")
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            if all(_free(port) for port in ports):
                return cls(first, lock)
            lock.close()
        where = (
            f"ports {base}-{base + count - 1}"
            if base is not None
            else f"ports {PORT_BLOCKS.start}-{PORT_BLOCKS.stop - 1}"
        )
        raise EmbeddedServerError(
            f"no block of {count} free loopback ports at {where} (held by another cluster, "
            "in use, or in the ephemeral range); stop another cluster or pass another port_base"
        )

    def release(self) -> None:
        """Let another cluster take the block (the kernel also lets go when this process ends)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None


# --- what the server answers -------------------------------------------------------------


class _Peer(msgspec.Struct):
    name: str = ""
    current: bool = False
    lag: int = 0


class _ClusterInfo(msgspec.Struct):
    leader: str = ""
    replicas: list[_Peer] | None = None


class _StreamInfoReply(msgspec.Struct):
    cluster: _ClusterInfo | None = None
    error: ApiError | None = None


class _StepDownReply(msgspec.Struct):
    success: bool = False
    error: ApiError | None = None


class StreamCopy(msgspec.Struct, frozen=True, kw_only=True):
    """One node's own copy of a stream, as its monitoring endpoint reports it."""

    messages: int = 0
    first_seq: int = 0
    last_seq: int = 0


class _StreamDetail(msgspec.Struct):
    name: str = ""
    state: StreamCopy = msgspec.field(default_factory=StreamCopy)
    cluster: _ClusterInfo | None = None


class _AccountDetail(msgspec.Struct):
    name: str = ""
    stream_detail: list[_StreamDetail] | None = None


class _MetaCluster(msgspec.Struct):
    leader: str = ""
    cluster_size: int = 0


class _Jsz(msgspec.Struct):
    meta_cluster: _MetaCluster | None = None
    account_details: list[_AccountDetail] | None = None


_STREAM_INFO = msgspec.json.Decoder(_StreamInfoReply)
_STEP_DOWN = msgspec.json.Decoder(_StepDownReply)
_JSZ = msgspec.json.Decoder(_Jsz)
_RUNNING = msgspec.json.Decoder(RunningServer)


async def stream_leader(nc: Client, stream: str, *, within: float = _ASK) -> str | None:
    """The ``server_name`` of ``stream``'s leader; None while it has none (an election).

    Asked through ``$JS.API.STREAM.INFO``, which the leader answers: no answer, or the
    cluster saying it is unavailable, means that there is no leader to answer just now.
    """
    try:
        reply = await nc.request(f"$JS.API.STREAM.INFO.{stream}", b"", timeout=within)
    except nats.errors.Error:  # no answer in time, nobody to answer, reconnecting
        return None
    info = _STREAM_INFO.decode(reply.data)
    if info.error is not None:
        if info.error.code == _UNAVAILABLE:
            return None
        raise EmbeddedServerError(f"cannot find the leader of stream {stream!r}: {info.error}")
    return (info.cluster.leader if info.cluster else "") or None


async def request_step_down(nc: Client, stream: str, *, within: float = _ASK) -> None:
    """Ask ``stream``'s leader to hand over to another replica (``$JS.API.STREAM.LEADER.STEPDOWN``).

    The new leader is elected after this returns; raises EmbeddedServerError if refused.
    """
    try:
        reply = await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", b"", timeout=within)
    except nats.errors.Error as err:
        raise EmbeddedServerError(f"the step-down of stream {stream!r} got no answer") from err
    answer = _STEP_DOWN.decode(reply.data)
    if answer.error is not None or not answer.success:
        raise EmbeddedServerError(f"the leader of stream {stream!r} did not step down: {answer}")


class _Answer(msgspec.Struct):
    error: ApiError | None = None


_ANSWER = msgspec.json.Decoder(_Answer)


@contextlib.asynccontextmanager
async def _client(urls: list[str]) -> AsyncIterator[Client]:
    """A connection of its own to ``urls``, closed on exit; it rides out nodes going away."""

    async def quiet(_: Exception) -> None:
        """A node killed under the connection is expected here, not worth a log line."""

    nc = await nats.connect(
        urls,
        connect_timeout=int(_ASK),
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.25,
        error_cb=quiet,
    )
    try:
        yield nc
    finally:
        await nc.close()


async def _get(url: str) -> tuple[int, bytes]:
    """The status and body of a monitoring request (an error status has a body too)."""

    def fetch() -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(url, timeout=_ASK) as reply:  # noqa: S310 - our own loopback http://
                return int(reply.status), bytes(reply.read())
        except urllib.error.HTTPError as err:
            with err:
                return err.code, bytes(err.read())

    return await asyncio.to_thread(fetch)


class ClusterNode:
    """One nats-server of an :class:`EmbeddedCluster`: kill it, stop it, start it again.

    It always comes back on the same client and route ports and the same store, as a node
    replaced in production comes back with its disk: what it missed it catches up from the
    others.
    """

    def __init__(self, name: str, client_port: int, route_port: int, server: EmbeddedNats) -> None:
        self.name = name
        """Its ``server_name``: what stream info names a leader by."""
        self.client_port = client_port
        self.route_port = route_port
        self.server = server
        self.server.port = client_port  # fixed before it first starts: clients know it already

    def __repr__(self) -> str:
        return f"<ClusterNode {self.name} {self.url} pid={self.pid}>"

    @property
    def url(self) -> str:
        """Its client URL, ``nats://127.0.0.1:<client_port>``."""
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs; None once killed or stopped."""
        return self.server.pid

    @property
    def running(self) -> bool:
        """Whether it was started and has not been killed or stopped since."""
        return self.pid is not None

    @property
    def monitor_port(self) -> int:
        """The port of its monitoring endpoint (a new one each start: the server picks it)."""
        try:
            running = _RUNNING.decode((self.server.data_dir / "server.json").read_bytes())
        except (OSError, msgspec.DecodeError) as err:
            raise EmbeddedServerError(f"node {self.name} does not run") from err
        if running.pid != self.pid:
            raise EmbeddedServerError(f"node {self.name} does not run")
        return running.monitor_port

    async def start(self) -> None:
        """Start it (again) on the same ports and store; what it missed it catches up on.

        It returns once the server listens; :meth:`wait_healthy` waits until it has rejoined,
        and :meth:`stream_copy` tells how far its copy of a stream has caught up.
        """
        await self.server.start()

    async def kill(self) -> None:
        """SIGKILL it, as a crash or a pulled plug would: nothing is flushed or handed over."""
        await self.server.kill()

    async def terminate(self) -> None:
        """SIGTERM it, as an orchestrator stops a pod, and wait until it has exited.

        A stopping nats-server steps down from the leaderships it holds, so the others need
        not wait out an election timeout as after a crash (SIGKILL if it takes over 10 s).
        """
        await self.server.stop()

    async def monitor(self, path: str) -> tuple[int, bytes]:
        """GET ``path`` (e.g. ``/jsz?streams=true``) on its monitoring endpoint: status, body."""
        return await _get(f"http://127.0.0.1:{self.monitor_port}{path}")

    async def healthy(self) -> bool:
        """Whether its ``/healthz`` says ok: it knows the meta leader and runs its streams.

        A restarted node says so once it has rejoined; the records it missed may still be on
        their way into its store (:meth:`stream_copy` tells).
        """
        try:
            status, _ = await self.monitor("/healthz")
        except (OSError, EmbeddedServerError):
            return False
        return status == 200  # noqa: PLR2004 - HTTP OK

    async def wait_healthy(self, within: float = 60.0) -> None:
        """Return once :meth:`healthy` and the JetStream API answers on it.

        EmbeddedServerError after ``within`` seconds.
        """

        async def ready() -> bool:
            return await self.healthy() and await self.jetstream_answers()

        await _until(ready, within, f"node {self.name} was not healthy")

    async def jetstream_answers(self) -> bool:
        """Whether the JetStream API answers a client of this node (``$JS.API.INFO``).

        A meta leader elected is not yet a JetStream that takes requests everywhere.
        """
        try:
            async with _client([self.url]) as nc:
                reply = await nc.request("$JS.API.INFO", b"", timeout=_ASK)
        except (OSError, nats.errors.Error):
            return False
        return _ANSWER.decode(reply.data).error is None

    async def meta_leader(self) -> str | None:
        """The meta leader this node knows of, by name; None if none (or it does not answer)."""
        jsz = await self._jsz("/jsz")
        meta = jsz.meta_cluster if jsz is not None else None
        return (meta.leader or None) if meta is not None else None

    async def stream_copy(self, stream: str, account: str = "$G") -> StreamCopy | None:
        """The node's own copy of ``stream``: what it stores, not what the leader says.

        None if it holds no copy (yet) or does not answer. A direct get could be answered by
        any replica, so the monitoring endpoint is the way to look at one node's store.
        """
        jsz = await self._jsz("/jsz?accounts=true&streams=true")
        for detail in (jsz.account_details or []) if jsz is not None else []:
            if detail.name != account:
                continue
            for found in detail.stream_detail or []:
                if found.name == stream:
                    return found.state
        return None

    async def _jsz(self, path: str) -> _Jsz | None:
        try:
            status, body = await self.monitor(path)
        except (OSError, EmbeddedServerError):
            return None
        if status != 200:  # noqa: PLR2004 - HTTP OK
            return None
        return _JSZ.decode(body)


async def _until(check: Callable[[], Awaitable[bool]], within: float, failed: str) -> None:
    """Poll ``check`` until it holds; EmbeddedServerError saying ``failed`` after ``within``."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise EmbeddedServerError(f"{failed} within {within}s")
        await asyncio.sleep(_POLL)


def _route_config(name: str, cluster: str, route_port: int, routes: list[int]) -> str:
    listed = "".join(f"    nats-route://127.0.0.1:{port}\n" for port in routes)
    return (
        f"server_name: {name}\n"
        "cluster {\n"
        f"  name: {cluster}\n"
        f"  listen: 127.0.0.1:{route_port}\n"
        f"  routes: [\n{listed}  ]\n"
        "}\n"
    )


class EmbeddedCluster:
    """``size`` nats-servers clustered on loopback, each with JetStream and a store of its own.

    ``start()`` (or ``async with``) returns once the nodes agree on a meta leader and
    JetStream answers on each, so that a stream can be made at once. ``urls`` are the nodes'
    client URLs, for clients to be given all of them; ``nodes`` kill, stop and start single
    nodes; :meth:`stream_leader` and :meth:`step_down` find and move a stream's leader.
    ``data_dir`` keeps the stores (one folder per node); without it a temporary directory is
    used and removed when the ``async with`` ends.
    ``port_base`` pins the port block (clients from it, routes after them); None takes a free
    block of :data:`PORT_BLOCKS`.
    """

    def __init__(
        self,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        size: int = 3,
        name: str = "convlog",
        port_base: int | None = None,
        sync_always: bool = True,
        startup_timeout: float = 60.0,
        extra_config: str = "",
    ) -> None:
        if not _MIN_NODES <= size <= _MAX_NODES:
            raise EmbeddedServerError(
                f"a cluster has {_MIN_NODES} to {_MAX_NODES} nodes, not {size}"
            )
        self._temp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._temp = tempfile.TemporaryDirectory(prefix="convlog-cluster-")
            data_dir = self._temp.name
        self.data_dir = Path(data_dir)
        self.size = size
        self.name = name
        self._port_base = port_base
        self._sync_always = sync_always
        self._startup_timeout = startup_timeout
        self._extra_config = extra_config
        self._ports: _PortBlock | None = None
        self.nodes: list[ClusterNode] = []
        """The nodes, ``n0`` to ``n<size-1>``, once started."""

    @property
    def urls(self) -> list[str]:
        """Every node's client URL, running or not: give a client all of them."""
        if not self.nodes:
            raise EmbeddedServerError("the cluster has not been started")
        return [node.url for node in self.nodes]

    @property
    def running(self) -> list[ClusterNode]:
        """The nodes running now."""
        return [node for node in self.nodes if node.running]

    def node(self, name: str) -> ClusterNode:
        """The node whose ``server_name`` is ``name``."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise EmbeddedServerError(f"the cluster has no node {name!r}")

    async def __aenter__(self) -> Self:
        try:
            return await self.start()
        except BaseException:
            self._cleanup()
            raise

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
        """Remove the temporary data dir, if the cluster made one (``async with`` does)."""
        if self._temp is not None:
            self._temp.cleanup()

    def _reserve(self) -> None:
        """Take the port block, and make the nodes on it the first time.

        Started again after a stop, the cluster takes the same block back: its nodes' ports
        are in their peers' routes and in its clients' URLs.
        """
        if self._ports is not None:
            return
        again = self.nodes[0].client_port if self.nodes else self._port_base
        self._ports = _PortBlock.reserve(2 * self.size, again)
        if self.nodes:
            return
        base = self._ports.base
        routes = [base + self.size + index for index in range(self.size)]
        for index in range(self.size):
            name = f"n{index}"
            server = EmbeddedNats(
                data_dir=self.data_dir / name,
                sync_always=self._sync_always,
                startup_timeout=self._startup_timeout,
                extra_config=_route_config(name, self.name, routes[index], routes)
                + self._extra_config,
            )
            self.nodes.append(ClusterNode(name, base + index, routes[index], server))

    async def start(self) -> Self:
        """Start every node not running; return once they agree on a meta leader and answer.

        Then a client of any node can make a stream at once.
        """
        try:
            self._reserve()
            await asyncio.gather(*(node.start() for node in self.nodes if not node.running))
            await self.wait_meta_leader(self._startup_timeout)
            await self.wait_healthy(self._startup_timeout)
        except BaseException:
            await self.stop()
            raise
        return self

    async def stop(self) -> None:
        """Stop every node (SIGTERM to its pid, SIGKILL if it lingers) and free the ports.

        ``start()`` starts it again on the same ports and stores.
        """
        try:
            ended = await asyncio.gather(
                *(node.terminate() for node in self.nodes), return_exceptions=True
            )
        finally:
            if self._ports is not None:
                self._ports.release()
                self._ports = None
        for failure in ended:  # each node was stopped, or tried, before any failure is raised
            if isinstance(failure, BaseException):
                raise failure

    async def wait_meta_leader(self, within: float = 60.0) -> ClusterNode:
        """Return the meta leader once every running node names the same running one.

        Only then does the JetStream API answer on every node: streams can be made.
        """
        leader: list[ClusterNode] = []

        async def agreed() -> bool:
            named = {await node.meta_leader() for node in self.running}
            if len(named) != 1 or None in named:
                return False
            found = self.node(str(named.pop()))
            leader[:] = [found]
            return found.running

        await _until(agreed, within, "the cluster's nodes did not agree on a meta leader")
        return leader[0]

    async def wait_healthy(self, within: float = 60.0) -> None:
        """Return once every running node is healthy (its copies current) and answers."""
        await asyncio.gather(*(node.wait_healthy(within) for node in self.running))

    def _client(self) -> contextlib.AbstractAsyncContextManager[Client]:
        """A connection of its own to the running nodes, for questions to the JetStream API."""
        return _client([node.url for node in self.running] or self.urls)

    async def stream_leader(self, stream: str, *, within: float = 60.0) -> ClusterNode:
        """The node that leads ``stream``, once it has a leader (within ``within`` seconds)."""
        async with self._client() as nc:
            return await self._elected(nc, stream, within, not_of=None)

    async def step_down(self, stream: str, *, within: float = 60.0) -> ClusterNode:
        """Have ``stream``'s leader hand over; return the new leader once it is elected."""
        async with self._client() as nc:
            old = await self._elected(nc, stream, within, not_of=None)
            await request_step_down(nc, stream)
            return await self._elected(nc, stream, within, not_of=old)

    async def _elected(
        self, nc: Client, stream: str, within: float, *, not_of: ClusterNode | None
    ) -> ClusterNode:
        deadline = time.monotonic() + within
        while True:
            name = await stream_leader(nc, stream)
            if name is not None and (not_of is None or name != not_of.name):
                return self.node(name)
            if time.monotonic() > deadline:
                raise EmbeddedServerError(
                    f"stream {stream!r} had no new leader within {within}s"
                    if not_of is not None
                    else f"stream {stream!r} had no leader within {within}s"
                )
            await asyncio.sleep(_POLL)
