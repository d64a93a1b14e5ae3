"""Rebuilding views from the log, and the progress shown meanwhile."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from eventlog import Message, Thread
from projections import rebuild
from projections.cli.progress import progress_on_stderr
from projections.fold import Projection
from projections.rebuild import replay

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
    seen: list[tuple[int, int]] = []
    rebuilt = await store.rebuild(verify=True, on_progress=lambda *call: seen.append(call))
    assert (rebuilt.events, rebuilt.sequence, rebuilt.rate) == (0, 0, 0.0)
    assert rebuilt.digest == store.views.digest()
    assert seen == [(0, 0)]


async def test_rebuild_and_replay_report_progress_to_a_callback(
    connect_store: StoreFactory,
) -> None:
    """on_progress(done, total): a rebuild's total is exact, first call (0, total); replay's
    total is what it folded plus what the server still holds, equal at the end."""
    store = await connect_store()
    thread = Thread.new("acme", "alice")
    await store.create_thread(thread)
    for turn in range(4):
        await store.create_message(Message.user(thread.id, f"turn {turn}"))
    seen: list[tuple[int, int]] = []
    await rebuild(store.log, until=3, on_progress=lambda *call: seen.append(call))
    assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]
    seen.clear()
    await store.rebuild(on_progress=lambda *call: seen.append(call))
    assert seen == [(done, 5) for done in range(6)]
    seen.clear()
    projection = Projection(store.log.codec, store.log.subjects)
    assert await replay(store.log, projection, on_progress=lambda *call: seen.append(call)) == 5
    assert seen == [(done, 5) for done in range(1, 6)]


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


def test_progress_on_stderr_ends_with_one_summary_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Off a terminal the CLI's progress draws no bar, then leaves one line with the count."""
    with progress_on_stderr("rebuild") as on_progress:
        on_progress(0, 1000)
        on_progress(1000, 1000)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("rebuild: 1,000 events in ")
    assert lines[0].endswith(" events/s)")
