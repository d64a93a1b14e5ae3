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

__all__ = ["DEFAULT_PARTITIONS", "NAME", "StreamLayout", "StreamSettings", "ensure_stream"]

NAME: Final = re.compile(r"[A-Za-z0-9_\-]{1,255}")
"""What JetStream takes as a stream or consumer name."""

DEFAULT_PARTITIONS: Final = 64
"""Partitions of a new stream unless asked otherwise."""

_MAX_REPLICAS: Final = 5
"""The most copies JetStream keeps of a stream."""

_TRANSFORM: Final = re.compile(r"\{\{partition\((\d+),2\)\}\}")


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamSettings:
    """How the stream is named and kept. Defaults suit one node; use replicas=3 on a cluster."""

    name: str = "CONVLOG"
    subject_prefix: str = "convlog"
    replicas: int | None = None
    """Copies of the stream on a cluster; None: 1 for a new stream, or whatever an existing
    one has. Asked explicitly, an existing stream with another count is refused."""
    duplicate_window: float = 120.0
    """Seconds during which a retried event id is recognised and stored once."""
    partitions: int | None = None
    """Partitions of the stream; None: DEFAULT_PARTITIONS for a new stream, or whatever an
    existing one has. 1 is the unpartitioned layout (streams made before partitions)."""

    def __post_init__(self) -> None:
        if not NAME.fullmatch(self.name):
            raise ValidationError(
                f"stream name {self.name!r} must be letters, digits, '_' or '-' (at most 255)"
            )
        self.subjects(1 if self.partitions is None else self.partitions)  # validates both
        if self.replicas is not None and not 1 <= self.replicas <= _MAX_REPLICAS:
            raise ValidationError(
                f"a stream has 1 to {_MAX_REPLICAS} replicas, not {self.replicas}"
            )

    def subjects(self, partitions: int) -> Subjects:
        """The subject layout of this stream with ``partitions`` partitions."""
        return Subjects(self.subject_prefix, partitions)

    def config(self, *, atomic: bool) -> api.StreamConfig:
        """The configuration the stream is created with."""
        subjects = self.subjects(self.partitions or DEFAULT_PARTITIONS)
        return api.StreamConfig(
            name=self.name,
            subjects=[subjects.published if subjects.partitioned else subjects.all],
            subject_transform=api.SubjectTransform(src=subjects.published, dest=subjects.transform)
            if subjects.partitioned
            else None,
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.LIMITS,
            num_replicas=self.replicas or 1,
            duplicate_window=self.duplicate_window,
            deny_delete=True,
            deny_purge=True,
            allow_direct=True,
            allow_atomic=True if atomic else None,
        )


@dataclass(frozen=True, slots=True)
class StreamLayout:
    """What the stream turned out to be: its subject layout, and whether it takes batches."""

    subjects: Subjects
    atomic: bool
    replicas: int
    """Copies the stream is kept in: what buckets kept beside it are made with."""


async def ensure_stream(
    js: JetStreamContext, settings: StreamSettings, errors: NatsErrors, *, atomic: bool
) -> StreamLayout:
    """Create the stream, or check that the existing one is fit and has the layout asked."""
    with errors.translating(
        f"read the info of stream {settings.name!r}",
        unanswered="JetStream did not answer; is it enabled?",
    ):
        try:
            info = await js.stream_info(settings.name)
        except nats.js.errors.NotFoundError:
            info = None
    if info is None:
        config = settings.config(atomic=atomic)
        with errors.translating("create the stream"):
            await js.add_stream(config)
        return StreamLayout(
            settings.subjects(partitions_of(config)), atomic, config.num_replicas or 1
        )
    found = partitions_of(info.config)
    layout = settings.subjects(found)
    problems = unfit(info.config, layout)
    if settings.partitions not in (None, found):
        problems.insert(0, f"it has {found} partition(s), not the {settings.partitions} asked for")
    copies = info.config.num_replicas or 1
    if settings.replicas not in (None, copies):
        problems.insert(
            0, f"it is kept in {copies} replica(s), not the {settings.replicas} asked for"
        )
    if problems:
        raise ValidationError(
            f"stream {settings.name!r} exists but is not fit for an audit log: "
            + "; ".join(problems)
            + ". Use another stream name or fix its configuration."
        )
    return StreamLayout(layout, atomic and bool(info.config.allow_atomic), copies)


def partitions_of(config: api.StreamConfig) -> int:
    """The partition count a stream's subject transform records; 1 without one."""
    transform = config.subject_transform
    found = _TRANSFORM.search(transform.dest) if transform is not None else None
    return int(found[1]) if found else 1


def unfit(existing: api.StreamConfig, layout: Subjects) -> list[str]:
    """Why an existing stream would not keep an audit log in ``layout``; [] if it would."""
    problems = []
    subjects = layout.published if layout.partitioned else layout.all
    if (existing.subjects or []) != [subjects]:
        problems.append(f"its subjects are {existing.subjects}, not [{subjects!r}]")
    transform = existing.subject_transform
    if layout.partitioned and (
        transform is None or (transform.src, transform.dest) != (subjects, layout.transform)
    ):
        problems.append(f"its subject transform is not {subjects!r} -> {layout.transform!r}")
    if not layout.partitioned and transform is not None:
        problems.append(f"its subject transform {transform.src!r} -> {transform.dest!r} is unknown")
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
