"""``convlog migrate``: a stream copied into a new one with another partition count.

An export piped into an import (:func:`eventlog.transfer.migrate_events`): every event keeps
its bytes, its order and its hash chain, so the target verifies to the source's root. The
target is on another server, as JetStream gives a prefix's subjects to one stream only.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from eventlog.stream import DEFAULT_PARTITIONS
from eventlog.subjects import MAX_PARTITIONS
from eventlog.transfer import MigrateReport, migrate_events
from projections.cli.documents import print_json
from projections.cli.options import EXIT_ERROR, EXIT_OK
from projections.cli.progress import progress_on_stderr
from projections.cli.render import console
from projections.cli.server import log_on, nats_server

if TYPE_CHECKING:
    from projections.cli.options import Commands, Target

__all__ = ["MigrateDocument", "add_migrate"]


class MigrateDocument(msgspec.Struct, frozen=True, kw_only=True):
    """``migrate``: what was copied where, and whether the target verifies as the source."""

    source: str
    target: str
    partitions: int
    events: int
    threads: int
    appended: int
    already_present: int
    root: str
    source_root: str
    not_migrated: tuple[int, ...]
    verified: bool


def _destination(target: Target, args: argparse.Namespace) -> Target:
    """The target's server and stream, reached with the source's credentials."""
    servers = tuple(url for url in (args.to_nats_url or "").split(",") if url)
    return dataclasses.replace(
        target,
        options=dataclasses.replace(target.options, servers=servers),
        data_dir=args.to_data_dir,
        stream=args.to,
    )


async def migrate(target: Target, args: argparse.Namespace) -> int:
    """Copy the stream into --to with --partitions; exit 1 unless the copy verifies."""
    destination = _destination(target, args)
    async with (
        log_on(target) as source,
        nats_server(destination, destination.data_dir) as url,
    ):
        with progress_on_stderr("migrate") as on_progress:
            report = await migrate_events(
                source,
                url.split(","),
                stream=destination.stream,
                partitions=args.partitions,
                options=destination.options,
                on_progress=on_progress,
            )
    code = EXIT_OK if report.verified else EXIT_ERROR
    if args.json:
        print_json(_document(target.stream, destination.stream, report))
        return code
    copied = (
        f"migrated {report.events} events of {report.threads} threads from stream "
        f"{target.stream} into stream {destination.stream} ({report.partitions} partitions); "
        f"{report.already_present} were there already"
    )
    out = console(args.color)
    if report.verified:
        out.print(f"{copied}; root {report.root}, the source's", style="bold")
        return code
    left_out = (
        f"; {len(report.not_migrated)} record(s) of the source that are not events were "
        "left out, so the target's sequences are not the source's"
        if report.not_migrated
        else ""
    )
    out.print(
        f"{copied}; but the target does not verify to the source's root: target "
        f"{report.root}, source {report.source_root}{left_out} (convlog verify says more)",
        style="bold red",
    )
    return code


def _document(source: str, target: str, report: MigrateReport) -> MigrateDocument:
    return MigrateDocument(
        source=source,
        target=target,
        partitions=report.partitions,
        events=report.events,
        threads=report.threads,
        appended=report.appended,
        already_present=report.already_present,
        root=report.root,
        source_root=report.source_root,
        not_migrated=report.not_migrated,
        verified=report.verified,
    )


def _partitions(text: str) -> int:
    """An argparse type: a partition count a stream may have."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_PARTITIONS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a partition count (1 to {MAX_PARTITIONS})"
        )
    return int(text)


def add_migrate(commands: Commands) -> None:
    """Add ``migrate``."""
    parser = commands.add(
        "migrate",
        migrate,
        "copy the stream into a new one with another partition count, on another server",
        output=True,
    )
    parser.add_argument("--to", required=True, metavar="STREAM", help="the target stream")
    parser.add_argument(
        "--partitions",
        type=_partitions,
        default=DEFAULT_PARTITIONS,
        help="the target's partition count; 1 is the unpartitioned layout (default: %(default)s)",
    )
    where = parser.add_argument_group(
        "the target's server: not the source's; reached with the source's credentials"
    ).add_mutually_exclusive_group(required=True)
    where.add_argument("--to-nats-url", metavar="URL[,URL]", help="its URLs")
    where.add_argument(
        "--to-data-dir",
        type=Path,
        metavar="DIR",
        help="the store of an embedded server (started here if none runs on it)",
    )
