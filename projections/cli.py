"""The ``convlog`` command: a demo of the log end to end, and a long-running projection.

``convlog demo`` writes a short agent conversation, prints it as the views answer it and as
the log stores it, then checks that a fresh store rebuilds the same views from the stream.
``convlog serve`` keeps a projection of the stream running and reports how far it got.
Every command uses the server at ``--nats-url`` (default ``$NATS_URL``), or the embedded
one on ``--data-dir``: the one already running there, or one it starts and stops.

Exit codes: 0 done (``serve`` also after SIGINT or SIGTERM), 1 a convlog error, reported
as one line on stderr, 2 the embedded server could not start (or a usage error, as argparse
reports it), 130 and 143 ended by SIGINT and SIGTERM (after stopping what it started), 141
its output's reader went away (as a shell reports SIGPIPE).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

import platformdirs
from uuid_utils import uuid7

from eventlog import (
    ConnectOptions,
    ConvlogError,
    CostInfo,
    EmbeddedNats,
    EmbeddedServerError,
    EventLog,
    ExecutionId,
    ExecutionStats,
    FinishReason,
    MalformedEventError,
    Message,
    MessageCreated,
    MessageMetadata,
    MessageUpdated,
    ReasoningPart,
    Start,
    StoredEvent,
    StreamSettings,
    TenantId,
    TextPart,
    Thread,
    ThreadCreated,
    ThreadId,
    ThreadUpdated,
    TokenUsage,
    ToolCallPart,
    ToolResultPart,
    UserId,
    event_context,
)
from eventlog.server import DEFAULT_MAX_PAYLOAD
from projections._render import Colours, message_lines, preview
from projections.commands import utc_now
from projections.rebuild import RebuildMismatchError
from projections.store import JetStreamMessageStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Coroutine, Iterator, Sequence

__all__ = ["main"]

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_NO_SERVER: Final = 2
EXIT_INTERRUPTED: Final = 130
EXIT_BROKEN_PIPE: Final = 141

_DIGEST_SHOWN: Final = 12

_T = TypeVar("_T")

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """Where a command reads and writes: the server, the stream and its subject prefix."""

    nats_url: str | None
    data_dir: Path | None
    stream: str
    subject_prefix: str
    connect_timeout: float
    max_payload: int = DEFAULT_MAX_PAYLOAD


LINGER: Final = 10.0
"""Seconds a command that started the embedded server waits, at exit, for other commands'
clients on it to finish."""


@contextlib.asynccontextmanager
async def nats_server(target: Target, data_dir: Path | None) -> AsyncIterator[str]:
    """Yield the target's URL if it has one, else the URL of the server kept in ``data_dir``.

    That is the data dir's running server if another command started one (never a second
    server on the same store), else one started here, kept running while the block runs
    and stopped after it. Without ``data_dir`` the store is a temporary directory.
    """
    if target.nats_url:
        yield target.nats_url
        return
    embedded = EmbeddedNats(data_dir=data_dir, max_payload=target.max_payload, linger=LINGER)
    async with embedded as url, supervised(embedded):
        if not embedded.owner:
            logger.info("attached to the nats-server (pid %s) on %s", embedded.pid, data_dir)
        yield url


@contextlib.asynccontextmanager
async def supervised(embedded: EmbeddedNats) -> AsyncIterator[None]:
    """Keep the embedded server running while the block runs; fail the block if it cannot.

    If the server keeps dying, the block is cancelled and the supervisor's
    :class:`EmbeddedServerError` raised in its place.
    """
    block = asyncio.current_task()
    if block is None:  # pragma: no cover - always inside a task under asyncio.run
        raise RuntimeError("supervised() needs a running task")

    async def supervise() -> None:
        try:
            await embedded.keep_running(lambda said: print(f"convlog: {said}", file=sys.stderr))
        except EmbeddedServerError:
            block.cancel()
            raise

    supervisor = asyncio.create_task(supervise())
    try:
        yield
    except asyncio.CancelledError:
        failure = (
            supervisor.exception() if supervisor.done() and not supervisor.cancelled() else None
        )
        if failure is None:
            raise
        block.uncancel()
        raise failure from None
    finally:
        supervisor.cancel()
        with contextlib.suppress(asyncio.CancelledError, EmbeddedServerError):
            await supervisor


async def connect(target: Target, url: str) -> JetStreamMessageStore:
    """Connect a store to the target's stream, its views caught up with the log."""
    return await JetStreamMessageStore.connect(
        url,
        stream=target.stream,
        subject_prefix=target.subject_prefix,
        options=ConnectOptions(connect_timeout=target.connect_timeout),
    )


def kept_data_dir(target: Target) -> Path:
    """Where an embedded server keeps the log between runs: --data-dir, or the user data dir."""
    return target.data_dir or Path(platformdirs.user_data_dir("convlog")) / "nats"


