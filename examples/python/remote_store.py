"""Use convlog as a service: RemoteMessageStore talks to `convlog serve` replicas over NATS.

    python examples/python/remote_store.py [NATS_URL]      (or NATS_URL in the environment)

Needs a nats-server with JetStream and at least one `convlog serve --nats-url NATS_URL`
running (`docker compose up` starts both; a bare `convlog serve` prints the URL of the
server it starts). Nothing is folded in this process: each call is a request to the
replicas of the thread's partition (this client hashes the thread id itself). It writes a
thread with two messages, reads them back, and prints the thread id, which the TypeScript
example takes: `cd examples/typescript && npx tsx list-messages.ts THREAD_ID NATS_URL`.
"""

import asyncio
import os
import sys

from eventlog import ExecutionId, Message, Thread
from projections import RemoteMessageStore

DEFAULT_URL = "nats://127.0.0.1:4222"


async def main(url: str) -> None:
    """Write a thread with two messages through the service, and read them back."""
    # connect() finds a replica of the stream (default CONVLOG) and its partition count.
    async with await RemoteMessageStore.connect(url) as store:
        thread = Thread.new("acme", "alice").model_copy(update={"title": "Weather in Paris"})
        await store.create_thread(thread)
        question = Message.user(thread.id, "What's the weather in Paris?")
        await store.create_message(question)
        answer = Message.assistant(thread.id, ExecutionId.new(), "Sunny, 18 °C.", question.id)
        await store.create_message(answer)

        # Read-your-writes: each write's reply gave the sequence it was stored at, and every
        # later request to that partition carries it as min_sequence, so whichever replica
        # answers has folded these writes first.
        for message in await store.list_messages(thread.id):
            print(f"[{message.role}] {message.content}")
        print("messages:", await store.count_messages(thread.id))
        print("thread:", thread.id)


asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("NATS_URL", DEFAULT_URL)))
