"""ConnectionState: whether the NATS client is connected now, as something to await."""

from __future__ import annotations

import asyncio

__all__ = ["ConnectionState"]


class ConnectionState:
    """Tracks the client's connection through its callbacks, so readers can await it."""

    def __init__(self) -> None:
        self._connected = asyncio.Event()
        self.reconnects = 0
        """How many times the client has reconnected since it first connected."""

    @property
    def is_connected(self) -> bool:
        """Connected right now."""
        return self._connected.is_set()

    async def on_connected(self) -> None:
        """The first connect succeeded."""
        self._connected.set()

    async def on_disconnected(self) -> None:
        """The client lost the server; it keeps trying on its own."""
        self._connected.clear()

    async def on_reconnected(self) -> None:
        """The client is back."""
        self.reconnects += 1
        self._connected.set()

    async def wait(self) -> None:
        """Return once the client is connected."""
        await self._connected.wait()