async def open_log(target: Target, url: str) -> EventLog:
    """Connect to the target's stream as a bare log, without views, to read or append."""
    return await EventLog.connect(
        url,
        stream=StreamSettings(name=target.stream, subject_prefix=target.subject_prefix),
        options=ConnectOptions(connect_timeout=target.connect_timeout),
    )


# --- convlog demo ---------------------------------------------------------------------------


def weather_conversation(thread_id: ThreadId) -> list[Message]:
    """A system prompt, a user question, and an agent's answer that called a tool."""
    system = Message.system(thread_id, "You are a concise weather assistant. Use tools.")
    question = Message.user(thread_id, "What's the weather like in Paris right now?")
    execution_id = ExecutionId.new()
    call_id = f"call_{uuid7().hex[-12:]}"
    answer_text = "It's 18°C and sunny in Paris right now."
    prompt_tokens, completion_tokens = 412, 96
    input_cost = round(prompt_tokens * 2.50 / 1e6, 6)  # gpt-4o list prices per token, USD
    output_cost = round(completion_tokens * 10.00 / 1e6, 6)
    answer = (
        Message.assistant(thread_id, execution_id, answer_text, parent_id=question.id)
        .with_parts(
            [
                ReasoningPart(text="The user asks for live weather: call get_weather for Paris."),
                ToolCallPart(tool_call_id=call_id, tool_name="get_weather", args={"city": "Paris"}),
                ToolResultPart(
                    tool_call_id=call_id,
                    tool_name="get_weather",
                    result={"temp_c": 18, "conditions": "sunny"},
                    is_error=False,
                ),
                TextPart(text=answer_text),
            ]
        )
        .with_metadata(
            MessageMetadata(
                completed_at=int(time.time() * 1000),
                duration_ms=2310,
                model="gpt-4o",
                provider="openai",
                token_usage=TokenUsage.new(prompt_tokens, completion_tokens),
                stats=ExecutionStats(llm_calls=2, tool_calls=1, steps=3),
                finish_reason=FinishReason.STOP,
                cost=CostInfo(
                    input_cost=input_cost,
                    output_cost=output_cost,
                    total_cost=round(input_cost + output_cost, 6),
                ),
            )
        )
    )
    return [system, question, answer]


def print_thread(thread: Thread, messages: Sequence[Message]) -> None:
    """Print a thread and its messages as the projected views hold them."""
    print(f"thread {thread.id} {thread.title!r} (tenant {thread.tenant_id}, user {thread.user_id})")
    for message in messages:
        for line in message_lines(message, Colours(enabled=False)):
            print(line)


async def print_events(store: JetStreamMessageStore, thread: Thread) -> None:
    """Print the thread's events as the stream stores them, with sequence and server time."""
    log = store.log
    subject = log.subjects.thread(thread.tenant_id, thread.id)
    print(f"events in stream {log.stream.name} on {subject}:")
    async for record in log.read(subject=subject):
        try:
            event = log.codec.decode(record.data)
        except MalformedEventError:
            kind, actor = "(unreadable)", "-"
        else:
            kind, actor = event.event_type, event.actor or "-"
        when = record.time.isoformat(timespec="milliseconds")
        print(f"  #{record.sequence:<4} {when}  {kind:<16} {actor:<14} {record.subject}")


async def write_demo(store: JetStreamMessageStore) -> Thread:
    """Write the demo thread and its conversation as the weather agent would."""
    now = utc_now()
    thread = Thread(
        id=ThreadId.new(),
        tenant_id=TenantId.from_string("acme"),
        user_id=UserId.from_string("alice"),
        title="Weather in Paris",
        created_at=now,
        updated_at=now,
    )
    with event_context(actor="agent:weather", correlation_id=f"req_{uuid7().hex}"):
        await store.create_thread(thread)
        for message in weather_conversation(thread.id):
            await store.create_message(message)
    return thread


async def demo(target: Target) -> int:
    """Write a conversation, print views and events, and check a rebuilt view matches."""
    async with (
        nats_server(target, target.data_dir) as url,
        await connect(target, url) as store,
    ):
        thread = await write_demo(store)
        projected = await store.get_thread(thread.id)
        if projected is None:  # pragma: no cover - the store reads its own writes
            raise ConvlogError(f"thread {thread.id!r} is missing from the views")
        print_thread(projected, await store.list_messages(thread.id))
        print()
        await print_events(store, thread)
        print()
        try:
            rebuilt = await store.rebuild(verify=True)  # at the sequence the views have folded
        except RebuildMismatchError as err:
            print(
                f"rebuilt view matches: NO (live digest {err.live[:_DIGEST_SHOWN]}…, "
                f"rebuilt {err.rebuilt[:_DIGEST_SHOWN]}…)"
            )
            return EXIT_ERROR
    print(
        f"rebuilt view matches: yes (digest {rebuilt.digest[:_DIGEST_SHOWN]}… at sequence "
        f"{rebuilt.sequence})"
    )
    print()
    print(where_the_demo_log_is(target, thread.id))
    return EXIT_OK


