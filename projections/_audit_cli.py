"""The ``convlog`` commands that treat the log as evidence.

``history`` and ``replay`` show what happened; ``show`` shows a thread as it was at a past
sequence or time; ``verify`` checks every hash chain and lists the dead letters; ``stats``
gives the store's counts, position, health and dead letters; ``rebuild`` folds the stream
into fresh views (``--verify``: and proves they equal the live ones); ``snapshot`` stores
the views for a fast cold start; ``export`` and ``import`` move events as JSON Lines.

A dead letter is a record the projection skips: bytes that are not an event, an unknown
type, a schema newer than this code, an event for a thread that does not exist. It is
reported, never fatal: ``verify`` fails (exit 1) only on a broken hash chain, or on records
the stream cannot return (lost before its first sequence, damaged, a truncated tail).

Without ``--nats-url`` they run an embedded server on the log kept in ``--data-dir``
(default: the user's data directory, as ``convlog serve`` keeps it).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol, TypeVar

import msgspec

from eventlog import ImportRejectedError, export_events, import_events, verify_chains
from projections._render import (
    Colours,
    entries_json,
    history_lines,
    replay_lines,
    summary_line,
)
from projections.cli import (
    EXIT_ERROR,
    EXIT_OK,
    Target,
    connect,
    kept_data_dir,
    nats_server,
    open_log,
    print_thread,
)
from projections.progress import Progress
from projections.views import Projection, SkippedEvent

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence

    from eventlog import EventLog
    from projections.audit import AuditEntry
    from projections.store import JetStreamMessageStore

__all__ = ["add_audit_commands"]

_DIGEST_SHOWN = 16
_DEAD_LETTERS_SHOWN = 20
"""Dead letters listed one a line; the rest are counted, so a damaged log stays readable."""


class _Closing(Protocol):
    async def close(self) -> None: ...


_C = TypeVar("_C", bound=_Closing)


@contextlib.asynccontextmanager
async def _opened(
    target: Target, opener: Callable[[Target, str], Awaitable[_C]]
) -> AsyncIterator[_C]:
    """What ``opener`` opens on the target's server (embedded if need be), closed after."""
    async with nats_server(target, kept_data_dir(target)) as url:
        opened = await opener(target, url)
        try:
            yield opened
        finally:
            await opened.close()


def _store(target: Target) -> contextlib.AbstractAsyncContextManager[JetStreamMessageStore]:
    return _opened(target, connect)


def _log(target: Target) -> contextlib.AbstractAsyncContextManager[EventLog]:
    return _opened(target, open_log)


def _print_lines(lines: Iterable[str]) -> None:
    for line in lines:
        print(line)


def _print_json(document: bytes) -> None:
    sys.stdout.write(document.decode() + "\n")


def _dead_letter_lines(skipped: Sequence[SkippedEvent]) -> Iterable[str]:
    """A count, then one line per record the projection skipped: sequence, subject, reason."""
    yield (
        f"dead letters: {len(skipped)} record(s) the projection skips"
        if skipped
        else ("dead letters: none")
    )
    for record in skipped[:_DEAD_LETTERS_SHOWN]:
        yield f"  #{record.sequence} on {record.subject}: {record.reason}"
    if len(skipped) > _DEAD_LETTERS_SHOWN:
        yield f"  … and {len(skipped) - _DEAD_LETTERS_SHOWN} more"


# --- history, replay, show ------------------------------------------------------------------


async def history(target: Target, args: argparse.Namespace) -> int:
    """Every event that touched a message or a thread, with the state after each."""
    async with _store(target) as store:
        if args.message is not None:
            about = {"message_id": args.message}
            entries: Sequence[AuditEntry] = await store.history(args.message)
        else:
            about = {"thread_id": args.thread}
            entries = await store.thread_history(args.thread)
    if args.json:
        _print_json(entries_json(entries, about=about))
    else:
        _print_lines(history_lines(entries, Colours.choose(args.color, sys.stdout)))
    return EXIT_OK


async def replay(target: Target, args: argparse.Namespace) -> int:
    """An execution's or a thread's events rendered as the conversation they made."""
    colours = Colours.choose(args.color, sys.stdout)
    async with _store(target) as store:
        if args.execution is not None:
            trail = await store.execution_trail(args.execution)
            if args.json:
                _print_json(
                    entries_json(
                        trail.entries,
                        about={"execution_id": trail.execution_id},
                        summary=trail.summary,
                    )
                )
                return EXIT_OK
            print(colours.paint("bold", f"execution {trail.execution_id}"))
            _print_lines(replay_lines(trail.entries, colours))
            print(colours.paint("bold", summary_line(trail.summary)))
            return EXIT_OK
        entries = await store.thread_history(args.thread)
    if args.json:
        _print_json(entries_json(entries, about={"thread_id": args.thread}))
    else:
        _print_lines(replay_lines(entries, colours))
    return EXIT_OK


