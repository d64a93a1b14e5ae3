"""The peer's side of the peer case: the ``eventsourcing`` library on its SQLite recorder.

A conversation is an aggregate; adding a message is an event carrying ~200 bytes of text.
The database is a file in a temporary directory, in the library's defaults: WAL journal and
SQLite's ``synchronous=FULL``, so a commit is fsynced, as our appends are.
Imported only when the optional ``bench`` extra is installed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from benchmarks import workload
from benchmarks.harness import now

if TYPE_CHECKING:
    from uuid import UUID


class Conversation(Aggregate):
    """A thread: started once, then one event per message."""

    @event("Started")
    def __init__(self) -> None:
        self.messages: list[str] = []

    @event("MessageAdded")
    def add_message(self, text: str) -> None:
        """Append one message's text."""
        self.messages.append(text)


def run(conversations: int, single: int, batched: int, per_save: int) -> tuple[float, float, float]:
    """Events/s: ``single`` saves of one event, ``batched`` events ``per_save``, replay all."""
    with tempfile.TemporaryDirectory(prefix="convlog-es-") as directory:
        app: Application[UUID] = Application(
            env={
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(Path(directory) / "events.db"),
            }
        )
        threads = [Conversation() for _ in range(conversations)]
        app.save(*threads)

        start = now()
        for index in range(single):
            thread = threads[index % conversations]
            thread.add_message(workload.text(index))
            app.save(thread)
        one_per_save = single / (now() - start)

        start = now()
        for save in range(batched // per_save):
            thread = threads[save % conversations]
            for index in range(per_save):
                thread.add_message(workload.text(index))
            app.save(thread)
        many_per_save = batched / (now() - start)

        start = now()
        events = sum(app.repository.get(thread.id).version for thread in threads)
        replayed = events / (now() - start)
        app.close()
    return one_per_save, many_per_save, replayed
