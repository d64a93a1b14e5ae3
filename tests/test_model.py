"""Tests for eventlog.ids and eventlog.model: the JSON contract with the Rust seed's serde types."""

import copy
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
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
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from eventlog.errors import ValidationError
from eventlog.ids import MAX_ID_BYTES, ExecutionId, MessageId, TenantId, ThreadId, UserId
from eventlog.model import (
    CodePart,
    CostInfo,
    ExecutionStats,
    FilePart,
    FinishReason,
    ImagePart,
    Message,
    MessageMetadata,
    MessagePart,
    MessageRole,
    ParentType,
    ReasoningPart,
    SourcePart,
    TextPart,
    Thread,
    TokenUsage,
    ToolCallPart,
    ToolResultPart,
)

# A copy of ../shared/seed/golden (JSON written by the seed's Rust types through serde), kept
# in the repo so a clone alone passes; test_golden_copy_matches_the_seed catches drift.
SEED_GOLDEN_DIR = Path(__file__).resolve().parents[2] / "shared" / "seed" / "golden"
TIMESTAMP_KEYS = ("created_at", "updated_at", "deleted_at")
AnyId = TenantId | UserId | ThreadId | MessageId | ExecutionId
ID_CLASSES: tuple[type[AnyId], ...] = (TenantId, UserId, ThreadId, MessageId, ExecutionId)
# RFC 3339 in UTC as serde writes it: `Z`, and a fraction of 0, 3, 6 or 9 digits.
_UTC_TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{3}|\d{6}|\d{9}))?Z")


# --- helpers -------------------------------------------------------------------------------


def _read_golden(name: str) -> Any:
    path = GOLDEN_DIR / name
    if not path.is_file():
        pytest.fail(
            f"golden fixture {path} is missing: copy it from {SEED_GOLDEN_DIR}",
            pytrace=False,
        )
    return json.loads(path.read_text(encoding="utf-8"))


def _golden_file_names() -> list[str]:
    names = sorted(p.name for p in GOLDEN_DIR.glob("*.json") if p.name != "all.json")
    return names or ["<golden dir missing>.json"]  # fails in the test, not skipped


def _all_json_names() -> list[str]:
    path = GOLDEN_DIR / "all.json"
    if not path.is_file():
        return ["<all.json missing>"]
    return [entry["name"] for entry in json.loads(path.read_text(encoding="utf-8"))]


def _all_json_entry(name: str) -> dict[str, Any]:
    entries: list[dict[str, Any]] = _read_golden("all.json")
    return next(e for e in entries if e["name"] == name)


def _model_for(kind: str) -> type[Thread | Message]:
    assert kind in {"thread", "message"}, kind
    return Thread if kind == "thread" else Message


def _to_micros(timestamp: str) -> str:
    """Parse an RFC 3339 UTC timestamp, truncate it to microseconds, return it canonically."""
    match = _UTC_TIMESTAMP.fullmatch(timestamp)
    assert match, f"{timestamp!r} is not RFC 3339 UTC ending in Z"
    fraction = (match[2] or "")[:6].ljust(6, "0")
    return datetime.fromisoformat(f"{match[1]}.{fraction}+00:00").isoformat()


def _normalise(document: dict[str, Any]) -> dict[str, Any]:
    out = dict(document)
    for key in TIMESTAMP_KEYS:
        if out.get(key) is not None:
            out[key] = _to_micros(out[key])
    return out


def _assert_round_trips(model: type[BaseModel], expected: dict[str, Any]) -> None:
    loaded = model.model_validate_json(json.dumps(expected))
    dumped = loaded.model_dump(mode="json")
    written = json.loads(loaded.model_dump_json())
    assert dumped == written
    assert _normalise(written) == _normalise(expected)
    # Same keys in the same order at every level: serialise both without sorting.
    assert json.dumps(_normalise(written)) == json.dumps(_normalise(expected))
    assert model.model_validate_json(loaded.model_dump_json()) == loaded


def _load_message(doc: dict[str, Any]) -> Message:
    return Message.model_validate_json(json.dumps(doc))


# --- golden files from the Rust seed ------------------------------------------------------


