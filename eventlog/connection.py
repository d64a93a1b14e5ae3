"""ConnectionState: whether the NATS client is connected now, as something to await."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ConnectionState"]


class ConnectionState:
    """Tracks the client's connection through its callbacks, so readers can await it."""

    def __init__(self) -> None:
        self._connected = asyncio.Event()
        self._disconnected = asyncio.Event()
        self.reconnects = 0
        """How many times the client has reconnected since it first connected."""
        self._listeners: list[Callable[[], None]] = []

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

    async def wait(self) -> None:
        """Return once the client is connected."""
        await self._connected.wait()

    async def wait_disconnected(self) -> None:
        """Return once the client has noticed it lost the server."""
        await self._disconnected.wait()
