"""Health: how a store is doing, as every store reports it."""

from __future__ import annotations

from typing import Literal

import msgspec

from projections.fold import SkippedEvent
from projections.snapshot import SnapshotHealth

__all__ = ["Health"]


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """How a store is doing: ``status`` is "ok", "degraded" or "failed".

    Degraded: the server is away (reads still answer, writes fail), or the views have been
    behind the stream without moving for a while. Failed: the projection stopped. Unlike
    the seed's ``health_check() -> Result<()>``, this reports and does not raise.
    """

    status: Literal["ok", "degraded", "failed"]
    applied_sequence: int
    connected: bool
    stream_sequence: int | None = None
    """The stream's last sequence when asked (None when the server could not be asked)."""
    skipped: tuple[SkippedEvent, ...] = ()
    detail: str = ""
    snapshots: SnapshotHealth = msgspec.field(default_factory=SnapshotHealth)
    """Which snapshot the views started from, and snapshots rejected or written."""

    @property
    def ok(self) -> bool:
        """True when the store can both write and read current state."""
        return self.status == "ok"
