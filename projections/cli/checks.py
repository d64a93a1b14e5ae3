"""``convlog verify``, ``stats``, ``rebuild`` and ``snapshot``: is the log whole, the views right.

A dead letter is a record the projection skips: bytes that are not an event, an unknown
type, a schema newer than this code, an event for a thread that does not exist. It is
reported, never fatal: ``verify`` fails (exit 1) only on a broken hash chain, or on records
the stream cannot return (lost before its first sequence, damaged, a truncated tail).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from eventlog import verify_chains
from projections.cli.documents import (
    RebuildDocument,
    StatsDocument,
    VerifyDocument,
    gaps,
    print_json,
)
from projections.cli.options import EXIT_ERROR, EXIT_OK
from projections.cli.progress import progress_on_stderr
from projections.cli.render import console, dead_letter_lines
from projections.cli.server import log_on, store_on
from projections.fold import Projection

if TYPE_CHECKING:
    import argparse

    from projections.cli.options import Commands, Target

__all__ = ["add_checks"]

_DIGEST_SHOWN: Final = 16


async def verify(target: Target, args: argparse.Namespace) -> int:
    """Recompute every hash chain in scope and list its dead letters; exit 1 unless ``ok``.

    The records are folded as they are checked, in the same pass, so the dead letters are
    the ones a projection of that scope skips.
    """
    async with log_on(target) as log:
        fold = Projection(log.codec, log.subjects)
        report = await verify_chains(
            log,
            tenant_id=args.tenant,
            thread_id=args.thread,
            until=args.until,
            on_record=fold.apply,
        )
    code = EXIT_OK if report.ok else EXIT_ERROR
    if args.json:
        document = VerifyDocument(
            ok=report.ok,
            events=report.events,
            threads=report.threads,
            last_sequence=report.last_sequence,
            stream_last_sequence=report.stream_last_sequence,
            root=report.root,
            breaks=report.breaks,
            missing=gaps(report.missing),
            dead_letters=tuple(fold.skipped),
        )
        print_json(document)
        return code
    out = console(args.color)
    out.print(report.summary(), style="bold" if report.ok else "bold red")
    for broken in report.breaks:
        out.print(
            f"  sequence {broken.sequence} on {broken.subject}: {broken.reason} "
            f"(previous record {broken.previous_sequence}, expected prev_hash {broken.expected}, "
            f"found {broken.found})"
        )
    if fold.skipped:  # quiet when there are none: the usual output stays one line
        for line in dead_letter_lines(fold.skipped):
            out.print(line)
    return code


async def stats(target: Target, args: argparse.Namespace) -> int:
    """The store's counts, position and health, and its dead letters; exit 1 if it failed."""
    async with store_on(target) as store:
        health = await store.health_check()
        report = StatsDocument(
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
    code = EXIT_ERROR if report.status == "failed" else EXIT_OK
    if args.json:
        print_json(report)
        return code
    out = console(args.color)
    out.print(
        f"stream {report.stream}: {report.threads:,} threads, {report.messages:,} messages "
        "(deleted ones included)"
    )
    out.print(
        f"stream sequence {report.stream_sequence}, applied sequence "
        f"{report.applied_sequence}, health {report.status}"
        + (f": {report.detail}" if report.detail else "")
    )
    for line in dead_letter_lines(report.dead_letters):
        out.print(line)
    return code


async def rebuild(target: Target, args: argparse.Namespace) -> int:
    """Fold the stream from sequence 1 into fresh views; with --verify, compare digests."""
    async with store_on(target) as store:
        live = await store.health_check()
        with progress_on_stderr("rebuild") as on_progress:
            rebuilt = await store.rebuild(verify=args.verify, on_progress=on_progress)
    views = rebuilt.projection.views
    document = RebuildDocument(
        events=rebuilt.events,
        sequence=rebuilt.sequence,
        seconds=rebuilt.seconds,
        rate=rebuilt.rate,
        threads=views.thread_count,
        messages=views.message_count,
        digest=rebuilt.digest,
        verified=args.verify,
        live_restored_from=live.snapshots.restored if args.verify else None,
    )
    if args.json:
        print_json(document)
        return EXIT_OK
    out = console(args.color)
    out.print(
        f"rebuilt {document.events:,} events up to sequence {document.sequence:,} in "
        f"{document.seconds:.2f}s ({document.rate:,.0f} events/s): {document.threads:,} "
        f"threads, {document.messages:,} messages, digest {document.digest[:_DIGEST_SHOWN]}…"
    )
    if args.verify:
        source = document.live_restored_from
        origin = f"restored from {source} plus the tail" if source else "folded from sequence 1"
        out.print(f"verified: the live views ({origin}) have the same digest at this sequence")
    return EXIT_OK


async def snapshot(target: Target, args: argparse.Namespace) -> int:
    """Store the views, with their sequence and digest, in the stream's snapshot bucket."""
    async with store_on(target) as store:
        info = await store.snapshot()
    if args.json:
        print_json(info)
        return EXIT_OK
    console(args.color).print(
        f"snapshot {info.name} at sequence {info.sequence:,}: {info.threads:,} threads, "
        f"{info.messages:,} messages, {info.size:,} bytes, digest "
        f"{info.digest[:_DIGEST_SHOWN]}…, written in {info.seconds:.2f}s"
    )
    return EXIT_OK


def add_checks(commands: Commands) -> None:
    """Add ``verify``, ``stats``, ``rebuild`` and ``snapshot``."""
    parser = commands.add(
        "verify",
        verify,
        "check every thread's hash chain and list dead letters (records that are not valid "
        "events); exit 1 if a chain is broken or records cannot be read",
        output=True,
    )
    parser.add_argument("--tenant", help="only this tenant's threads")
    parser.add_argument("--thread", help="only this thread")
    parser.add_argument("--until", type=int, metavar="SEQ", help="stop after this sequence")

    commands.add(
        "stats",
        stats,
        "counts, stream and applied sequence, health, and dead letters (records the "
        "projection skips)",
        output=True,
    )

    parser = commands.add(
        "rebuild", rebuild, "fold the stream from sequence 1 into fresh views", output=True
    )
    parser.add_argument(
        "--verify", action="store_true", help="fail unless they equal the live views"
    )

    commands.add(
        "snapshot", snapshot, "store the views in the stream's snapshot bucket", output=True
    )
