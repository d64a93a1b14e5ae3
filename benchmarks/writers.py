"""Many writers: writer processes on one stream, one reader folding everything, and where it limits.

Ours: ``processes`` writer processes, each its own :class:`JetStreamMessageStore` on the same
stream of one nats-server that fsyncs every append, each running ``tasks`` concurrent
writer tasks that call ``create_message`` on threads of its own (:func:`store_writes`, its
read-your-writes check and count check included). Each writer store also follows the whole
stream, as every store does, so it folds the other writers' events too. One reader store in
this process folds everything; a round ends when its views hold every event written.

The baseline, in the same run on the same server, is raw nats-py in as many processes,
writing as many ~400-byte messages to a raw stream of their own: atomic batches of 500
(:func:`~benchmarks.concurrent.batches`, one batch in flight per process), and in the note
``js.publish_async`` with ``tasks`` acks outstanding per process.

Where the limit is: each round reads the CPU time (utime + stime, all threads) of every
writer process, the reader (this process) and nats-server from ``/proc/<pid>/stat``, and the
machine's busy time from ``/proc/stat``, before and after, and how long each process's
threads were runnable with no CPU free (``/proc/<pid>/task/*/schedstat``). A Python process
that ran or waited to run nearly all the time is the limit (it can use one core); else a
machine whose cores are nearly all busy (others' processes share them here); else nothing
CPU-bound is, and the writes wait on fsync and round trips. The CPU row gives each
process's CPU µs per write, which does not depend on what else the machine runs.

Children run as :mod:`benchmarks.processes` runs them: started, then stopped by pid; each
prints :data:`READY` once set up, then runs a round for each order it gets on core NATS
(``<control>.ours`` or ``<control>.raw``) and answers on ``<control>.done``.
``python -m benchmarks.writers --child ours|raw URL ORDERS DONE TARGET TASKS``: ``TARGET`` is
``STREAM/PREFIX`` for ours, the subject prefix for raw.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nats
from uuid_utils import uuid7

from benchmarks.cases import first_message, fresh_store, raw_stream
from benchmarks.concurrent import WriteRun, batches, create_threads, pipelined, store_writes
from benchmarks.harness import Result, now
from benchmarks.processes import Child, running
from projections import JetStreamMessageStore

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

    Order = dict[str, Any]
    """What a child is asked to do in a round (JSON)."""

READY = "writers ready"
THREADS_PER_PROCESS = 250
"""Threads each writer process writes to: 1,000 over four, as the concurrent case has."""
_STALLED = 120.0
"""Seconds a round may take before it is taken for hung and the case fails."""
_SATURATED = 0.9
"""The share of its cores a resource uses when it is called the limit."""
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU seconds a process has used (user + system, all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime and stime, fields 14 and 15


def waited_seconds(pid: int) -> float:
    """Seconds a process's threads have waited for a CPU, runnable (from their schedstat).

    A thread that has exited no longer counts, so this is a floor.
    """
    waited = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            waited += int((task / "schedstat").read_text().split()[1])
    return waited / 1e9


def machine_busy_seconds() -> float:
    """CPU seconds all cores of the machine have been busy (not idle, not waiting on I/O)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / _TICKS


