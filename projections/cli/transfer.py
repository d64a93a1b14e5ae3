"""``convlog export`` and ``import``: events moved between streams as JSON Lines.

The export carries each stored event byte for byte, so its hash links still hold; the
import checks the whole file before it appends anything, and is idempotent.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING

from eventlog import ImportRejectedError, export_events, import_events
from projections.cli.documents import ExportDocument, ImportDocument, print_json
from projections.cli.options import EXIT_OK
from projections.cli.progress import progress_on_stderr
from projections.cli.render import console
from projections.cli.server import log_on

if TYPE_CHECKING:
    import argparse

    from projections.cli.options import Commands, Target

__all__ = ["add_transfer"]


async def export(target: Target, args: argparse.Namespace) -> int:
    """Write the events in scope as JSON Lines to --output or standard output.

    The summary goes to stderr: standard output may be the export itself.
    """
    async with log_on(target) as log:
        with (
            contextlib.nullcontext(sys.stdout.buffer)
            if args.output is None
            else args.output.open("wb")
        ) as out:
            report = await export_events(log, out, tenant_id=args.tenant, thread_id=args.thread)
    document = ExportDocument(
        stream=target.stream,
        events=report.events,
        threads=report.threads,
        root=report.root,
        not_exported=report.not_exported,
    )
    if args.json:
        print_json(document, stderr=True)
        return EXIT_OK
    skipped = f"; {len(report.not_exported)} records that are not events were left out"
    console(args.color, stderr=True).print(
        f"exported {report.events} events from stream {target.stream}, root {report.root}"
        + (skipped if report.not_exported else "")
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
    with _export_file(args.file) as lines:
        async with log_on(target) as log:
            with progress_on_stderr("import") as on_progress:
                report = await import_events(
                    log, lines, allow_missing_root=args.allow_missing_root, on_progress=on_progress
                )
    document = ImportDocument(
        stream=target.stream,
        appended=report.appended,
        already_present=report.already_present,
        threads=report.threads,
    )
    if args.json:
        print_json(document)
        return EXIT_OK
    console(args.color).print(
        f"imported {report.appended} events into stream {target.stream} across "
        f"{report.threads} threads ({report.already_present} were there already)"
    )
    return EXIT_OK


def add_transfer(commands: Commands) -> None:
    """Add ``export`` and ``import``."""
    parser = commands.add("export", export, "write events as JSON Lines", output=True)
    parser.add_argument("--tenant", help="only this tenant's events")
    parser.add_argument("--thread", help="only this thread's events")
    parser.add_argument("--output", "-o", type=Path, help="write here, not to standard output")

    parser = commands.add(
        "import", import_, "append the events of an export to this stream", output=True
    )
    parser.add_argument("file", nargs="?", type=Path, help="an export (default: standard input)")
    parser.add_argument(
        "--allow-missing-root",
        action="store_true",
        help="take an export without a root trailer (made before convlog wrote one); its "
        "threads' last events and a cut-off end then go unchecked",
    )
