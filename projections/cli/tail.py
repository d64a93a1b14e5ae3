"""``convlog tail``: follow the log in the terminal, filtered, one line per event."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from projections.cli.options import EXIT_OK, aware_time
from projections.cli.render import console, entity_of, event_line
from projections.cli.server import log_on

if TYPE_CHECKING:
    import argparse

    from eventlog import Start
    from projections.cli.options import Commands, Target

__all__ = ["add_tail"]


async def tail(target: Target, args: argparse.Namespace) -> int:
    """Print events as they are appended (or, with --no-follow, until caught up)."""
    start: Start = "new"
    if args.since is not None:
        start = args.since
    elif args.start is not None:
        start = args.start - 1
    out = console(args.color)
    async with log_on(target) as log:
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
                    sys.stdout.write(log.codec.encode_stored(stored).decode() + "\n")
                    sys.stdout.flush()
                    continue
                event = stored.event
                line = event_line(
                    sequence=stored.sequence,
                    time=stored.time,
                    event_type=event.event_type,
                    actor=event.actor,
                    after=entity_of(event),
                    where=f"{event.tenant_id}/{event.thread_id}",
                )
                out.print(line)
                out.file.flush()
    return EXIT_OK


def add_tail(commands: Commands) -> None:
    """Add ``convlog tail``."""
    parser = commands.add("tail", tail, "print events as they are written, filtered", output=True)
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
    where.add_argument("--since", type=aware_time, metavar="TIME", help="start at this ISO time")
    parser.add_argument(
        "--no-follow", dest="follow", action="store_false", help="stop once caught up"
    )