@dataclass(frozen=True)
class Cores:
    """Cores used during a round: CPU seconds over wall seconds, per process and in all."""

    wall: float
    """Seconds the cores were read over."""
    writers: list[float]
    reader: float
    """This process: the reader store's fold (and the orders, which cost next to nothing)."""
    server: float
    machine: float
    """Every process on the machine, other users' included."""
    waiting: list[float]
    """Cores' worth of time each process (writers, reader, server) was runnable, no CPU free."""

    @property
    def ours(self) -> float:
        """The run's own processes together."""
        return sum(self.writers) + self.reader + self.server

    def limit(self) -> str:
        """Which resource saturates, or that none does."""
        cores = os.cpu_count() or 1
        python = [(f"writer #{i + 1}", share) for i, share in enumerate(self.writers)]
        python.append(("the reader", self.reader))
        wanted = [share + wait for (_, share), wait in zip(python, self.waiting[:-1], strict=True)]
        if max(wanted) >= _SATURATED:  # it ran, or would have, all the time
            name = python[wanted.index(max(wanted))][0]
            return f"limit: {name}'s one core (Python; it ran {max(wanted):.0%} incl. waits)"
        if self.machine >= _SATURATED * cores:
            return (
                f"limit: the machine's {cores} cores, {self.machine - self.ours:.2f} of them "
                f"used by other processes; ours waited {sum(self.waiting):.2f} cores for a CPU"
            )
        return "limit: no CPU saturated (waits: fsync, round trips)"

    def text(self) -> str:
        """The cores of each process, e.g. for a note."""
        writers = "+".join(f"{share:.2f}" for share in self.writers)
        others = self.machine - self.ours
        return (
            f"cores: writers {writers}, reader {self.reader:.2f}, server {self.server:.2f}, "
            f"machine {self.machine:.2f} of {os.cpu_count()} (others {others:.2f}); waited for "
            f"a CPU: writers {sum(self.waiting[:-2]):.2f}, reader {self.waiting[-2]:.2f}, "
            f"server {self.waiting[-1]:.2f}"
        )

    def per_event(self, writes: int) -> str:
        """CPU µs per write of the writers together, the reader and the server."""
        micros = [share * self.wall / writes * 1e6 for share in (sum(self.writers), self.reader)]
        server = self.server * self.wall / writes * 1e6
        return f"µs/event: writers {micros[0]:,.0f}, reader {micros[1]:,.0f}, server {server:,.0f}"


class _Meter:
    """CPU seconds of the given processes and of the machine, from one instant to another."""

    def __init__(self, writers: list[int], server: int | None) -> None:
        self._pids = [*writers, os.getpid(), server]
        self._writers = len(writers)
        self._start = self._read()

    def _read(self) -> list[float]:
        running = [0.0 if pid is None else cpu_seconds(pid) for pid in self._pids]
        waiting = [0.0 if pid is None else waited_seconds(pid) for pid in self._pids]
        return [now(), machine_busy_seconds(), *running, *waiting]

    def cores(self) -> Cores:
        """Cores used since the meter was made."""
        wall, machine, *used = (b - a for a, b in zip(self._start, self._read(), strict=True))
        share = [seconds / wall for seconds in used]
        ran, waited = share[: len(self._pids)], share[len(self._pids) :]
        return Cores(wall, ran[: self._writers], ran[-2], ran[-1], machine / wall, waited)


@dataclass(frozen=True)
class Round:
    """What one round showed."""

    writes: int
    acked: float
    """Acknowledged writes per second, summed: from the first call to the last ack."""
    projected: float
    """Writes per second from the first call until the reader's views held them all."""
    lag: float
    """Seconds from the last ack until the reader held every write."""
    cores: Cores

    @property
    def cpu_per_event(self) -> float:
        """CPU µs the run's own processes used per write."""
        return self.cores.ours * self.cores.wall / self.writes * 1e6


@dataclass(frozen=True)
class _Writers:
    """Writer processes of one kind and where they take their orders."""

    orders: str
    children: list[Child]


async def _round(
    nc: Client,
    done: Subscription,
    writers: _Writers,
    order: Order,
    *,
    server: int | None,
    reader: JetStreamMessageStore | None = None,
) -> Round:
    """Send ``order`` to the writers, collect their reports; with a reader, wait for it."""
    start = 0 if reader is None else await reader.log.last_sequence()
    if reader is not None:
        await reader.wait_for(start)
    meter = _Meter([child.pid for child in writers.children], server)
    await nc.publish(writers.orders, json.dumps(order).encode())
    reports = [json.loads((await done.next_msg(timeout=_STALLED)).data) for _ in writers.children]
    if failed := [r["error"] for r in reports if "error" in r]:
        raise RuntimeError(f"{len(failed)} writer process(es) failed, e.g. {failed[0]}")
    writes = sum(r["writes"] for r in reports)
    started = min(r["started"] for r in reports)
    finished = held = max(r["finished"] for r in reports)
    if reader is not None:
        end = await reader.log.last_sequence()
        async with asyncio.timeout(_STALLED):
            await reader.wait_for(end)
        held = now()
        if end - start != writes:
            raise RuntimeError(f"{writes} writes were acknowledged; the stream got {end - start}")
    return Round(
        writes,
        acked=writes / (finished - started),
        projected=writes / (held - started),
        lag=held - finished,
        cores=meter.cores(),
    )


