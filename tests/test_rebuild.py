"""Rebuilding views from the log, and the progress shown meanwhile."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import pytest

from eventlog import Message, Thread
from projections import Progress, Projection, rebuild, replay

if TYPE_CHECKING:
    from conftest import StoreFactory

    from eventlog import AnyEvent, LogRecord


async def test_rebuild_replays_the_stream_into_views_equal_to_the_live_ones(
    connect_store: StoreFactory,
) -> None:
    """rebuild() folds every record from sequence 1; its digest equals the live views'."""
    store = await connect_store()
    for user in ("alice", "bob"):
        thread = Thread.new("acme", user)
        await store.create_thread(thread)
        for turn in range(5):
            await store.create_message(Message.user(thread.id, f"{user} {turn}"))
        await store.delete_thread(thread.id)
    rebuilt = await rebuild(store.log)
    assert (rebuilt.events, rebuilt.sequence) == (14, 14)
    assert rebuilt.digest == store.views.digest()
    assert rebuilt.projection.views.message_count == 10
    assert rebuilt.rate > 0
    checked = await store.rebuild(verify=True)
    assert checked.digest == rebuilt.digest
    partial = await rebuild(store.log, until=7)
    assert (partial.events, partial.sequence) == (7, 7)
    assert partial.projection.views.thread_count == 1


async def test_rebuild_of_an_empty_stream_is_empty(connect_store: StoreFactory) -> None:
    """An empty stream rebuilds into empty views, at once."""
    store = await connect_store()
    rebuilt = await store.rebuild(verify=True)
    assert (rebuilt.events, rebuilt.sequence, rebuilt.rate) == (0, 0, 0.0)
    assert rebuilt.digest == store.views.digest()


async def test_an_error_in_replay_reaches_its_caller(connect_store: StoreFactory) -> None:
    """replay() folds in the client's callback; what its ``on_applied`` raises is re-raised."""
    store = await connect_store()
    thread = Thread.new("acme", "alice")
    await store.create_thread(thread)
    await store.create_message(Message.user(thread.id, "hi"))

    def refuse(record: LogRecord, _: AnyEvent | None) -> None:
        raise RuntimeError(f"refused {record.sequence}")

    projection = Projection(store.log.codec, store.log.subjects)
    with pytest.raises(RuntimeError, match="refused 1"):
        await replay(store.log, projection, on_applied=refuse)
    assert projection.sequence == 1


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_writes_plain_lines_into_a_file() -> None:
    """Off a terminal, progress is a plain line every few seconds, and a final line."""
    out, clock = io.StringIO(), _Clock()
    progress = Progress(1000, out=out, clock=clock)
    progress.update(10)
    assert out.getvalue() == ""  # too soon for a line
    clock.now += 5
    progress.update(500)
    clock.now += 5
    progress.finish()
    lines = out.getvalue().splitlines()
    assert lines == [
        "rebuild: 500 / 1,000 events (50%), 100 events/s, ETA 5s",
        "rebuild: 500 events in 10.00s (50 events/s)",
    ]


def test_progress_redraws_one_line_on_a_terminal() -> None:
    """On a terminal, progress redraws one line in place and ends it with a newline."""
    out, clock = _Terminal(), _Clock()
    progress = Progress(200, label="replay", out=out, clock=clock)
    for done in (50, 100, 200):
        clock.now += 0.5
        progress.update(done)
    progress.finish()
    text = out.getvalue()
    assert text.count("\r\x1b[K") == 4
    assert "\r\x1b[Kreplay: 100 / 200 events (50%), 100 events/s, ETA 1s" in text
    assert text.endswith("\r\x1b[Kreplay: 200 events in 1.50s (133 events/s)\n")
    assert "\n" not in text[:-1]
