"""Tests for eventlog.subjects: the reversible id-to-token encoding and the subject layout.

The partition of a thread is computed here and by nats-server's subject transform: the
tests that append through a real server check that the two agree.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING

import nats
import pytest
from helpers import thread_created
from hypothesis import assume, example, given
from hypothesis import strategies as st

from eventlog import EventLog, StreamSettings, ValidationError
from eventlog.subjects import MAX_PARTITIONS, Subjects, decode_token, encode_token, partition_of

if TYPE_CHECKING:
    from eventlog import LogRecord

TOKEN = re.compile(r"[A-Za-z0-9_-]+")
AWKWARD_IDS = ["tenant.a", "a*b", "x > y", "émoji 🚀", "_leading", " spaced ", ">", "*", "-"]
ids = st.text(min_size=1, max_size=64)
SUBJECTS = Subjects("convlog")


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: '*' matches one token, a final '>' matches one or more."""
    want, have = pattern.split("."), subject.split(".")
    for index, part in enumerate(want):
        if part == ">":
            return len(have) > index
        if index >= len(have) or part not in ("*", have[index]):
            return False
    return len(want) == len(have)


# --- properties ----------------------------------------------------------------------------


@given(ids)
@example("tenant.a")
@example("a*b")
@example("x > y")
@example("émoji 🚀")
@example("_leading")
@example("-")
@example("\n")
def test_token_round_trips_and_is_one_subject_token(value: str) -> None:
    """Any id encodes to one safe token [A-Za-z0-9_-]+ that decodes back to the id."""
    token = encode_token(value)
    assert TOKEN.fullmatch(token), token
    assert decode_token(token) == value


@given(ids, ids)
@example("tenant.a", "thread.>")
@example("a b", "*")
def test_thread_subject_has_three_tokens_and_parses_back(tenant_id: str, thread_id: str) -> None:
    """A thread subject is exactly prefix.tenant.thread and parse() returns both ids."""
    subject = SUBJECTS.thread(tenant_id, thread_id)
    tokens = subject.split(".")
    assert len(tokens) == 3
    assert tokens[0] == "convlog"
    assert all(TOKEN.fullmatch(t) for t in tokens)
    assert SUBJECTS.parse(subject) == (tenant_id, thread_id)
    assert subject_matches(SUBJECTS.tenant(tenant_id), subject)
    assert subject_matches(SUBJECTS.all, subject)


@given(ids, ids, ids)
@example("a", "a.b", "t")
@example("a", "a*", "t")
@example("a", "a.>", "t")
@example("a", "_a", "t")
@example("a b", "a", "b")
def test_tenant_wildcard_never_matches_another_tenant(mine: str, theirs: str, thread: str) -> None:
    """The tenant wildcard of one id never matches a thread subject of a different tenant."""
    assume(mine != theirs)
    pattern = SUBJECTS.tenant(mine)
    subject = SUBJECTS.thread(theirs, thread)
    assert pattern.split(".")[1] != subject.split(".")[1]
    assert not subject_matches(pattern, subject)


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ234567", max_size=20))
@example("")
@example("MFRGG")
@example("mfrgg")
@example("mfrgh")
def test_decode_accepts_only_canonical_tokens(body: str) -> None:
    """An encoded token either fails to decode or is exactly what encode_token would write."""
    token = "_" + body
    try:
        value = decode_token(token)
    except ValidationError:
        return
    assert encode_token(value) == token, f"{token!r} decodes to {value!r}, an alias"


# --- examples ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["thread_abc-1", "tenant_acme", "abc", "A-1", "0", "-x"])
def test_safe_ids_stay_readable(value: str) -> None:
    """An id that is already a safe token is used unchanged."""
    assert encode_token(value) == value
    assert decode_token(value) == value


@pytest.mark.parametrize("value", ["_leading", "_", "__x", "_mfrgg"])
def test_ids_starting_with_underscore_are_encoded(value: str) -> None:
    """An id starting with '_' is encoded, so it cannot pose as an encoded token."""
    token = encode_token(value)
    assert token != value
    assert token.startswith("_")
    assert decode_token(token) == value


@pytest.mark.parametrize("value", ["a.b", "a*", ">", "a b", "é", "tab\t", "a/b"])
def test_unsafe_ids_are_encoded(value: str) -> None:
    """An id with a character outside [A-Za-z0-9_-] becomes '_' + lowercase base32."""
    token = encode_token(value)
    assert token.startswith("_")
    assert token[1:] == token[1:].lower()
    assert TOKEN.fullmatch(token)
    assert decode_token(token) == value