def test_golden_copy_matches_the_seed() -> None:
    """The repo's golden copy holds every file of the seed's, byte for byte, where both exist."""
    copied = {p.name: p.read_bytes() for p in GOLDEN_DIR.glob("*.json")}
    assert len(copied) >= 20
    if SEED_GOLDEN_DIR.is_dir():  # beside the repo in CI and in the workspace; not in a lone clone
        seed = {p.name: p.read_bytes() for p in SEED_GOLDEN_DIR.glob("*.json")}
        assert copied == seed


@pytest.mark.parametrize("name", _golden_file_names())
def test_golden_file_round_trips(name: str) -> None:
    """Each golden file loads and dumps back identically, timestamps cut to microseconds."""
    document = _read_golden(name)
    _assert_round_trips(Thread if name.startswith("thread_") else Message, document)


@pytest.mark.parametrize("name", _all_json_names())
def test_golden_all_json_entry_round_trips(name: str) -> None:
    """Each entry of all.json loads as its kind and dumps back identically."""
    entry = _all_json_entry(name)
    _assert_round_trips(_model_for(entry["kind"]), entry["value"])


def test_golden_covers_every_enum_value_and_part_kind() -> None:
    """The golden data exercises every parent type, finish reason, role and part tag we model."""
    entries: list[dict[str, Any]] = _read_golden("all.json")
    messages = [Message.model_validate(e["value"]) for e in entries if e["kind"] == "message"]
    assert {m.parent_type for m in messages} == set(ParentType)
    assert {m.role for m in messages} == set(MessageRole)
    assert {m.metadata.finish_reason for m in messages} - {None} == set(FinishReason)
    part_types = {type(p) for m in messages for p in m.parts}
    assert part_types == {
        TextPart,
        ReasoningPart,
        ToolCallPart,
        ToolResultPart,
        SourcePart,
        FilePart,
        ImagePart,
        CodePart,
    }


def test_golden_nine_digit_timestamp_is_truncated_not_rounded() -> None:
    """`.123456789Z` from serde loads as 123456 microseconds and writes back as `.123456Z`."""
    message = Message.model_validate(_read_golden("message_fixed.json"))
    assert message.created_at.microsecond == 123456
    assert message.model_dump(mode="json")["created_at"] == "2023-11-14T22:13:20.123456Z"


# --- a literal document, written here ------------------------------------------------------

_T0 = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


def _every_part_message() -> Message:
    return Message(
        id=MessageId("msg_every_part"),
        thread_id=ThreadId("thread_literal"),
        execution_id=ExecutionId("exec_literal"),
        parent_type=ParentType.TOOL_CALL,
        role=MessageRole.USER,
        content="every part",
        parts=(
            TextPart(text="hello"),
            ReasoningPart(text="hmm"),
            ToolCallPart(
                tool_call_id="tc_1",
                tool_name="search",
                args={"q": "nats", "n": 3, "deep": {"x": [1.5, None, True]}},
            ),
            ToolResultPart(
                tool_call_id="tc_1", tool_name="search", result=["a", "b"], is_error=False
            ),
            SourcePart(source_id="s1"),
            FilePart(
                file_id="f1", filename="a.pdf", mime_type="application/pdf", size_bytes=2**64 - 1
            ),
            ImagePart(image_id="i1", url="https://x/y.png"),
            CodePart(code="x = 1"),
        ),
        # A non-UTC aware time is normalised to UTC, so it is written with `Z`.
        created_at=_T0.astimezone(timezone(timedelta(hours=2))),
        updated_at=datetime(2024, 5, 6, 7, 8, 10, tzinfo=UTC),
        metadata=MessageMetadata(
            completed_at=-(2**63),
            duration_ms=0,
            model="m",
            token_usage=TokenUsage.new(1, 2),
            stats=ExecutionStats(llm_calls=1, tool_calls=1, steps=2, artifacts=2**32 - 1),
            finish_reason=FinishReason.TOOL_CALLS,
            cost=CostInfo(output_cost=0.5, total_cost=0.5),
        ),
    )


