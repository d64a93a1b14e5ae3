"""ConnectionState: whether the NATS client is connected now, as something to await."""

from __future__ import annotations

import asyncio
import collections
import logging
import re
from typing import TYPE_CHECKING, Final

import nats.errors

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ConnectionState"]

logger = logging.getLogger(__name__)

_DENIED: Final = re.compile(
    r'permissions violation for (?:publish|subscription) to "([^"]+)"', re.IGNORECASE
)


class ConnectionState:
    """Tracks the client's connection through its callbacks, so readers can await it."""

    def __init__(self) -> None:
        self._connected = asyncio.Event()
        self._disconnected = asyncio.Event()
        self.reconnects = 0
        """How many times the client has reconnected since it first connected."""
        self._listeners: list[Callable[[], None]] = []
        self._denial_listeners: list[Callable[[str], None]] = []
        self._denied: collections.deque[str] = collections.deque(maxlen=64)
        self.denials = 0
        """How many publishes the server has refused for lack of permission."""
        self._refused = asyncio.Event()

    def when_denied(self, listener: Callable[[str], None]) -> None:
        """Call ``listener`` with each subject the server refuses us (it must not block)."""
        self._denial_listeners.append(listener)

    def when_reconnected(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every reconnect (it must not block)."""
        self._listeners.append(listener)

    @property
    def is_connected(self) -> bool:
        """Connected right now."""
        return self._connected.is_set()

    async def on_connected(self) -> None:
        """The first connect succeeded."""
        self._disconnected.clear()
        self._connected.set()

    async def on_disconnected(self) -> None:
        """The client lost the server; it keeps trying on its own."""
        self._connected.clear()
        self._disconnected.set()

    async def on_reconnected(self) -> None:
        """The client is back."""
        self.reconnects += 1
        self._disconnected.clear()
        self._connected.set()
        for listener in self._listeners:
            listener()

    async def on_error(self, err: Exception) -> None:
        """Log the client's asynchronous errors; remember subjects the server refused us."""
        if (
            isinstance(err, nats.errors.AuthorizationError)
            or "authorization violation" in str(err).lower()
        ):
            self._refused.set()
        if denied := _DENIED.search(str(err)):
            subject = denied.group(1).lower()  # nats-py lowercases the message
            self._denied.append(subject)
            self.denials += 1
            for listener in self._denial_listeners:
                listener(subject)
        logger.warning("nats: %s", err)

    def was_denied(self, subject: str) -> bool:
        """Whether the server recently refused this connection ``subject`` (no permission).

        The server answers a forbidden publish with an asynchronous error, never with a
        reply, so a request to such a subject can only time out; this tells why.
        """
        return subject.lower() in self._denied

    def denied_since(self, denials: int) -> str | None:
        """The subject last refused, if any was refused since ``denials`` was read."""
        return self._denied[-1] if self.denials > denials else None

    async def wait_refused(self) -> None:
        """Return once the server has refused our credentials."""
        await self._refused.wait()

    async def wait(self) -> None:
        """Return once the client is connected."""
        await self._connected.wait()

    async def wait_disconnected(self) -> None:
        """Return once the client has noticed it lost the server."""
        await self._disconnected.wait()
