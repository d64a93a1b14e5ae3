"""An agent's turn: six writes in one transaction against the same six written one by one.

A turn is a user message, reasoning, a tool call, its result, an answer and a title change.
Ours writes it with ``store.transaction()`` (one atomic batch, one fsync); the baseline, in
the same run on the same store, awaits the same six store calls in a row. Both return with
every write folded (read-your-writes), on a server that fsyncs every append.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from benchmarks.cases import fresh_store
from benchmarks.harness import Result, now, percentile, repeat
from eventlog import ExecutionId, Message, Thread

if TYPE_CHECKING:
    from projections import JetStreamMessageStore


def _turn(thread: Thread, number: int) -> tuple[list[Message], Thread]:
    execution = str(ExecutionId.new())
    messages = [
        Message.user(thread.id, f"question {number}: " + "q" * 150),
        *(
            Message.assistant(thread.id, execution, f"{kind} {number}: " + "a" * 150)
            for kind in ("reasoning", "tool call", "tool result", "answer")
        ),
    ]
    return messages, thread.model_copy(update={"title": f"turn {number}"})


async def _in_transactions(
    store: JetStreamMessageStore, threads: list[Thread], turns: int
) -> float:
    latencies = []
    for number in range(turns):
        messages, titled = _turn(threads[number % len(threads)], number)
        start = now()
        async with store.transaction() as tx:
            for message in messages:
                tx.create_message(message)
            tx.update_thread(titled)
        latencies.append(now() - start)
    return percentile(latencies, 0.5)


async def _one_by_one(store: JetStreamMessageStore, threads: list[Thread], turns: int) -> float:
    latencies = []
    for number in range(turns):
        messages, titled = _turn(threads[number % len(threads)], number + turns)
        start = now()
        for message in messages:
            await store.create_message(message)
        await store.update_thread(titled)
        latencies.append(now() - start)
    return percentile(latencies, 0.5)


async def turn_cases(url: str, *, turns: int, runs: int) -> list[Result]:
    """p50 of a six-write turn in one transaction, against six awaited writes."""

    async def measure() -> tuple[float, float]:
        store = await fresh_store(url)
        try:
            threads = [Thread.new("bench", f"user{i}") for i in range(20)]
            for thread in threads:
                await store.create_thread(thread)
            baseline = await _one_by_one(store, threads, turns)
            ours = await _in_transactions(store, threads, turns)
        finally:
            await store.close()
        return ours * 1e3, baseline * 1e3

    ours, baseline = await repeat(runs, measure)
    return [
        Result(
            case="a turn of 6 writes, p50: one transaction vs 6 awaited writes",
            unit="ms",
            ours=ours,
            baseline=baseline,
            target=">= 4x faster",
            higher_is_better=False,
            note=f"{turns} turns a run, fsync always; the baseline is the same store",
        )
    ]
