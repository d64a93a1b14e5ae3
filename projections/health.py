"""Health: how a store is doing, as every store reports it."""

from __future__ import annotations

from typing import Literal

import msgspec

from projections.snapshot import SnapshotHealth
from projections.views import SkippedEvent

__all__ = ["Health"]


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """How a store is doing: ``status`` is "ok", "degraded" (server away) or "failed"."""

    status: Literal["ok", "degraded", "failed"]
    applied_sequence: int
    connected: bool
    skipped: tuple[SkippedEvent, ...] = ()
    detail: str = ""
    snapshots: SnapshotHealth = msgspec.field(default_factory=SnapshotHealth)
    """Which snapshot the views started from, and snapshots rejected or written."""

    @property
    def ok(self) -> bool:
        """True when the store can both write and read current state."""
        return self.status == "ok"
