"""Schema evolution: events stored in an older shape are upcast as the fold reads them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
import nats
import pytest

from eventlog import (
    SCHEMA_VERSION,
    MalformedEventError,
    Message,
    MessageCreated,
    TextPart,
    Thread,
    Upcasters,
    ValidationError,
)
from eventlog.events import EventCodec, event_digest
from projections import rebuild

if TYPE_CHECKING:
    from conftest import StoreFactory

    from eventlog import StreamSettings


def v0_message_created(thread: Thread, message_id: str, text: str, prev: bytes) -> bytes:
    """A message.created event as the draft shape (version 0) wrote it: ``text``, no parts."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return msgspec.json.encode(
        {
            "type": "message.created",
            "schema_version": 0,
            "event_id": f"evt_v0_{message_id}",
            "occurred_at": now,
            "tenant_id": str(thread.tenant_id),
            "thread_id": str(thread.id),
            "message_id": message_id,
            "prev_hash": event_digest(prev),
            "message": {
                "id": message_id,
                "thread_id": str(thread.id),
                "parent_type": "user_message",
                "role": "user",
                "text": text,
                "created_at": now,
                "metadata": {},
            },
        }
    )


async def test_a_stream_holding_a_version_0_event_replays_in_the_current_shape(
    connect_store: StoreFactory, nats_url: str, stream_settings: StreamSettings
) -> None:
    """A v0 event written raw into the stream is upcast by every fold: live, restart, rebuild."""
    writer = await connect_store()
    thread = Thread.new("acme", "alice")
    await writer.create_thread(thread)
    subject = writer.log.subjects.thread(thread.tenant_id, thread.id)
    head = writer.views.head(subject)
    assert head is not None
    old = v0_message_created(thread, "msg_old", "written long ago", head.payload)
    nc = await nats.connect(nats_url)
    ack = await nc.jetstream().publish(subject, old, stream=stream_settings.name)
    await nc.close()
    await writer.wait_for(ack.seq)

    for store in (writer, await connect_store()):
        message = await store.get_message("msg_old")
        assert message is not None
        assert message.content == "written long ago"
        assert message.parts == (TextPart(text="written long ago"),)
        assert (await store.health_check()).skipped == ()
    rebuilt = await rebuild(writer.log)
    assert rebuilt.digest == writer.views.digest()
    history = await writer.history("msg_old")
    assert history[0].event.schema_version == SCHEMA_VERSION
    assert history[0].data == old  # the stored bytes stay as they were written
    assert (await writer.verify()).ok


def test_current_events_skip_the_upcasters_and_newer_ones_are_refused() -> None:
    """An event of this code's version decodes directly; a newer one is refused, not guessed."""
    calls: list[int] = []
    upcasters = Upcasters()

    @upcasters.register("message.created", SCHEMA_VERSION)
    def spy(event: dict[str, Any]) -> dict[str, Any]:
        calls.append(1)
        return event

    codec = EventCodec(upcasters=upcasters)
    thread = Thread.new("acme", "alice")
    payload = msgspec.json.encode(
        {
            "type": "thread.deleted",
            "schema_version": SCHEMA_VERSION + 1,
            "event_id": "evt_1",
            "occurred_at": "2026-01-01T00:00:00Z",
            "tenant_id": str(thread.tenant_id),
            "thread_id": str(thread.id),
            "deleted_at": "2026-01-01T00:00:00Z",
        }
    )
    with pytest.raises(MalformedEventError, match="newer than this code reads"):
        codec.decode(payload)
    current = codec.encode(
        MessageCreated(
            event_id="evt_2",
            occurred_at=datetime.now(UTC),
            tenant_id=thread.tenant_id,
            thread_id=thread.id,
            message=Message.user(thread.id, "now"),
        )
    )
    assert codec.decode(current).event_type == "message.created"
    assert calls == []


def test_upcasters_chain_steps_and_refuse_a_second_registration() -> None:
    """Steps run in version order, types without a step only change version, duplicates fail."""
    upcasters = Upcasters()

    @upcasters.register("thread.created", 0)
    def rename(event: dict[str, Any]) -> dict[str, Any]:
        return {**event, "seen": [*event.get("seen", []), 0]}

    @upcasters.register("thread.created", 2)
    def again(event: dict[str, Any]) -> dict[str, Any]:
        return {**event, "seen": [*event["seen"], 2]}

    result = upcasters.upcast({"type": "thread.created"}, version=0, target=3)
    assert result == {"type": "thread.created", "seen": [0, 2], "schema_version": 3}
    other = upcasters.upcast({"type": "thread.deleted"}, version=1, target=3)
    assert other == {"type": "thread.deleted", "schema_version": 3}
    with pytest.raises(ValidationError, match="already registered"):
        upcasters.register("thread.created", 0)(rename)


def test_an_old_event_that_cannot_be_upcast_is_malformed() -> None:
    """An old event missing what its upcast needs is skipped as malformed, with the reason."""
    payload = msgspec.json.encode({"type": "thread.deleted", "schema_version": 0})
    with pytest.raises(MalformedEventError, match="schema version 0, even after upcasting"):
        EventCodec().decode(payload)