async def _start(
    stack: contextlib.AsyncExitStack[bool | None],
    kind: str,
    *,
    url: str,
    control: str,
    targets: list[str],
    tasks: int,
) -> _Writers:
    """One writer process of ``kind`` per target, each ready, stopped when ``stack`` closes."""
    orders = f"{control}.{kind}"
    children = [
        await stack.enter_async_context(
            running(
                [
                    *(sys.executable, "-m", "benchmarks.writers", "--child", kind, url, orders),
                    *(f"{control}.done", target, str(tasks)),
                ],
                name=f"{kind} writer #{number + 1}",
                ready=READY,
                within=_STALLED,
            )
        )
        for number, target in enumerate(targets)
    ]
    return _Writers(orders, children)


async def _many_writers(
    url: str, server: int | None, processes: int, *, tasks: int, per_task: int, runs: int
) -> list[Result]:
    """``runs`` rounds of raw batches, raw pipelined and ours, back to back."""
    reader = await fresh_store(url)
    nc, _, raw_prefix = await raw_stream(url, atomic=True)
    control = f"_bench.writers.{uuid7().hex[-10:]}"
    rounds: dict[str, list[Round]] = {"ours": [], "batches": [], "pipelined": []}
    try:
        done = await nc.subscribe(f"{control}.done")
        async with contextlib.AsyncExitStack() as stack:
            started = now()
            stream = f"{reader.log.stream.name}/{reader.log.stream.subject_prefix}"
            ours = await _start(
                stack, "ours", url=url, control=control, targets=[stream] * processes, tasks=tasks
            )
            raw_targets = [f"{raw_prefix}.w{number}" for number in range(processes)]
            raw = await _start(
                stack, "raw", url=url, control=control, targets=raw_targets, tasks=tasks
            )
            print(
                f"  ({2 * processes} writer processes ready in {now() - started:.1f}s)", flush=True
            )
            for _ in range(runs):
                for how in ("batches", "pipelined"):
                    order = {"how": how, "writes": tasks * per_task}
                    rounds[how].append(await _round(nc, done, raw, order, server=server))
                order = {"how": "ours", "writes": tasks * per_task, "per_task": per_task}
                rounds["ours"].append(
                    await _round(nc, done, ours, order, server=server, reader=reader)
                )
                _print_round(processes, tasks, rounds)
    finally:
        await nc.close()
        await reader.close()
    return _results(rounds, processes, tasks)


def _print_round(processes: int, tasks: int, rounds: dict[str, list[Round]]) -> None:
    """One line per round, as it ends: the figures and the cores behind the medians."""
    ours, batched, pipelined_ = (rounds[how][-1] for how in ("ours", "batches", "pipelined"))
    print(
        f"  ({processes} x {tasks}: ours {ours.acked:,.0f}/s acked, reader "
        f"+{ours.lag * 1e3:,.0f} ms, {ours.cores.text()}; raw batches {batched.acked:,.0f}/s, "
        f"{batched.cores.text()}; pipelined {pipelined_.acked:,.0f}/s)",
        flush=True,
    )