def test_literal_message_writes_the_serde_document() -> None:
    """A message with every part kind and full metadata writes exactly serde's JSON."""
    raw = _every_part_message().model_dump_json()
    written = json.loads(raw)
    assert written == EVERY_PART_MESSAGE
    assert json.dumps(written) == json.dumps(EVERY_PART_MESSAGE)  # key order too
    assert all(next(iter(part)) == "type" for part in written["parts"])
    assert written["parts"][2]["type"] == "tool-call"
    assert written["parts"][3]["type"] == "tool-result"
    assert written["metadata"]["finish_reason"] == "tool_calls"
    assert written["role"] == "user"
    assert written["parent_id"] is None
    assert written["parts"][4]["url"] is None
    assert '"input_cost":0.0' in raw  # f64 zero keeps its fraction, as serde prints it
    assert '"size_bytes":18446744073709551615' in raw
    assert written["created_at"] == "2024-05-06T07:08:09.123456Z"
    assert written["updated_at"] == "2024-05-06T07:08:10Z"


def test_literal_message_reads_back_equal() -> None:
    """The literal document loads into a model equal to the one built in Python."""
    loaded = _load_message(EVERY_PART_MESSAGE)
    assert loaded == _every_part_message()
    assert isinstance(loaded.parts, tuple)
    assert isinstance(loaded.parts[2], ToolCallPart)
    assert loaded.created_at.tzinfo is not None
    assert loaded.created_at.utcoffset() == timedelta(0)


def test_thread_writes_nulls_and_z_timestamps() -> None:
    """A thread writes every field in serde order, None as null, UTC times ending in Z."""
    created = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=-5)))
    thread = Thread(
        id=ThreadId("thread_1"),
        tenant_id=TenantId("tenant_1"),
        user_id=UserId("user_1"),
        created_at=created,
        updated_at=created,
    )
    assert json.loads(thread.model_dump_json()) == {
        "id": "thread_1",
        "tenant_id": "tenant_1",
        "user_id": "user_1",
        "title": None,
        "created_at": "2024-05-06T12:08:09Z",
        "updated_at": "2024-05-06T12:08:09Z",
        "deleted_at": None,
    }


# --- serde's strictness, mirrored ----------------------------------------------------------


@pytest.mark.parametrize(
    "field",
    ["id", "thread_id", "parent_type", "role", "content", "parts", "created_at", "metadata"],
)
def test_message_missing_required_field_is_rejected(field: str) -> None:
    """A message document without a field serde requires is rejected, naming the field."""
    doc = message_doc()
    del doc[field]
    with pytest.raises(PydanticValidationError) as caught:
        _load_message(doc)
    assert caught.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize("field", ["id", "tenant_id", "user_id", "created_at", "updated_at"])
def test_thread_missing_required_field_is_rejected(field: str) -> None:
    """A thread document without a field serde requires is rejected."""
    doc = thread_doc()
    del doc[field]
    with pytest.raises(PydanticValidationError):
        Thread.model_validate_json(json.dumps(doc))


def test_missing_optional_fields_read_as_none() -> None:
    """Optional fields may be left out, as serde reads a missing Option as None."""
    doc = message_doc()
    for key in ("execution_id", "parent_id", "updated_at", "deleted_at"):
        del doc[key]
    doc["metadata"] = {}
    doc["parts"] = [{"type": "source", "source_id": "s"}, {"type": "code", "code": "c"}]
    message = _load_message(doc)
    assert message.execution_id is None
    assert message.updated_at is None
    assert message.metadata == MessageMetadata()
    assert message.parts == (SourcePart(source_id="s"), CodePart(code="c"))
    thread = thread_doc()
    del thread["title"], thread["deleted_at"]
    assert Thread.model_validate_json(json.dumps(thread)).title is None


def test_unknown_fields_are_ignored() -> None:
    """Unknown fields at any level are dropped, as serde ignores them by default."""
    doc = message_doc(future_field=1)
    doc["parts"] = [{"type": "text", "text": "hi", "lang": "en"}]
    doc["metadata"] = {**doc["metadata"], "temperature": 0.2}
    message = _load_message(doc)
    written = message.model_dump(mode="json")
    assert "future_field" not in written
    assert written["parts"] == [{"type": "text", "text": "hi"}]
    assert "temperature" not in written["metadata"]


"""(path, value): a message document with ``value`` at ``path`` is refused, as serde does."""


@pytest.mark.parametrize(("path", "value"), SERDE_REJECTS)
def test_values_serde_rejects_are_rejected(path: tuple[str, ...], value: object) -> None:
    """Floats, bools or strings for integers, out-of-range integers, wrong-case enums,
    numbers for timestamps and naive timestamps are all rejected, as serde rejects them."""
    doc = copy.deepcopy(message_doc())
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(PydanticValidationError):
        _load_message(doc)


