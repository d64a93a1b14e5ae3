"""The one place that knows nats-py's failures, reply shapes and private attributes.

Every call into nats-py runs inside :meth:`NatsErrors.translating`, which turns each way
it can fail into the convlog error, the same way for every call (as httpx's
``map_httpcore_exceptions`` does for httpcore):

```
the server refused the subject (its async permission error)   PermissionDeniedError
no responders, timeout, connection closed, draining,           UnavailableError
  reconnecting, outbound buffer full, JetStream off
JetStream API error: wrong last sequence                       ConflictError
JetStream API error: a bad request (code 400)                  ValidationError
JetStream API error: unavailable (503), the consumer is gone   UnavailableError
any other JetStream API error, any other nats-py error         ConvlogError
```
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Final

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg

from eventlog.errors import (
    ConflictError,
    ConvlogError,
    PermissionDeniedError,
    UnavailableError,
    ValidationError,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from nats.aio.client import Client
    from nats.js import JetStreamContext

    from eventlog.connection import ConnectionState

__all__ = [
    "JS_MESSAGE_TOO_LARGE",
    "JS_STREAM_NAME_IN_USE",
    "JS_WRONG_LAST_SEQUENCE",
    "ApiError",
    "NatsErrors",
    "PubAck",
    "ack_tokens",
    "consumer_name",
    "server_at_least",
]

# JetStream API error codes (err_code in a pub ack or API response).
JS_WRONG_LAST_SEQUENCE: Final = 10071
JS_BATCH_WRONG_LAST_SEQUENCE: Final = 10164
JS_NOT_ENABLED_FOR_ACCOUNT: Final = 10039
JS_MESSAGE_TOO_LARGE: Final = 10054
JS_CONSUMER_NOT_FOUND: Final = 10014
JS_STREAM_NAME_IN_USE: Final = 10058
"""A stream of that name exists with another configuration (e.g. made by another process)."""
_BAD_REQUEST: Final = 400
_SERVICE_UNAVAILABLE: Final = 503


class ApiError(msgspec.Struct):
    """The ``error`` of a JetStream API response or pub ack."""

    code: int = 0
    err_code: int = 0
    description: str = ""


class PubAck(msgspec.Struct):
    """A stream's answer to a publish: where it stored it, or why not."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    count: int = 0
    error: ApiError | None = None


_UNSENT: Final[dict[type[nats.errors.Error], str]] = {
    nats.errors.ConnectionClosedError: "the connection is closed",
    nats.errors.ConnectionDrainingError: "the connection is draining",
    nats.errors.ConnectionReconnectingError: "the client is reconnecting",
    nats.errors.OutboundBufferLimitError: "the client is reconnecting and its buffer is full",
    nats.errors.StaleConnectionError: "the connection went stale",
}
"""Failures before anything reached the server, and how each reads; nothing was sent."""

_NO_RESPONDERS: Final = (
    nats.errors.NoRespondersError,
    nats.js.errors.NoStreamResponseError,  # nats-py's no responders to a JetStream publish
    nats.js.errors.ServiceUnavailableError,  # ... and to a JetStream API request
)