def where_the_demo_log_is(target: Target, thread_id: str) -> str:
    """Where the demo's log lives now, and a follow-up command that reads it there."""
    follow_up = f"convlog replay --thread {thread_id}"
    if target.nats_url:
        return (
            f"the log is stream {target.stream} at {target.nats_url}; see it again with "
            f"`{follow_up} --nats-url {target.nats_url}`"
        )
    if target.data_dir:
        return (
            f"the log is kept in {target.data_dir}; see it again with "
            f"`{follow_up} --data-dir {target.data_dir}`"
        )
    return (
        "the log lived in a temporary directory, removed now; to keep it, run "
        "`convlog demo --data-dir DIR`, then e.g. `convlog replay --thread ID --data-dir DIR`"
    )


# --- convlog serve --------------------------------------------------------------------------


async def until_stopped(stop: asyncio.Event, work: Awaitable[_T]) -> _T | None:
    """Await ``work``, or cancel it and return None once ``stop`` is set."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return None if task.cancelled() else task.result()


async def serve(target: Target, interval: float) -> int:
    """Keep a projection of the stream running until SIGINT or SIGTERM, reporting progress."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        async with nats_server(target, kept_data_dir(target)) as url:
            store = await until_stopped(stop, connect(target, url))
            if store is None:
                return EXIT_OK
            async with store:
                print(f"serving projection of stream {target.stream} at {url}", flush=True)
                while not stop.is_set():
                    health = await store.health_check()
                    print(
                        f"applied sequence {health.applied_sequence}, health {health.status}, "
                        f"{'connected' if health.connected else 'disconnected'}, "
                        f"skipped {len(health.skipped)}",
                        flush=True,
                    )
                    if health.status == "failed":
                        raise ConvlogError(health.detail)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=interval)
        print("stopped", flush=True)
        return EXIT_OK
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


# --- convlog tail ---------------------------------------------------------------------------


def describe_event(stored: StoredEvent) -> str:
    """One readable line for an event: sequence, time, type, where, who, and what."""
    event = stored.event
    where = f"{event.tenant_id}/{event.thread_id}"
    actor = event.actor or "-"
    match event:
        case MessageCreated(message=message) | MessageUpdated(message=message):
            what = f"[{message.role}] {preview(message.content)}"
        case ThreadCreated(thread=thread) | ThreadUpdated(thread=thread):
            what = preview(thread.title or "")
        case _:
            what = event.message_id or ""
    time_text = stored.time.isoformat(timespec="milliseconds")
    return f"#{stored.sequence:<6} {time_text}  {event.event_type:<16} {where}  {actor}  {what}"


async def tail(target: Target, args: argparse.Namespace) -> int:
    """Print events as they are appended (or, with --no-follow, until caught up)."""
    start: Start = "new"
    if args.since is not None:
        start = args.since
    elif args.start is not None:
        start = args.start - 1
    async with nats_server(target, kept_data_dir(target)) as url:
        log = await open_log(target, url)
        try:
            subscription = log.subscribe(
                tenant_id=args.tenant,
                thread_id=args.thread,
                execution_id=args.execution,
                event_types=set(args.type) if args.type else None,
                start=start,
                follow=args.follow,
            )
            async with subscription as events:
                async for stored in events:
                    if args.json:
                        print(log.codec.encode_stored(stored).decode(), flush=True)
                    else:
                        print(describe_event(stored), flush=True)
        finally:
            await log.close()
    return EXIT_OK


