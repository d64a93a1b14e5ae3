"""The floor of a query through the service: a raw nats-py responder that answers at once.

``python -m benchmarks.echo URL`` subscribes to ``echo.<bytes>`` in a queue group and
answers each request with that many bytes, made once: a request/reply of the service's
reply size that does no work, in a process of its own like a replica. What a query costs
beyond it is the replica's work and the client's. It prints ``echo ready`` once the server
has its subscription, and stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import TYPE_CHECKING

import nats

if TYPE_CHECKING:
    from nats.aio.msg import Msg

READY = "echo ready"
QUEUE = "echo"


def subject(size: int) -> str:
    """The subject whose requests are answered with ``size`` bytes."""
    return f"echo.{size}"


async def serve(url: str) -> None:
    """Answer ``echo.<bytes>`` requests until SIGTERM."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    replies: dict[str, bytes] = {}
    nc = await nats.connect(url)

    async def answer(msg: Msg) -> None:
        reply = replies.get(msg.subject)
        if reply is None:
            reply = replies[msg.subject] = b"x" * int(msg.subject.rpartition(".")[2])
        await msg.respond(reply)

    await nc.subscribe("echo.*", queue=QUEUE, cb=answer)
    await nc.flush()
    print(READY, flush=True)
    await stop.wait()
    await nc.drain()


if __name__ == "__main__":  # python -m benchmarks.echo URL
    asyncio.run(serve(sys.argv[1]))
