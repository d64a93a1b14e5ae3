"""Tests for eventlog.subjects: the reversible id-to-token encoding and the subject layout."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from eventlog import ValidationError
from eventlog.subjects import Subjects, decode_token, encode_token

TOKEN = re.compile(r"[A-Za-z0-9_-]+")
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
    assert subjects.tenant("acme") == "org.convlog.acme.>"
    assert subjects.thread("acme", "t-1") == "org.convlog.acme.t-1"
    assert subjects.parse("org.convlog.acme.t-1") == ("acme", "t-1")
    assert subjects.parse(subjects.thread("a.b", "c d")) == ("a.b", "c d")
