"""Security: the permissions of a tenant-scoped store.

A store opened with ``tenant_id`` appends to, follows and subscribes to that tenant's
subjects only, and asks JetStream for nothing it cannot ask in a form whose subject
names them. So an operator can confine each tenant's user to its own events: paste
``TenantPermissions.for_tenant("acme").server_config()`` into that user's entry of the
server's ``authorization`` block, and connect the store with the same ``inbox_prefix``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from eventlog.stream import DEFAULT_PARTITIONS
from eventlog.subjects import Subjects, encode_token

__all__ = ["TenantPermissions"]


@dataclass(frozen=True, slots=True)
class TenantPermissions:
    """The subjects one tenant's user may publish and subscribe to."""

    inbox_prefix: str
    """Give this to :class:`~eventlog.ConnectOptions`: replies come back under it."""
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]

    @classmethod
    def for_tenant(
        cls,
        tenant_id: str,
        *,
        stream: str = "CONVLOG",
        subject_prefix: str = "convlog",
        partitions: int = DEFAULT_PARTITIONS,
    ) -> TenantPermissions:
        """The permissions of ``tenant_id`` on ``stream`` (of ``partitions`` partitions).

        Its own subjects; consumers whose filter (in the create subject) is its own
        subjects; info, next-message and delete of consumers by name (names are random
        and cannot be listed); direct gets of its own subjects' last records; flow-control
        replies; and stream info (which does tell message counts, and subject names if
        asked: see the README's "Security").
        """
        subjects = Subjects(subject_prefix, partitions)
        own = subjects.tenant(tenant_id)  # what it reads: stored subjects
        published = f"{subject_prefix}.{encode_token(tenant_id)}.*"  # what it writes
        api = f"$JS.API.CONSUMER.{{}}.{stream}"
        inbox = f"_INBOX_{encode_token(tenant_id)}"
        return cls(
            inbox_prefix=inbox,
            publish=(
                published,
                f"$JS.API.STREAM.INFO.{stream}",
                f"{api.format('CREATE')}.*.{own}",
                f"{api.format('INFO')}.*",
                f"{api.format('DELETE')}.*",
                f"{api.format('MSG.NEXT')}.*",
                f"$JS.API.DIRECT.GET.{stream}.{own}",
                f"$JS.FC.{stream}.>",
                f"$JS.ACK.{stream}.>",
            ),
            subscribe=(f"{inbox}.>",),
        )

    def server_config(self) -> str:
        """The ``permissions`` block of a nats-server user, in its config syntax."""
        return (
            "permissions: {\n"
            f"  publish: {{ allow: {json.dumps(list(self.publish))} }}\n"
            f"  subscribe: {{ allow: {json.dumps(list(self.subscribe))} }}\n"
            "}"
        )
