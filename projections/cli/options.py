"""What every command shares: the options declared once, the Target they make, exit codes.

Connection settings follow the nats CLI's conventions, in its order of precedence: flags,
then the environment (``NATS_URL``, ``NATS_CREDS``, ``NATS_USER``, ``NATS_PASSWORD``,
``NATS_NKEY``, ``NATS_CERT``, ``NATS_KEY``, ``NATS_CA``), then the nats context named by
``--context`` or ``NATS_CONTEXT`` (else the selected one), so a machine set up for ``nats``
is set up for ``convlog``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from eventlog import ConnectOptions
from eventlog.server import DEFAULT_MAX_PAYLOAD

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_NO_SERVER",
    "EXIT_OK",
    "Commands",
    "Target",
    "aware_time",
    "positive_seconds",
]

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_NO_SERVER: Final = 2
EXIT_INTERRUPTED: Final = 130
EXIT_BROKEN_PIPE: Final = 141


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """Where a command reads and writes: the servers and credentials, the stream, its prefix.

    No servers means the embedded server on ``data_dir``.
    """

    options: ConnectOptions
    data_dir: Path | None
    stream: str
    subject_prefix: str
    max_payload: int = DEFAULT_MAX_PAYLOAD
    replicas: int | None = None
    """Copies of a stream this command creates; None: 1, or what an existing one has."""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Target:
        """The target the shared options name: flags > environment > nats context."""
        flags = ConnectOptions(
            servers=tuple(url for url in (args.nats_url or "").split(",") if url),
            connect_timeout=args.connect_timeout,
            creds_file=args.creds,
            user=args.user,
            password=args.password,
            nkeys_seed=args.nkey,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_ca=args.tls_ca,
        )
        context = ConnectOptions.from_context(args.context)
        return cls(
            options=flags.overriding(ConnectOptions.from_env().overriding(context)),
            data_dir=args.data_dir,
            stream=args.stream,
            subject_prefix=args.subject_prefix,
            max_payload=args.max_payload,
            replicas=args.replicas,
        )

    @property
    def nats_url(self) -> str | None:
        """The servers as one comma-separated URL, or None for the embedded server."""
        return ",".join(self.options.servers) or None


class Commands:
    """The ``convlog`` sub-commands, each made with the shared options as its parents."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self._commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
        self._shared = _shared_options()
        self._output = _output_options()

    def add(
        self,
        name: str,
        run: Callable[[Target, argparse.Namespace], Coroutine[object, object, int]],
        help_text: str,
        *,
        output: bool = False,
    ) -> argparse.ArgumentParser:
        """A sub-command; ``run(target, args)`` returns its exit code.

        ``output``: it prints a result, so it also takes --json and --color.
        """
        parents = [self._shared, self._output] if output else [self._shared]
        parser = self._commands.add_parser(name, parents=parents, help=help_text)
        parser.set_defaults(run=run)
        return parser


def _shared_options() -> argparse.ArgumentParser:
    """The options of every command: where the log is and how to reach it."""
    shared = argparse.ArgumentParser(add_help=False)
    nats = shared.add_argument_group("connection (flags > environment > nats context)")
    nats.add_argument(
        "--nats-url",
        metavar="URL[,URL]",
        help="NATS server URLs (default: $NATS_URL, the context's, else an embedded server)",
    )
    nats.add_argument("--context", help="a nats CLI context (default: $NATS_CONTEXT, selected)")
    nats.add_argument("--creds", metavar="FILE", help="a credentials file ($NATS_CREDS)")
    nats.add_argument("--user", help="user name ($NATS_USER)")
    nats.add_argument("--password", help="password ($NATS_PASSWORD)")
    nats.add_argument("--nkey", metavar="FILE", help="an NKey seed file ($NATS_NKEY)")
    nats.add_argument("--tls-cert", metavar="FILE", help="client certificate ($NATS_CERT)")
    nats.add_argument("--tls-key", metavar="FILE", help="client key ($NATS_KEY)")
    nats.add_argument("--tls-ca", metavar="FILE", help="CA to trust ($NATS_CA)")
    nats.add_argument(
        "--connect-timeout",
        type=positive_seconds,
        default=ConnectOptions().connect_timeout,
        help="seconds to wait for the server (default: %(default)s)",
    )
    log = shared.add_argument_group("the log")
    log.add_argument("--stream", default="CONVLOG", help="JetStream stream name")
    log.add_argument("--subject-prefix", default="convlog", help="subject prefix of events")
    log.add_argument(
        "--replicas",
        type=int,
        metavar="N",
        help="copies of the stream on a cluster: what a new stream is made with, and what an "
        "existing one must have (default: 1 for a new stream, else whatever it has)",
    )
    embedded = shared.add_argument_group("the embedded server (without a URL)")
    embedded.add_argument(
        "--data-dir",
        type=Path,
        help="its store, shared safely by every command that names it "
        "(default: the user data dir; for demo a temporary one)",
    )
    embedded.add_argument(
        "--max-payload",
        type=_positive_bytes,
        default=DEFAULT_MAX_PAYLOAD,
        metavar="BYTES",
        help="the largest message a server started here takes "
        "(default: %(default)s; ignored when attaching)",
    )
    shared.add_argument(
        "-v", "--verbose", action="store_true", help="also log warnings, e.g. reconnects"
    )
    return shared


def _output_options() -> argparse.ArgumentParser:
    """The options of every command that prints a result."""
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument(
        "--json", action="store_true", help="print the result as JSON (schema: docs/cli.md)"
    )
    output.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the text (default: on a terminal, unless NO_COLOR is set)",
    )
    return output


def positive_seconds(text: str) -> float:
    """An argparse type: a number of seconds greater than zero."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _positive_bytes(text: str) -> int:
    """An argparse type: a whole number of bytes greater than zero."""
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number of bytes")
    return int(text)


def aware_time(text: str) -> datetime:
    """An argparse type: an ISO 8601 time with its offset (e.g. 2026-01-31T12:00:00+00:00)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"time {text!r} needs an offset, e.g. {text}+00:00")
    return value