async def show(target: Target, args: argparse.Namespace) -> int:
    """A thread as it was at a past sequence or server time."""
    async with _store(target) as store:
        if args.as_of is not None:
            past = await store.as_of(args.as_of, thread_id=args.thread)
        else:
            past = await store.at(args.at, thread_id=args.thread)
        thread = await past.get_thread(args.thread)
        messages = await past.list_messages(args.thread, include_deleted=args.include_deleted)
    when = f" (stored {past.time.isoformat(timespec='milliseconds')})" if past.time else ""
    print(f"as of sequence {past.sequence}{when}:")
    if thread is None:
        print(f"thread {args.thread!r} did not exist yet")
        return EXIT_OK
    print_thread(thread, messages)
    return EXIT_OK


# --- verify, rebuild, snapshot --------------------------------------------------------------


async def verify(target: Target, args: argparse.Namespace) -> int:
    """Recompute every hash chain in scope and list its dead letters; exit 1 unless ``ok``.

    The records are folded as they are checked, in the same pass, so the dead letters are
    the ones a projection of that scope skips.
    """
    async with _log(target) as log:
        fold = Projection(log.codec, log.subjects)
        report = await verify_chains(
            log,
            tenant_id=args.tenant,
            thread_id=args.thread,
            until=args.until,
            on_record=fold.apply,
        )
    print(report.summary())
    for broken in report.breaks:
        print(
            f"  sequence {broken.sequence} on {broken.subject}: {broken.reason} "
            f"(previous record {broken.previous_sequence}, expected prev_hash {broken.expected}, "
            f"found {broken.found})"
        )
    if fold.skipped:  # quiet when there are none: the usual output stays one line
        _print_lines(_dead_letter_lines(fold.skipped))
    return EXIT_OK if report.ok else EXIT_ERROR


class _Stats(msgspec.Struct, frozen=True, kw_only=True):
    """What ``convlog stats --json`` prints."""

    stream: str
    threads: int
    messages: int
    stream_sequence: int | None
    applied_sequence: int
    status: str
    detail: str
    restored_snapshot: str | None
    dead_letters: tuple[SkippedEvent, ...]


async def stats(target: Target, args: argparse.Namespace) -> int:
    """The store's counts, position and health, and its dead letters; exit 1 if it failed."""
    async with _store(target) as store:
        health = await store.health_check()
        report = _Stats(
            stream=target.stream,
            threads=store.views.thread_count,
            messages=store.views.message_count,
            stream_sequence=health.stream_sequence,
            applied_sequence=health.applied_sequence,
            status=health.status,
            detail=health.detail,
            restored_snapshot=health.snapshots.restored,
            dead_letters=health.skipped,
        )
    if args.json:
        _print_json(msgspec.json.encode(report))
    else:
        print(
            f"stream {report.stream}: {report.threads:,} threads, {report.messages:,} messages "
            "(deleted ones included)"
        )
        print(
            f"stream sequence {report.stream_sequence}, applied sequence "
            f"{report.applied_sequence}, health {report.status}"
            + (f": {report.detail}" if report.detail else "")
        )
        _print_lines(_dead_letter_lines(report.dead_letters))
    return EXIT_ERROR if report.status == "failed" else EXIT_OK


async def rebuild(target: Target, args: argparse.Namespace) -> int:
    """Fold the stream from sequence 1 into fresh views; with --verify, compare digests."""
    async with _store(target) as store:
        live = await store.health_check()
        rebuilt = await store.rebuild(verify=args.verify, progress=Progress(0, out=sys.stderr))
    views = rebuilt.projection.views
    print(
        f"rebuilt {rebuilt.events:,} events up to sequence {rebuilt.sequence:,} in "
        f"{rebuilt.seconds:.2f}s ({rebuilt.rate:,.0f} events/s): {views.thread_count:,} threads, "
        f"{views.message_count:,} messages, digest {rebuilt.digest[:_DIGEST_SHOWN]}…"
    )
    if args.verify:
        source = live.snapshots.restored
        origin = f"restored from {source} plus the tail" if source else "folded from sequence 1"
        print(f"verified: the live views ({origin}) have the same digest at this sequence")
    return EXIT_OK


async def snapshot(target: Target, _: argparse.Namespace) -> int:
    """Store the views, with their sequence and digest, in the stream's snapshot bucket."""
    async with _store(target) as store:
        info = await store.snapshot()
    print(
        f"snapshot {info.name} at sequence {info.sequence:,}: {info.threads:,} threads, "
        f"{info.messages:,} messages, {info.size:,} bytes, digest "
        f"{info.digest[:_DIGEST_SHOWN]}…, written in {info.seconds:.2f}s"
    )
    return EXIT_OK