@pytest.mark.parametrize("token", ["_!!!", "_a", "_0", "_1", "_aaa", "_74", "_é"])
def test_invalid_encoded_tokens_raise(token: str) -> None:
    """A '_' token that is not base32 of UTF-8 raises ValidationError naming the token."""
    with pytest.raises(ValidationError, match=re.escape(repr(token))):
        decode_token(token)


@pytest.mark.parametrize(
    "subject",
    ["convlog.a", "convlog.a.b.c", "other.a.b", "convlog", "convlogx.a.b", "convlog._!!.b"],
)
def test_parse_rejects_non_thread_subjects(subject: str) -> None:
    """parse() raises ValidationError for subjects that are not prefix.tenant.thread."""
    with pytest.raises(ValidationError):
        SUBJECTS.parse(subject)


@pytest.mark.parametrize("prefix", ["a..b", "a b", "a.*", "a.>", "", ".a", "a.", "a\n"])
def test_bad_prefix_is_refused(prefix: str) -> None:
    """A prefix that is not dot-separated safe tokens raises ValidationError naming it."""
    with pytest.raises(ValidationError, match="prefix"):
        Subjects(prefix)


def test_subject_layout_under_a_dotted_prefix() -> None:
    """A multi-token prefix leads every subject, and the wildcards are built on it."""
    subjects = Subjects("org.convlog")
    assert subjects.all == "org.convlog.>"
    assert subjects.tenant("acme") == "org.convlog.acme.*"
    assert subjects.thread("acme", "t-1") == "org.convlog.acme.t-1"
    assert subjects.parse("org.convlog.acme.t-1") == ("acme", "t-1")
    assert subjects.parse(subjects.thread("a.b", "c d")) == ("a.b", "c d")


# --- partitions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "hashed"),
    [("", 0x811C9DC5), ("a", 0xE40C292C), ("foobar", 0xBF9CF968)],
)
def test_partition_of_is_fnv1a_32_of_the_token(token: str, hashed: int) -> None:
    """The published FNV-1a 32-bit test vectors, taken modulo the partition count."""
    assert partition_of(token, 2**32) == hashed
    assert partition_of(token, 64) == hashed % 64


@given(ids, ids, st.sampled_from([1, 2, 7, 64, MAX_PARTITIONS]))
@example("acme", "t1", 64)
@example("0", "1", 8)
@example("a.b", "x > y", 64)
@example("émoji 🚀", "_leading", 3)
def test_published_and_stored_forms_round_trip(
    tenant_id: str, thread_id: str, partitions: int
) -> None:
    """stored and logical invert each other; filter and matching give the stored form; each
    filter matches the stored subject; partition(p) matches it only for its own p."""
    subjects = Subjects("org.convlog", partitions)
    published = subjects.thread(tenant_id, thread_id)
    stored = subjects.stored(tenant_id, thread_id)
    assert subjects.logical(stored) == subjects.logical(published) == published
    assert subjects.filter(published) == subjects.filter(stored) == stored
    assert subjects.matching(tenant_id, thread_id) == stored
    assert subjects.parse(stored) == subjects.parse(published) == (tenant_id, thread_id)
    for pattern in (
        subjects.matching(tenant_id, None),
        subjects.matching(None, thread_id),
        subjects.matching(None, None),
        subjects.tenant(tenant_id),
        subjects.filter(subjects.all),
        subjects.filter(f"org.convlog.{encode_token(tenant_id)}.>"),
    ):
        assert subject_matches(pattern, stored), pattern
    partition = subjects.partition_of(thread_id)
    assert partition == partition_of(encode_token(thread_id), partitions)
    if not subjects.partitioned:
        assert stored == published
        assert partition == 0
        return
    assert stored.split(".")[2] == str(partition)
    assert subject_matches(subjects.published, published)
    assert subject_matches(subjects.partition(partition), stored)
    assert not subject_matches(subjects.partition((partition + 1) % partitions), stored)


