"""The ``convlog`` command: one module per group of commands, this one parses and runs them.

- ``demo``: the log end to end (:mod:`.demo`); ``serve``: a projection kept running
  (:mod:`.serve`); ``tail``: events as they are written (:mod:`.tail`).
- ``history``, ``replay``, ``show``: what happened (:mod:`.evidence`); ``verify``,
  ``stats``, ``rebuild``, ``snapshot``: whether the log is whole and the views right
  (:mod:`.checks`); ``export``, ``import``: JSON Lines (:mod:`.transfer`); ``migrate``: a
  stream copied into another partition count (:mod:`.migrate`).
- Shared options and the :class:`~.options.Target` they make (:mod:`.options`), the
  embedded server and signals (:mod:`.server`), text (:mod:`.render`, through rich),
  ``--json`` documents (:mod:`.documents`, schemas in docs/cli.md), progress on stderr
  (:mod:`.progress`).

The parser is argparse, not click or typer: the commands are coroutines given a Target,
the options every command shares are declared once as a parent parser, and argparse has
mutually exclusive groups (``--at`` or ``--as-of``), which click lacks; a framework would
add a dependency and decorators without removing code.

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
import sys
from typing import TYPE_CHECKING

from eventlog import ConvlogError, EmbeddedServerError
from projections.cli.checks import add_checks
from projections.cli.demo import add_demo
from projections.cli.evidence import add_evidence
from projections.cli.migrate import add_migrate
from projections.cli.options import (
    EXIT_BROKEN_PIPE,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_NO_SERVER,
    Commands,
    Target,
)
from projections.cli.serve import add_serve
from projections.cli.server import until_signalled
from projections.cli.tail import add_tail
from projections.cli.transfer import add_transfer

if TYPE_CHECKING:
    from collections.abc import Coroutine, Iterator, Sequence

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``convlog`` argument parser, with one sub-command per job."""
    parser = argparse.ArgumentParser(
        prog="convlog", description="An event-sourced conversation log on NATS JetStream."
    )
    commands = Commands(parser)
    for add in (
        add_demo,
        add_serve,
        add_tail,
        add_evidence,
        add_checks,
        add_transfer,
        add_migrate,
    ):
        add(commands)
    return parser


@contextlib.contextmanager
def _logging_to_stderr(*, verbose: bool) -> Iterator[None]:
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
    try:
        target = Target.from_args(args)
        command: Coroutine[object, object, int] = args.run(target, args)
        with _logging_to_stderr(verbose=args.verbose):
            return asyncio.run(until_signalled(command))
    except BrokenPipeError:
        # The reader went away (`convlog tail | head`): stop quietly, as `cat` would.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except EmbeddedServerError as err:
        print(f"convlog: {_one_line(err)}", file=sys.stderr)
        return EXIT_NO_SERVER
    except ConvlogError as err:
        print(f"convlog: {_one_line(err)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _one_line(err: BaseException) -> str:
    """The error's message with its whitespace folded onto one line."""
    return " ".join(str(err).split()) or type(err).__name__
