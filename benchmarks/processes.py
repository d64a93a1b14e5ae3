"""Child processes a case starts and stops by pid: ``convlog serve`` replicas, echo responders.

A case measures them as they run in production, each in its own process with its own
event loop and heap. A child is ready when it prints the line its command prints once it
answers; its output is drained from then on (so a full pipe never stalls it) and shown if
it fails. Leaving the block stops it with SIGTERM, as an operator would, and kills it
only if it does not exit in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

_STOP_WITHIN = 15.0
"""Seconds a child has to exit after SIGTERM before it is killed."""


def convlog_command() -> str:
    """The ``convlog`` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("convlog")
    if not script.exists():
        raise RuntimeError(f"{script} is missing: install the project (pip install -e .)")
    return str(script)


@dataclass
class Child:
    """A running child process, and what it printed."""

    name: str
    process: asyncio.subprocess.Process
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        """Its process id."""
        return self.process.pid

    def said(self) -> str:
        """What it printed, for an error message."""
        return "".join(self.stdout + self.stderr)[-4000:]


async def _collect(stream: asyncio.StreamReader | None, into: list[str]) -> None:
    """Keep reading ``stream`` into ``into`` until it ends."""
    if stream is None:
        return
    while line := await stream.readline():
        into.append(line.decode(errors="replace"))


async def _until_ready(child: Child, ready: str) -> None:
    """Return once the child printed a line starting with ``ready``; raise if it exited."""
    stdout = child.process.stdout
    if stdout is None:
        raise RuntimeError(f"{child.name}: its output is not piped")
    while True:
        line = (await stdout.readline()).decode(errors="replace")
        if not line:
            code = await child.process.wait()
            raise RuntimeError(f"exited with code {code} before it was ready")
        child.stdout.append(line)
        if line.startswith(ready):
            return


async def _stop(child: Child) -> None:
    """SIGTERM to the child's pid; SIGKILL if it has not exited within ``_STOP_WITHIN``."""
    if child.process.returncode is not None:
        return
    child.process.terminate()
    try:
        await asyncio.wait_for(child.process.wait(), _STOP_WITHIN)
    except TimeoutError:
        child.process.kill()
        await child.process.wait()


@contextlib.asynccontextmanager
async def running(
    argv: Sequence[str], *, name: str, ready: str, within: float
) -> AsyncIterator[Child]:
    """Start ``argv``, wait up to ``within`` seconds for its ``ready`` line, stop it after."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    child = Child(name, process)
    errors = asyncio.create_task(_collect(process.stderr, child.stderr))
    drain: asyncio.Task[None] | None = None
    try:
        try:
            await asyncio.wait_for(_until_ready(child, ready), within)
        except (TimeoutError, RuntimeError) as err:
            await _stop(child)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(errors, _STOP_WITHIN)
            why = "was not ready in time" if isinstance(err, TimeoutError) else str(err)
            raise RuntimeError(f"{name} (pid {child.pid}) {why}:\n{child.said()}") from None
        drain = asyncio.create_task(_collect(process.stdout, child.stdout))
        yield child
        if process.returncode is not None:
            raise RuntimeError(f"{name} (pid {child.pid}) exited while measured:\n{child.said()}")
    finally:
        await _stop(child)
        for task in (errors, drain):
            if task is not None:
                with contextlib.suppress(TimeoutError):  # a grandchild may hold the pipe
                    await asyncio.wait_for(task, _STOP_WITHIN)