def _results(rounds: dict[str, list[Round]], processes: int, tasks: int) -> list[Result]:
    """The three rows of one count of writer processes, medians over the rounds."""
    ours, raw = rounds["ours"], rounds["batches"]
    typical, raw_typical = (
        sorted(group, key=lambda run: run.acked)[len(group) // 2] for group in (ours, raw)
    )
    shape = f"{processes} proc x {tasks} tasks"
    raw_acked = statistics.median(r.acked for r in raw)
    pipelined_acked = statistics.median(r.acked for r in rounds["pipelined"])
    return [
        Result(
            case=f"many writers: acked events/s ({shape})",
            unit="events/s",
            ours=statistics.median(r.acked for r in ours),
            baseline=raw_acked,
            target="none: finds the limit (CPU row)",
            higher_is_better=True,
            note=(
                f"baseline: raw atomic batches of 500, {processes} proc; raw publish_async "
                f"pipelined {pipelined_acked:,.0f}/s; {typical.writes:,} writes, "
                f"{processes * THREADS_PER_PROCESS:,} threads, fsync always"
            ),
        ),
        Result(
            case=f"many writers: projected at the reader ({shape})",
            unit="events/s",
            ours=statistics.median(r.projected for r in ours),
            baseline=raw_acked,
            target="none: the reader keeps up",
            higher_is_better=True,
            note=(
                "baseline: raw batches acked; the reader's views held every write "
                f"{statistics.median(r.lag for r in ours) * 1e3:,.0f} ms after the last ack"
            ),
        ),
        Result(
            case=f"many writers: CPU per event ({shape})",
            unit="µs",
            ours=statistics.median(r.cpu_per_event for r in ours),
            baseline=statistics.median(r.cpu_per_event for r in raw),
            target="none: where the limit is",
            higher_is_better=False,
            note=(
                f"writers+reader+server (raw: writers+server); median round: "
                f"{typical.cores.per_event(typical.writes)} (raw "
                f"{raw_typical.cores.per_event(raw_typical.writes)}); "
                f"{typical.cores.text()}; {typical.cores.limit()}"
            ),
        ),
    ]


async def writers_cases(
    url: str,
    *,
    server: int | None,
    processes: Sequence[int],
    tasks: int,
    per_task: int,
    runs: int,
) -> list[Result]:
    """The many-writers rows for each count of writer processes; ``server``: nats-server's pid."""
    results = []
    for count in processes:
        results += await _many_writers(
            url, server, count, tasks=tasks, per_task=per_task, runs=runs
        )
    return results


async def _serve(
    nc: Client, orders: str, done: str, write: Callable[[Order], Awaitable[WriteRun]]
) -> None:
    """Say ready, then for each order on ``orders`` write and report on ``done``, forever."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    async def take(msg: Msg) -> None:
        queue.put_nowait(msg.data)

    await nc.subscribe(orders, cb=take)
    await nc.flush()
    print(READY, flush=True)
    while True:
        order = json.loads(await queue.get())
        report: dict[str, object]
        try:
            run = await write(order)
        except Exception as err:  # noqa: BLE001 - reported to the parent, which fails the case
            report = {"error": repr(err)}
        else:
            report = {"writes": order["writes"], "started": run.started, "finished": run.finished}
        await nc.publish(done, json.dumps(report).encode())


async def _ours_child(
    url: str, target: str, tasks: int
) -> tuple[JetStreamMessageStore, Callable[[Order], Awaitable[WriteRun]]]:
    """A store on the stream ``STREAM/PREFIX`` names, its threads made, and its round."""
    stream, _, prefix = target.partition("/")
    store = await JetStreamMessageStore.connect(url, stream=stream, subject_prefix=prefix)
    threads = await create_threads(store, THREADS_PER_PROCESS)
    await first_message(store, threads[0])

    async def write(order: Order) -> WriteRun:
        return await store_writes(store, threads, writers=tasks, per_writer=order["per_task"])

    return store, write


async def _child(options: argparse.Namespace) -> None:
    """Run the rounds of the kind of writer ``options`` names, until SIGTERM."""
    kind, url, target, tasks = options.child, options.url, options.target, options.tasks
    nc = await nats.connect(url)
    js = nc.jetstream()
    store = None
    if kind == "ours":
        store, write = await _ours_child(url, target, tasks)
    else:

        async def write(order: Order) -> WriteRun:
            if order["how"] == "batches":
                return await batches(nc, target, order["writes"])
            return await pipelined(js, target, order["writes"], tasks)

    serving = asyncio.create_task(_serve(nc, options.orders, options.done, write))
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, serving.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await serving
    if store is not None:
        await store.close()
    await nc.close()


def _main() -> None:
    """``python -m benchmarks.writers --child ours|raw URL ORDERS DONE TARGET TASKS``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.writers")
    parser.add_argument("--child", choices=("ours", "raw"), required=True)
    for name in ("url", "orders", "done", "target"):
        parser.add_argument(name)
    parser.add_argument("tasks", type=int)
    asyncio.run(_child(parser.parse_args()))


if __name__ == "__main__":
    _main()
