"""eventlog.wire: the fold's msgspec data agrees with the pydantic models on every input.

The fold reads events with :meth:`EventCodec.decode_data`; every other reader, and the
views' queries, see pydantic models. For any bytes, both must accept or both refuse (with
the same reason), and the model made from the data must equal the one pydantic reads, its
JSON the same bytes.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from helpers import (
    BAD_PARTS,
    EVERY_PART_MESSAGE,
    GOLDEN_DIR,
    SERDE_REJECTS,
    message_doc,
    thread_doc,
)

from eventlog import MalformedEventError, Message, MessageCreated, Thread, ThreadCreated
from eventlog.events import EventCodec, MessageCreatedData, ThreadCreatedData, new_event_id
from projections.cli.demo import weather_conversation

CODEC = EventCodec()


def _envelope(kind: str, entity: dict[str, Any], **changes: Any) -> bytes:
    thread_id = entity.get("thread_id", entity.get("id"))
    event = {
        "type": f"{kind}.created",
        kind: entity,
        "event_id": "evt_1",
        "schema_version": 1,
        "occurred_at": "2024-05-06T07:08:09.5Z",
        "tenant_id": entity.get("tenant_id", "tenant_1"),
        "thread_id": thread_id,
        "message_id": entity.get("id") if kind == "message" else None,
        **changes,
    }
    return json.dumps(event).encode()


def _assert_agree(payload: bytes) -> None:
    """decode_data and decode accept the same events, with equal models and JSON."""
    try:
        expected = CODEC.decode(payload)
    except MalformedEventError as refused:
        reason = str(refused)
    else:
        reason = ""
    if reason:
        with pytest.raises(MalformedEventError, match=f"^{re.escape(reason)}$"):
            CODEC.decode_data(payload)
        return
    data = CODEC.decode_data(payload)
    if isinstance(expected, MessageCreated):
        assert isinstance(data, MessageCreatedData)
        entity, model = data.message, expected.message
    else:
        assert isinstance(expected, ThreadCreated)
        assert isinstance(data, ThreadCreatedData)
        entity, model = data.thread, expected.thread
    made, validated = entity.model(), type(model).model_validate_json(entity.json())
    assert made == model == validated
    assert repr(made) == repr(validated)  # the same types too: a str is not a MessageId
    assert made.model_dump(exclude_unset=True) == validated.model_dump(exclude_unset=True)
    assert entity.json() == model.model_dump_json().encode()
    assert data.occurred_at == expected.occurred_at


def _message(path: tuple[str, ...], value: object) -> dict[str, Any]:
    doc = copy.deepcopy(message_doc(created_at="2024-05-06T07:08:09.123456Z"))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


TIMES = [
    "2024-05-06T07:08:09Z",
    "2024-05-06T07:08:09.123456Z",
    "2024-05-06T07:08:09.123Z",
    "2024-05-06T07:08:09.000000Z",
    "2024-05-06T07:08:09.999999999Z",
    "2024-05-06T07:08:09.9999996Z",
    "2024-05-06T09:08:09.5+02:00",
    "2024-05-06T07:08:09+00:00",
    "2024-05-06t07:08:09z",
    "2024-05-06 07:08:09Z",
    "20240506T070809Z",
    "2024-02-30T00:00:00Z",
    "2024-02-29T00:00:00Z",
    "2023-02-29T00:00:00Z",
    "2024-05-06T07:08:60Z",
    "2024-05-06T24:00:00Z",
    "0001-01-01T00:00:00Z",
    "1715000000",
    "2024-05-06T07:08:09",
    "2024-05-06",
    "",
]

IDS = ["m", "m" * 64, "m" * 65, "m" * 256, "m" * 257, "é" * 128, "€" * 85, "€" * 86, "", "\ud800"]

VALUES: list[tuple[tuple[str, ...], object]] = [
    *SERDE_REJECTS,
    *((("parts",), [part]) for part in BAD_PARTS),
    (("metadata", "token_usage", "prompt_tokens"), 2**32 - 1),
    (("metadata", "duration_ms"), 2**64 - 1),
    (("metadata", "completed_at"), -(2**63)),
    (("metadata", "cost", "input_cost"), 3),
    (("metadata", "cost", "input_cost"), 1e-7),
    (("metadata", "finish_reason"), "length"),
    (("metadata",), None),
    (("metadata",), {}),
    (("content",), "line\u2028break \x1f </script> é"),
    (("parts",), []),
    (("parts",), None),
    (("parts",), [{"type": "code", "code": "x"}]),
    (
        ("parts",),
        [{"type": "file", "file_id": "f", "filename": "a", "mime_type": "b", "size_bytes": 2**64}],
    ),
    (("future_field",), {"anything": [1, 2]}),
    (("metadata", "temperature"), 0.2),
]


@pytest.mark.parametrize("time", TIMES)
@pytest.mark.parametrize("field", ["created_at", "updated_at", "deleted_at"])
def test_message_timestamps_agree(field: str, time: str) -> None:
    _assert_agree(_envelope("message", _message((field,), time)))


@pytest.mark.parametrize("time", TIMES)
@pytest.mark.parametrize("field", ["created_at", "updated_at", "deleted_at"])
def test_thread_timestamps_agree(field: str, time: str) -> None:
    _assert_agree(_envelope("thread", {**thread_doc(), field: time}))


@pytest.mark.parametrize("value", IDS, ids=range(len(IDS)))
@pytest.mark.parametrize("field", ["id", "thread_id", "execution_id", "parent_id"])
def test_message_ids_agree(field: str, value: str) -> None:
    _assert_agree(_envelope("message", _message((field,), value)))


@pytest.mark.parametrize("value", IDS, ids=range(len(IDS)))
@pytest.mark.parametrize("field", ["id", "tenant_id", "user_id"])
def test_thread_ids_agree(field: str, value: str) -> None:
    _assert_agree(_envelope("thread", {**thread_doc(), field: value}))


@pytest.mark.parametrize(("path", "value"), VALUES, ids=range(len(VALUES)))
def test_message_values_agree(path: tuple[str, ...], value: object) -> None:
    _assert_agree(_envelope("message", _message(path, value)))


@pytest.mark.parametrize("missing", ["execution_id", "parent_id", "updated_at", "deleted_at"])
def test_missing_optional_fields_agree(missing: str) -> None:
    doc = message_doc(created_at="2024-05-06T07:08:09Z")
    del doc[missing]
    _assert_agree(_envelope("message", doc))


def test_every_part_and_field_agrees() -> None:
    """A message using every part kind and metadata field: the data's JSON is the model's."""
    _assert_agree(_envelope("message", EVERY_PART_MESSAGE))


@pytest.mark.parametrize("path", sorted(p.name for p in GOLDEN_DIR.glob("message_*.json")))
def test_golden_messages_agree(path: str) -> None:
    _assert_agree(_envelope("message", json.loads((GOLDEN_DIR / path).read_text())))


@pytest.mark.parametrize(
    "changes",
    [{"schema_version": 2}, {"actor": 5}, {"occurred_at": "2024-05-06T07:08:09"}, {"type": "x"}],
)
def test_envelopes_agree(changes: dict[str, Any]) -> None:
    _assert_agree(_envelope("message", message_doc(), **changes))


def test_huge_floats_differ_only_in_the_exponent_sign() -> None:
    """msgspec writes 1e16 where pydantic writes 1e+16: the same number, other bytes."""
    payload = _envelope("message", _message(("metadata", "cost", "total_cost"), 1e16))
    data = CODEC.decode_data(payload)
    assert isinstance(data, MessageCreatedData)
    model = data.message.model()
    assert model.metadata.cost is not None
    assert model.metadata.cost.total_cost == 1e16
    assert json.loads(data.message.json()) == json.loads(model.model_dump_json())
    assert b'"total_cost":1e16' in data.message.json()


def test_what_this_code_writes_takes_the_fast_path() -> None:
    """Events this code writes read straight into data, never through the models."""
    thread = Thread.new("acme", "alice")
    messages = [Message.model_validate(EVERY_PART_MESSAGE), *weather_conversation(thread.id)]
    for message in messages:
        event = MessageCreated(
            event_id=new_event_id(),
            occurred_at=message.created_at,
            tenant_id=thread.tenant_id,
            thread_id=message.thread_id,
            message_id=message.id,
            message=message,
        )
        data = CODEC._data.decode(CODEC.encode(event))
        assert isinstance(data, MessageCreatedData)
        assert data.message.model() == message
