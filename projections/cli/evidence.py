"""``convlog history``, ``replay`` and ``show``: what happened, read back from the stream.

``history`` lists every event that touched a message or thread with the state after each;
``replay`` renders an execution's or a thread's events as the conversation they made;
``show`` gives a thread as it stood at a past sequence or server time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from projections.cli.documents import AuditDocument, ShowDocument, entries, print_json
from projections.cli.options import EXIT_OK, aware_time
from projections.cli.render import console, history_lines, replay_lines, summary_line, thread_lines
from projections.cli.server import store_on

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

    from projections.audit import AuditEntry, TrailSummary
    from projections.cli.options import Commands, Target

__all__ = ["add_evidence"]


async def history(target: Target, args: argparse.Namespace) -> int:
    """Every event that touched a message or a thread, with the state after each."""
    async with store_on(target) as store:
        if args.message is not None:
            found = await store.history(args.message)
        else:
            found = await store.thread_history(args.thread)
    if args.json:
        print_json(
            AuditDocument(message_id=args.message, thread_id=args.thread, entries=entries(found))
        )
        return EXIT_OK
    out = console(args.color)
    for line in history_lines(found):
        out.print(line)
    return EXIT_OK


async def replay(target: Target, args: argparse.Namespace) -> int:
    """An execution's or a thread's events rendered as the conversation they made."""
    out = console(args.color)
    summary: TrailSummary | None = None
    async with store_on(target) as store:
        if args.execution is not None:
            trail = await store.execution_trail(args.execution)
            found: Sequence[AuditEntry] = trail.entries
            summary = trail.summary
        else:
            found = await store.thread_history(args.thread)
    if args.json:
        document = AuditDocument(
            execution_id=args.execution,
            thread_id=args.thread,
            entries=entries(found),
            summary=summary,
        )
        print_json(document)
        return EXIT_OK
    if summary is not None:
        out.print(f"execution {args.execution}", style="bold")
    for line in replay_lines(found):
        out.print(line)
    if summary is not None:
        out.print(summary_line(summary))
    return EXIT_OK


async def show(target: Target, args: argparse.Namespace) -> int:
    """A thread as it was at a past sequence or server time."""
    async with store_on(target) as store:
        if args.as_of is not None:
            past = await store.as_of(args.as_of, thread_id=args.thread)
        else:
            past = await store.at(args.at, thread_id=args.thread)
        thread = await past.get_thread(args.thread)
        messages = await past.list_messages(args.thread, include_deleted=args.include_deleted)
    if args.json:
        document = ShowDocument(
            sequence=past.sequence,
            time=past.time,
            thread=thread.model_dump(mode="json") if thread is not None else None,
            messages=tuple(message.model_dump(mode="json") for message in messages),
        )
        print_json(document)
        return EXIT_OK
    out = console(args.color)
    when = f" (stored {past.time.isoformat(timespec='milliseconds')})" if past.time else ""
    out.print(f"as of sequence {past.sequence}{when}:")
    if thread is None:
        out.print(f"thread {args.thread!r} did not exist yet")
        return EXIT_OK
    for line in thread_lines(thread, messages):
        out.print(line)
    return EXIT_OK


def add_evidence(commands: Commands) -> None:
    """Add ``history``, ``replay`` and ``show``."""
    parser = commands.add(
        "history", history, "every event of a message or thread, with the state after", output=True
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--message", help="a message id")
    which.add_argument("--thread", help="a thread id")

    parser = commands.add(
        "replay", replay, "replay an agent execution or a thread, readably", output=True
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--execution", help="an execution id")
    which.add_argument("--thread", help="a thread id")

    parser = commands.add(
        "show", show, "show a thread as it was at a sequence or time", output=True
    )
    parser.add_argument("--thread", required=True, help="a thread id")
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--at", type=int, metavar="SEQ", help="as of this stream sequence")
    when.add_argument("--as-of", type=aware_time, metavar="TIME", help="as of this server time")
    parser.add_argument("--include-deleted", action="store_true", help="list deleted messages")