def test_published_filters_are_rewritten_to_the_stored_form() -> None:
    """A tenant's published filter gains a partition wildcard, a thread's its partition."""
    subjects = Subjects("convlog", 64)
    where = partition_of("t1", 64)
    assert subjects.filter("convlog.acme.t1") == f"convlog.{where}.acme.t1"
    assert subjects.filter("convlog.acme.>") == "convlog.*.acme.>"
    assert subjects.filter("convlog.*.*") == "convlog.*.*.*"
    assert subjects.filter("convlog.>") == "convlog.>"
    assert subjects.filter("other.acme.t1") == "other.acme.t1"
    assert subjects.matching(None, None) == "convlog.*.*.*"
    assert subjects.partition(5) == "convlog.5.*.*"
    assert subjects.logical("convlog.acme.t1") == "convlog.acme.t1"
    assert subjects.logical("other.5.acme.t1") == "other.5.acme.t1"
    legacy = Subjects("convlog", 1)
    assert legacy.filter("convlog.acme.t1") == legacy.stored("acme", "t1") == "convlog.acme.t1"
    assert legacy.matching(None, None) == "convlog.*.*"
    assert legacy.logical("convlog.acme.t1") == "convlog.acme.t1"


@pytest.mark.parametrize("partitions", [0, -1, MAX_PARTITIONS + 1])
def test_invalid_partition_counts_are_refused(partitions: int) -> None:
    """A layout has 1 to 1024 partitions: another count raises, naming it."""
    with pytest.raises(ValidationError, match=rf"1 to 1024 partitions, not {partitions}$"):
        Subjects("convlog", partitions)


@pytest.mark.parametrize(
    "partitions",
    [0, -1, MAX_PARTITIONS + 1],
)
def test_stream_settings_refuse_invalid_partition_counts(partitions: int) -> None:
    """Settings asking for a count no stream may have raise before anything connects."""
    with pytest.raises(ValidationError, match=rf"1 to 1024 partitions, not {partitions}$"):
        StreamSettings(partitions=partitions)


def test_the_edges_of_the_partition_range_are_taken() -> None:
    assert not Subjects("convlog", 1).partitioned
    assert Subjects("convlog", MAX_PARTITIONS).partitioned
    assert StreamSettings(partitions=MAX_PARTITIONS).partitions == MAX_PARTITIONS


THREAD_IDS = list(
    dict.fromkeys(
        [
            *(f"thread_{n}" for n in range(40)),
            *(
                f"{word}{separator}{n}"
                for word in ("t", "é", "🚀", "日本語", "a b")
                for separator in (" ", ".", "", "*", ">")
                for n in range(6)
            ),
            *AWKWARD_IDS,
        ]
    )
)
"""Plain thread ids, and many that need encoding: spaces, dots, wildcards, unicode."""


async def stored_subjects(url: str, stream: str, count: int) -> list[str]:
    """The subjects the server keeps records 1 to ``count`` of ``stream`` under, read raw."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        return [(await js.get_msg(stream, sequence)).subject for sequence in range(1, count + 1)]
    finally:
        await nc.close()


async def collected(log: EventLog, subject: str | None = None) -> list[LogRecord]:
    return [record async for record in log.read(subject=subject)]


@pytest.mark.parametrize("partitions", [7, 64])
async def test_partition_of_is_the_partition_the_server_stores_under(
    nats_url: str, stream_settings: StreamSettings, partitions: int
) -> None:
    """For every thread id, plain or encoded, the server's transform stores its events under
    the partition Subjects computes; readers see the published subject; a partition's
    filter reads exactly its own threads."""
    settings = dataclasses.replace(stream_settings, partitions=partitions)
    log = await EventLog.connect(nats_url, stream=settings)
    try:
        await log.append_batch([thread_created("acme corp", thread_id) for thread_id in THREAD_IDS])
        raw = await stored_subjects(nats_url, settings.name, len(THREAD_IDS))
        records = await collected(log)
        owners: dict[int, set[str]] = {}
        for thread_id, subject, record in zip(THREAD_IDS, raw, records, strict=True):
            partition = log.subjects.partition_of(thread_id)
            assert subject == log.subjects.stored("acme corp", thread_id), thread_id
            assert subject.split(".")[1] == str(partition), thread_id
            assert record.subject == log.subjects.thread("acme corp", thread_id)
            owners.setdefault(partition, set()).add(thread_id)
        assert len(owners) > partitions // 2
        busiest = max(owners, key=lambda partition: len(owners[partition]))
        mine = await collected(log, log.subjects.partition(busiest))
        assert {log.codec.decode(record.data).thread_id for record in mine} == owners[busiest]
    finally:
        await log.close()