"""Parts with an unknown or missing tag, or a wrongly typed field."""


@pytest.mark.parametrize("part", BAD_PARTS)
def test_bad_parts_are_rejected(part: dict[str, Any]) -> None:
    """Unknown or missing part tags and wrongly typed part fields are rejected."""
    with pytest.raises(PydanticValidationError):
        _load_message(message_doc(parts=[part]))


def test_f64_fields_take_json_integers() -> None:
    """serde's f64 reads a JSON integer; so do the cost fields."""
    assert _load_message(message_doc()).metadata.cost == CostInfo(
        input_cost=0.0, output_cost=1.0, total_cost=1.5, currency="EUR"
    )


def test_nine_digit_fraction_is_accepted_and_truncated() -> None:
    """A nanosecond timestamp loads, truncated (not rounded) to microseconds."""
    message = _load_message(message_doc(created_at="2024-05-06T07:08:09.999999999Z"))
    assert message.created_at == datetime(2024, 5, 6, 7, 8, 9, 999999, tzinfo=UTC)


def test_offset_timestamp_is_normalised_to_utc() -> None:
    """A timestamp with an offset loads as UTC and writes back with Z."""
    message = _load_message(message_doc(created_at="2024-05-06T09:08:09.5+02:00"))
    assert message.model_dump(mode="json")["created_at"] == "2024-05-06T07:08:09.500000Z"


def test_naive_datetime_is_rejected_in_python() -> None:
    """Building a thread from a naive datetime fails: the log only holds aware times."""
    with pytest.raises(ValidationError, match=r"^Thread\.created_at: Input should have timezone"):
        Thread(
            id=ThreadId("thread_1"),
            tenant_id=TenantId("tenant_1"),
            user_id=UserId("user_1"),
            created_at=datetime(2024, 1, 1),  # noqa: DTZ001 - naive on purpose
            updated_at=_T0,
        )


# --- constructors and builders, as in the seed ---------------------------------------------


def _assert_fresh(message: Message, content: str) -> None:
    assert isinstance(message.id, MessageId)
    assert message.id.startswith("msg_")
    assert isinstance(message.thread_id, ThreadId)
    assert message.content == content
    assert message.parts == (TextPart(text=content),)
    assert message.metadata == MessageMetadata()
    assert message.updated_at is None
    assert message.deleted_at is None
    assert not message.is_deleted()
    assert message.created_at.tzinfo is UTC
    assert abs(datetime.now(UTC) - message.created_at) < timedelta(seconds=5)


def test_user_message_matches_seed() -> None:
    """Message.user: role user, parent type user_message, no execution or parent."""
    message = Message.user("thread_1", "hello")
    _assert_fresh(message, "hello")
    assert message.role is MessageRole.USER
    assert message.parent_type is ParentType.USER_MESSAGE
    assert message.execution_id is None
    assert message.parent_id is None


def test_assistant_message_matches_seed() -> None:
    """Message.assistant: role assistant, parent type user_message, the execution and parent."""
    execution = ExecutionId.new()
    message = Message.assistant(ThreadId("thread_1"), execution, "answer", "msg_parent")
    _assert_fresh(message, "answer")
    assert message.role is MessageRole.ASSISTANT
    assert message.parent_type is ParentType.USER_MESSAGE
    assert message.execution_id == execution
    assert isinstance(message.execution_id, ExecutionId)
    assert message.parent_id == "msg_parent"
    assert isinstance(message.parent_id, MessageId)
    assert Message.assistant("thread_1", "exec_1", "x").parent_id is None


def test_system_message_matches_seed() -> None:
    """Message.system: role system, parent type system, no execution or parent."""
    message = Message.system("thread_1", "be brief")
    _assert_fresh(message, "be brief")
    assert message.role is MessageRole.SYSTEM
    assert message.parent_type is ParentType.SYSTEM
    assert message.execution_id is None
    assert message.parent_id is None


def test_constructors_give_distinct_ids() -> None:
    """Each constructed message gets its own new id."""
    assert Message.user("thread_1", "a").id != Message.user("thread_1", "a").id