# --- export, import -------------------------------------------------------------------------


async def export(target: Target, args: argparse.Namespace) -> int:
    """Write the events in scope as JSON Lines to --output or standard output."""
    async with _log(target) as log:
        with (
            contextlib.nullcontext(sys.stdout.buffer)
            if args.output is None
            else args.output.open("wb")
        ) as out:
            report = await export_events(log, out, tenant_id=args.tenant, thread_id=args.thread)
    skipped = f"; {len(report.not_exported)} records that are not events were left out"
    print(
        f"exported {report.events} events from stream {target.stream}, root {report.root}"
        + (skipped if report.not_exported else ""),
        file=sys.stderr,
    )
    return EXIT_OK


def _export_file(path: Path | None) -> contextlib.AbstractContextManager[IO[bytes]]:
    """The export to import, standard input without a path; a sentence if it cannot be read."""
    if path is None:
        return contextlib.nullcontext(sys.stdin.buffer)
    try:
        return path.open("rb")
    except OSError as err:
        raise ImportRejectedError(
            f"cannot read {str(path)!r} ({err.strerror})", advice="check the path"
        ) from err


async def import_(target: Target, args: argparse.Namespace) -> int:
    """Check a whole JSON Lines export, then append what the stream lacks of it."""
    progress = Progress(0, label="import", out=sys.stderr)

    def drawn(done: int, total: int) -> None:
        progress.total = total
        progress.update(done)

    with _export_file(args.file) as lines:
        async with _log(target) as log:
            report = await import_events(
                log, lines, allow_missing_root=args.allow_missing_root, on_progress=drawn
            )
    progress.finish()
    print(
        f"imported {report.appended} events into stream {target.stream} across "
        f"{report.threads} threads ({report.already_present} were there already)"
    )
    return EXIT_OK


# --- the parsers ----------------------------------------------------------------------------


def _aware(text: str) -> datetime:
    """An argparse type: an ISO 8601 time with its offset (e.g. 2026-01-31T12:00:00+00:00)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"time {text!r} needs an offset, e.g. {text}+00:00")
    return value


def add_audit_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Add history, replay, show, verify, stats, rebuild, snapshot, export and import."""

    def add(name: str, run: object, help_text: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, parents=[common], help=help_text)
        parser.set_defaults(run=run)
        return parser

    def output_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true", help="one JSON document, for machines")
        parser.add_argument(
            "--color",
            choices=("auto", "always", "never"),
            default="auto",
            help="colour the text (default: on a terminal, unless NO_COLOR is set)",
        )

    parser = add("history", history, "every event of a message or thread, with the state after")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--message", help="a message id")
    which.add_argument("--thread", help="a thread id")
    output_options(parser)

    parser = add("replay", replay, "replay an agent execution or a thread, readably")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--execution", help="an execution id")
    which.add_argument("--thread", help="a thread id")
    output_options(parser)

    parser = add("show", show, "show a thread as it was at a sequence or time")
    parser.add_argument("--thread", required=True, help="a thread id")
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--at", type=int, metavar="SEQ", help="as of this stream sequence")
    when.add_argument("--as-of", type=_aware, metavar="TIME", help="as of this server time")
    parser.add_argument("--include-deleted", action="store_true", help="list deleted messages")

    parser = add(
        "verify",
        verify,
        "check every thread's hash chain and list dead letters (records that are not valid "
        "events); exit 1 if a chain is broken or records cannot be read",
    )
    parser.add_argument("--tenant", help="only this tenant's threads")
    parser.add_argument("--thread", help="only this thread")
    parser.add_argument("--until", type=int, metavar="SEQ", help="stop after this sequence")

    parser = add(
        "stats",
        stats,
        "counts, stream and applied sequence, health, and dead letters (records the "
        "projection skips)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON document, for machines")

    parser = add("rebuild", rebuild, "fold the stream from sequence 1 into fresh views")
    parser.add_argument(
        "--verify", action="store_true", help="fail unless they equal the live views"
    )

    add("snapshot", snapshot, "store the views in the stream's snapshot bucket")

    parser = add("export", export, "write events as JSON Lines")
    parser.add_argument("--tenant", help="only this tenant's events")
    parser.add_argument("--thread", help="only this thread's events")
    parser.add_argument("--output", "-o", type=Path, help="write here, not to standard output")

    parser = add("import", import_, "append the events of an export to this stream")
    parser.add_argument("file", nargs="?", type=Path, help="an export (default: standard input)")
    parser.add_argument(
        "--allow-missing-root",
        action="store_true",
        help="take an export without a root trailer (made before convlog wrote one); its "
        "threads' last events and a cut-off end then go unchecked",
    )