class NatsErrors:
    """How one connection's nats-py failures read as convlog errors."""

    def __init__(self, nc: Client, url: str, connection: ConnectionState) -> None:
        self._nc = nc
        self._url = url
        self._connection = connection

    @contextlib.contextmanager
    def translating(
        self, what: str, *, subject: str | None = None, unanswered: str | None = None
    ) -> Iterator[None]:
        """Raise the convlog error for any nats-py failure inside; ``what`` is the action.

        ``what`` completes "these credentials may not ..."; ``subject``, when the call
        publishes to one, is checked against the subjects the server refused us (it never
        answers a refused publish, so the request can only time out); ``unanswered``
        replaces the reason given for a timeout.
        """
        denials = self._connection.denials
        try:
            yield
        except nats.errors.Error as err:
            raise self._translated(err, what, subject, denials, unanswered) from err

    def refused(
        self, error: ApiError, what: str, *, where: str | None = None, expected: int | None = None
    ) -> ConvlogError:
        """The convlog error for a JetStream API ``error`` answering ``what``.

        A conflict names ``where`` (the subject or batch) and the ``expected`` sequence.
        """
        if error.err_code in (JS_WRONG_LAST_SEQUENCE, JS_BATCH_WRONG_LAST_SEQUENCE):
            return ConflictError(where or what, expected, _actual_sequence(error.description))
        if error.err_code == JS_NOT_ENABLED_FOR_ACCOUNT:
            advice = "enable it for the account (`jetstream: enabled` in its configuration)"
            return UnavailableError(
                self._url,
                "JetStream is not enabled for this account",
                message=f"JetStream is not enabled for this account on {self._where}; {advice}.",
            )
        if error.err_code == JS_CONSUMER_NOT_FOUND:
            return UnavailableError(self._url, f"cannot {what}: the server no longer has it")
        if error.code == _SERVICE_UNAVAILABLE:
            return UnavailableError(self._url, f"cannot {what}: {error.description}")
        message = f"JetStream refused to {what}: {error.description} (error {error.err_code})"
        if error.code == _BAD_REQUEST:
            return ValidationError(message)
        return ConvlogError(message)

    def _translated(
        self,
        err: nats.errors.Error,
        what: str,
        subject: str | None,
        denials: int,
        unanswered: str | None,
    ) -> ConvlogError:
        if isinstance(err, (nats.errors.TimeoutError, *_NO_RESPONDERS)) and (
            denied := self._denied(subject, denials)
        ):
            refused = "" if denied == subject else f" (the server refused {denied!r})"
            return PermissionDeniedError(f"these credentials may not {what}{refused}")
        if isinstance(err, nats.errors.TimeoutError):
            return UnavailableError(self._url, unanswered or f"no answer when trying to {what}")
        if isinstance(err, _NO_RESPONDERS) and not (
            isinstance(err, nats.js.errors.APIError) and err.err_code
        ):
            return self._no_responders(what)
        if isinstance(err, nats.js.errors.APIError):
            # nats-py's not-found errors carry no description: their name says it
            error = ApiError(
                err.code or 0, err.err_code or 0, err.description or type(err).__name__
            )
            return self.refused(error, what)
        for kind, reason in _UNSENT.items():
            if isinstance(err, kind):
                return UnavailableError(self._url, f"cannot {what}: {reason}, nothing was sent")
        return ConvlogError(f"could not {what}: {type(err).__name__} {err}")

    def _denied(self, subject: str | None, denials: int) -> str | None:
        # A call that names its subject is refused only if that subject was: another
        # subject refused meanwhile on the same connection must not turn a timeout into a
        # permanent error (a retried append would then never be retried).
        if subject is not None:
            return subject if self._connection.was_denied(subject) else None
        return self._connection.denied_since(denials)

    def _no_responders(self, what: str) -> UnavailableError:
        if not jetstream_enabled(self._nc):
            advice = "start nats-server with -js, or add `jetstream {}` to its configuration"
            return UnavailableError(
                self._url,
                "JetStream is not enabled",
                message=f"JetStream is not enabled on {self._where}; {advice}.",
            )
        return UnavailableError(self._url, f"nothing answers when trying to {what}")

    @property
    def _where(self) -> str:
        connected = self._nc.connected_url
        return connected.geturl() if connected else self._url


def _actual_sequence(description: str) -> int | None:
    """Pull the subject's actual last sequence out of 'wrong last sequence: N'."""
    _, _, tail = description.rpartition(":")
    return int(tail) if tail.strip().isdigit() else None


# --- nats-py's private attributes, each behind one named function ------------------------


def server_at_least(nc: Client, major: int, minor: int) -> bool:
    """Whether the server's INFO gives a version of at least ``major.minor`` (no getter)."""
    version = str(nc._server_info.get("version", "0.0.0"))  # noqa: SLF001
    parts = version.split("-", maxsplit=1)[0].split(".")
    try:
        return (int(parts[0]), int(parts[1])) >= (major, minor)
    except (IndexError, ValueError):
        return False


def jetstream_enabled(nc: Client) -> bool:
    """Whether the server's INFO says JetStream is on (a server without it leaves the flag out)."""
    return bool(nc._server_info.get("jetstream"))  # noqa: SLF001


def consumer_name(
    subscription: JetStreamContext.PushSubscription | JetStreamContext.PullSubscription,
) -> str:
    """The name of the consumer a JetStream subscription reads from."""
    return str(subscription._consumer)  # noqa: SLF001


def ack_tokens(reply: str) -> list[str]:
    """The tokens of a JetStream message's ack subject, its form checked by nats-py."""
    return list(Msg.Metadata._get_metadata_fields(reply))  # noqa: SLF001