def test_thread_new_and_with_id_match_seed() -> None:
    """Thread.new makes a fresh id; with_id keeps the given one; both untitled, now, live."""
    thread = Thread.new("tenant_1", UserId("user_1"))
    assert isinstance(thread.id, ThreadId)
    assert thread.id.startswith("thread_")
    assert isinstance(thread.tenant_id, TenantId)
    assert isinstance(thread.user_id, UserId)
    assert thread.title is None
    assert thread.created_at == thread.updated_at
    assert thread.created_at.tzinfo is UTC
    assert not thread.is_deleted()
    fixed = Thread.with_id("thread_fixed", "tenant_1", "user_1")
    assert fixed.id == "thread_fixed"
    assert isinstance(fixed.id, ThreadId)


def test_constructors_reject_bad_ids_with_our_error() -> None:
    """Bad ids given to constructors raise eventlog's ValidationError, naming the id kind."""
    with pytest.raises(ValidationError, match="tenant id must not be empty"):
        Thread.new("", "user_1")
    with pytest.raises(ValidationError, match="thread id must not be empty"):
        Message.user("", "hi")
    with pytest.raises(ValidationError, match="execution id must not be empty"):
        Message.assistant("thread_1", "", "hi")


def test_is_deleted_follows_deleted_at() -> None:
    """is_deleted is true exactly when deleted_at is set."""
    assert Thread.model_validate(_read_golden("thread_deleted.json")).is_deleted()
    assert not Thread.model_validate(_read_golden("thread_new.json")).is_deleted()
    assert Message.model_validate(_read_golden("message_soft_deleted.json")).is_deleted()


def test_with_parent_returns_new_message() -> None:
    """with_parent returns a new message with the parent set; the original is unchanged."""
    original = Message.user("thread_1", "hi")
    changed = original.with_parent("msg_p", "tool_call")
    assert changed is not original
    assert changed.parent_id == "msg_p"
    assert isinstance(changed.parent_id, MessageId)
    assert changed.parent_type is ParentType.TOOL_CALL
    assert original.parent_id is None
    assert original.parent_type is ParentType.USER_MESSAGE
    assert changed.model_copy(update={"parent_id": None, "parent_type": "user_message"}) == (
        original
    )


def test_with_parts_stores_a_tuple() -> None:
    """with_parts takes any sequence, stores a tuple, and leaves the original unchanged."""
    original = Message.user("thread_1", "hi")
    parts: list[MessagePart] = [ReasoningPart(text="r"), TextPart(text="t")]
    changed = original.with_parts(parts)
    assert changed.parts == tuple(parts)
    assert isinstance(changed.parts, tuple)
    parts.append(TextPart(text="later"))
    assert len(changed.parts) == 2
    assert original.parts == (TextPart(text="hi"),)


def test_builders_validate() -> None:
    """Builders validate what they are given, unlike a bare model_copy."""
    message = Message.user("thread_1", "hi")
    with pytest.raises(ValidationError, match=r"^Message\.parts\.0: "):
        message.with_parts(["not a part"])  # type: ignore[list-item]
    with pytest.raises(ValidationError, match=r"^Message\.parent_id: "):
        message.with_parent("", ParentType.SYSTEM)
    with pytest.raises(ValidationError, match=r"^Message\.parent_type: "):
        message.with_parent("msg_p", "grandparent")


def test_with_metadata_returns_new_message() -> None:
    """with_metadata returns a new message with the metadata; the original is unchanged."""
    original = Message.assistant("thread_1", "exec_1", "x")
    metadata = MessageMetadata(model="gpt-4o", token_usage=TokenUsage.new(100, 200))
    changed = original.with_metadata(metadata)
    assert changed.metadata == metadata
    assert changed.metadata.token_usage is not None
    assert changed.metadata.token_usage.total_tokens == 300
    assert original.metadata == MessageMetadata()


@pytest.mark.parametrize(
    ("model", "field"),
    [
        (Message.user("thread_1", "hi"), "content"),
        (Thread.new("tenant_1", "user_1"), "title"),
        (TextPart(text="t"), "text"),
        (MessageMetadata(), "model"),
        (CostInfo(), "currency"),
    ],
)
def test_models_are_frozen(model: BaseModel, field: str) -> None:
    """Assigning to a field of any model raises: views share these objects."""
    with pytest.raises(PydanticValidationError):
        setattr(model, field, "changed")