def add_tail_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """``convlog tail``: follow the log in the terminal."""
    parser = commands.add_parser(
        "tail", parents=[common], help="print events as they are written, filtered"
    )
    parser.add_argument("--tenant", help="only this tenant's events")
    parser.add_argument("--thread", help="only this thread's events")
    parser.add_argument("--execution", help="only this agent execution's events")
    parser.add_argument(
        "--type",
        action="append",
        help="only events of this type (repeatable), e.g. message.created",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--from", dest="start", type=int, metavar="SEQ", help="start at this stream sequence"
    )
    where.add_argument(
        "--since", type=datetime.fromisoformat, metavar="TIME", help="start at this ISO time"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument(
        "--no-follow", dest="follow", action="store_false", help="stop once caught up"
    )
    parser.set_defaults(run=tail)


# --- the command line -----------------------------------------------------------------------


def positive_seconds(text: str) -> float:
    """An argparse type: a number of seconds greater than zero."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def positive_bytes(text: str) -> int:
    """An argparse type: a whole number of bytes greater than zero."""
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number of bytes")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    """The ``convlog`` argument parser, with one sub-command per job."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--nats-url",
        default=os.environ.get("NATS_URL") or None,
        help="NATS server URL (default: $NATS_URL, else an embedded nats-server)",
    )
    common.add_argument("--stream", default="CONVLOG", help="JetStream stream name")
    common.add_argument("--subject-prefix", default="convlog", help="subject prefix of events")
    common.add_argument(
        "--connect-timeout",
        type=positive_seconds,
        default=ConnectOptions().connect_timeout,
        help="seconds to wait for the server (default: %(default)s)",
    )
    common.add_argument(
        "-v", "--verbose", action="store_true", help="also log warnings, e.g. reconnects"
    )
    common.add_argument(
        "--data-dir",
        type=Path,
        help="the embedded server's store, shared safely by every command that names it "
        "(default: the user data dir; for demo a temporary one; ignored with --nats-url)",
    )
    common.add_argument(
        "--max-payload",
        type=positive_bytes,
        default=DEFAULT_MAX_PAYLOAD,
        metavar="BYTES",
        help="the largest message an embedded server started here takes "
        "(default: %(default)s; ignored with --nats-url or when attaching)",
    )

    parser = argparse.ArgumentParser(
        prog="convlog", description="An event-sourced conversation log on NATS JetStream."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo_parser = commands.add_parser(
        "demo",
        parents=[common],
        help="write an agent conversation, show views and events, check a rebuild",
    )
    demo_parser.set_defaults(run=lambda target, _: demo(target))
    serve_parser = commands.add_parser(
        "serve", parents=[common], help="run a projection of the stream until interrupted"
    )
    serve_parser.add_argument(
        "--interval",
        type=positive_seconds,
        default=10.0,
        help="seconds between status lines (default: %(default)s)",
    )
    serve_parser.set_defaults(run=lambda target, args: serve(target, args.interval))
    add_tail_command(commands, common)
    from projections._audit_cli import add_audit_commands  # noqa: PLC0415 - it imports this module

    add_audit_commands(commands, common)
    return parser


@contextlib.contextmanager
def logging_to_stderr(*, verbose: bool) -> Iterator[None]:
    """Log errors (with ``verbose``, also warnings and info) to stderr while the block runs.

    Quiet by default: the connection's retry warnings would bury the one-line error. The
    handler is removed afterwards, so calling :func:`main` in-process leaves logging as found.
    """
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("convlog: %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO if verbose else logging.ERROR)
    level = root.level
    root.addHandler(handler)
    if verbose:
        root.setLevel(min(level, logging.INFO) if level else logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``convlog`` with ``argv`` (default: the process's arguments); return the exit code."""
    args = build_parser().parse_args(argv)
    target = Target(
        nats_url=args.nats_url,
        data_dir=args.data_dir,
        stream=args.stream,
        subject_prefix=args.subject_prefix,
        connect_timeout=args.connect_timeout,
        max_payload=args.max_payload,
    )
    command: Coroutine[object, object, int] = args.run(target, args)
    try:
        with logging_to_stderr(verbose=args.verbose):
            return asyncio.run(until_signalled(command))
    except BrokenPipeError:
        # The reader went away (`convlog tail | head`): stop quietly, as `cat` would.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except EmbeddedServerError as err:
        print(f"convlog: {one_line(err)}", file=sys.stderr)
        return EXIT_NO_SERVER
    except ConvlogError as err:
        print(f"convlog: {one_line(err)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


_CANCEL_AGAIN: Final = 2 * LINGER
"""Seconds after which a signalled command still running is cancelled once more."""


async def until_signalled(command: Coroutine[object, object, int]) -> int:
    """Run ``command``; on SIGINT or SIGTERM cancel it, and return ``128 + signal``.

    Cancelling runs every ``finally`` on the way out, so the embedded server is stopped and
    its data dir freed; SIGTERM's default action would end Python at once instead. On
    Python 3.11 ``asyncio.wait_for`` can swallow a cancellation that lands just as its
    timeout fires (fixed in 3.12), so a command still running is cancelled again every
    few seconds. A command that handles the signals itself (``serve``) replaces these
    handlers while it runs.
    """
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    received: list[signal.Signals] = []

    def cancel_until_done() -> None:
        if task is not None and not task.done():
            task.cancel()
            loop.call_later(_CANCEL_AGAIN, cancel_until_done)

    def on_signal(signum: signal.Signals) -> None:
        received.append(signum)
        cancel_until_done()

    handled = (signal.SIGINT, signal.SIGTERM)
    for signum in handled:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        return await command
    except asyncio.CancelledError:
        if received:
            return 128 + received[0]
        raise
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


def one_line(err: BaseException) -> str:
    """The error's message with its whitespace folded onto one line."""
    return " ".join(str(err).split()) or type(err).__name__
