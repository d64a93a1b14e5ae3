"""The stream that holds the log: its settings, its configuration, and whether it is fit.

An existing stream is used only if it keeps every event forever, on disk, deduplicated:
a stream that could drop, expire or duplicate history would make a broken audit log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import nats.js.errors
from nats.js import api

from eventlog.errors import ValidationError
from eventlog.subjects import Subjects

if TYPE_CHECKING:
    from nats.js import JetStreamContext

    from eventlog._nats import NatsErrors

__all__ = ["NAME", "StreamSettings", "ensure_stream"]

NAME: Final = re.compile(r"[A-Za-z0-9_\-]{1,255}")
"""What JetStream takes as a stream or consumer name."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamSettings:
    """How the stream is named and kept. Defaults suit one node; use replicas=3 on a cluster."""

    name: str = "CONVLOG"
    subject_prefix: str = "convlog"
    replicas: int = 1
    duplicate_window: float = 120.0
    """Seconds during which a retried event id is recognised and stored once."""

    def __post_init__(self) -> None:
        if not NAME.fullmatch(self.name):
            raise ValidationError(
                f"stream name {self.name!r} must be letters, digits, '_' or '-' (at most 255)"
            )
        Subjects(self.subject_prefix)  # validates the prefix

    def config(self, *, atomic: bool) -> api.StreamConfig:
        """The configuration the stream is created with."""
        return api.StreamConfig(
            name=self.name,
            subjects=[Subjects(self.subject_prefix).all],
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.LIMITS,
            num_replicas=self.replicas,
            duplicate_window=self.duplicate_window,
            deny_delete=True,
            deny_purge=True,
            allow_direct=True,
            allow_atomic=True if atomic else None,
        )


async def ensure_stream(
    js: JetStreamContext, settings: StreamSettings, errors: NatsErrors, *, atomic: bool
) -> bool:
    """Create the stream, or check that the existing one is fit; whether it takes batches."""
    with errors.translating(
        f"read the info of stream {settings.name!r}",
        unanswered="JetStream did not answer; is it enabled?",
    ):
        try:
            info = await js.stream_info(settings.name)
        except nats.js.errors.NotFoundError:
            info = None
    if info is None:
        with errors.translating("create the stream"):
            await js.add_stream(settings.config(atomic=atomic))
        return atomic
    if problems := unfit(info.config, Subjects(settings.subject_prefix).all):
        raise ValidationError(
            f"stream {settings.name!r} exists but is not fit for an audit log: "
            + "; ".join(problems)
            + ". Use another stream name or fix its configuration."
        )
    return atomic and bool(info.config.allow_atomic)


def unfit(existing: api.StreamConfig, subjects: str) -> list[str]:
    """Why an existing stream would not keep an audit log on ``subjects``; [] if it would."""
    problems = []
    if (existing.subjects or []) != [subjects]:
        problems.append(f"its subjects are {existing.subjects}, not [{subjects!r}]")
    if not existing.deny_delete or not existing.deny_purge:
        problems.append("it allows deleting or purging messages")
    limits = {
        "max_msgs": existing.max_msgs,
        "max_bytes": existing.max_bytes,
        "max_age": existing.max_age,
        "max_msgs_per_subject": existing.max_msgs_per_subject,
    }
    problems += [
        f"{name} = {value} would drop history"
        for name, value in limits.items()
        if value not in (None, 0, -1)
    ]
    if existing.allow_msg_ttl:
        problems.append("per-message TTLs (allow_msg_ttl) would let events expire")
    if not existing.duplicate_window:
        problems.append("it has no duplicate window, so retried appends would be stored twice")
    if existing.storage != api.StorageType.FILE:
        problems.append("it is kept in memory, not on disk")
    if not existing.allow_direct:
        problems.append("direct get is off (allow_direct), which retries rely on")
    return problems