def test_defaults_match_seed() -> None:
    """Stats default to zeros, cost to zero USD, metadata to all None."""
    assert ExecutionStats().model_dump() == dict.fromkeys(
        ("llm_calls", "tool_calls", "sub_agents", "steps", "decisions", "artifacts"), 0
    )
    assert CostInfo().model_dump() == {
        "input_cost": 0.0,
        "output_cost": 0.0,
        "total_cost": 0.0,
        "currency": "USD",
    }
    assert set(MessageMetadata().model_dump().values()) == {None}


def test_token_usage_new_computes_total() -> None:
    """TokenUsage.new adds prompt and completion tokens; an overflowing total is rejected."""
    assert TokenUsage.new(100, 200) == TokenUsage(
        prompt_tokens=100, completion_tokens=200, total_tokens=300
    )
    with pytest.raises(ValidationError, match=r"^TokenUsage\.total_tokens: "):
        TokenUsage.new(2**32 - 1, 1)


# --- ids ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "prefix"),
    [
        (TenantId, "tenant"),
        (UserId, "user"),
        (ThreadId, "thread"),
        (MessageId, "msg"),
        (ExecutionId, "exec"),
    ],
)
def test_new_ids_are_unique_sorted_and_prefixed(cls: type[ThreadId], prefix: str) -> None:
    """new() gives distinct ids that sort in creation order, with the kind's prefix."""
    ids = [cls.new() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert ids == sorted(ids)
    assert all(isinstance(i, cls) and i.startswith(f"{prefix}_") for i in ids)
    assert re.fullmatch(rf"{prefix}_[0-9a-f]{{32}}", ids[0])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "thread id must not be empty"),
        ("é" * 129, "thread id is 258 bytes in UTF-8, over the limit of 256"),
        ("a" * (MAX_ID_BYTES + 1), "thread id is 257 bytes in UTF-8, over the limit of 256"),
        ("thread_\ud800", "thread id is not valid UTF-8"),
        (5, "thread id must be a string, not int"),
        (None, "thread id must be a string, not NoneType"),
    ],
)
def test_from_string_rejects_bad_ids(value: object, message: str) -> None:
    """from_string rejects empty, too long, non-UTF-8 and non-string ids with our error."""
    with pytest.raises(ValidationError, match=re.escape(message)):
        ThreadId.from_string(value)


def test_id_errors_are_value_errors_naming_the_kind() -> None:
    """The error is a ValueError (so pydantic wraps it) and names the id kind."""
    for cls, kind in zip(
        ID_CLASSES, ("tenant", "user", "thread", "message", "execution"), strict=True
    ):
        with pytest.raises(ValueError, match=f"^{kind} id must not be empty$"):
            cls.from_string("")


@pytest.mark.parametrize("value", ["a.b*>c d é", "x", "a" * MAX_ID_BYTES, "é" * 128, "🙂"])
def test_from_string_accepts_any_other_text(value: str) -> None:
    """Dots, wildcards, spaces, unicode and exactly 256 bytes are all valid ids."""
    parsed = MessageId.from_string(value)
    assert parsed == value
    assert type(parsed) is MessageId


def test_pydantic_fields_validate_ids_into_their_classes() -> None:
    """Model fields typed with id classes hold those classes and dump as plain str."""
    message = _load_message(message_doc(execution_id="exec_1", parent_id="msg_0"))
    assert type(message.id) is MessageId
    assert type(message.thread_id) is ThreadId
    assert type(message.execution_id) is ExecutionId
    assert type(message.parent_id) is MessageId
    thread = Thread.model_validate(thread_doc())
    assert (type(thread.id), type(thread.tenant_id), type(thread.user_id)) == (
        ThreadId,
        TenantId,
        UserId,
    )
    assert type(thread.model_dump()["id"]) is str


@pytest.mark.parametrize(
    ("field", "value", "text"),
    [
        ("thread_id", "", "thread id must not be empty"),
        ("parent_id", "p" * 300, "message id is 300 bytes in UTF-8, over the limit of 256"),
    ],
)
def test_pydantic_id_errors_name_the_field(field: str, value: str, text: str) -> None:
    """A bad id inside a document fails validation at that field, with our sentence."""
    with pytest.raises(PydanticValidationError) as caught:
        _load_message(message_doc(**{field: value}))
    (error,) = caught.value.errors()
    assert error["loc"] == (field,)
    assert text in error["msg"]
