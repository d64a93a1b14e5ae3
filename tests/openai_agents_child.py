"""One process of tests/test_framework_openai_agents.py's race: add items, then read them.

Connects a store of its own, prints ``ready`` and waits for a line on stdin; then adds
BATCHES batches of three items tagged NAME (one ``add_items`` each), prints ``added``,
waits for another line, and prints the session's items as one JSON line.

    python tests/openai_agents_child.py URL STREAM PREFIX SESSION NAME BATCHES
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from projections import JetStreamMessageStore
from projections.frameworks.openai_agents import ConvlogSession


def tell(line: str) -> None:
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()


async def race(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    async with await JetStreamMessageStore.connect(
        args.url, stream=args.stream, subject_prefix=args.prefix
    ) as store:
        session = ConvlogSession(args.session, store, tenant_id="acme", user_id="alice")
        tell("ready")
        await loop.run_in_executor(None, sys.stdin.readline)
        for batch in range(args.batches):
            await session.add_items(
                [
                    {"role": "user", "content": f"{args.name} {batch} question"},
                    {
                        "type": "function_call",
                        "call_id": f"{args.name}-{batch}",
                        "name": "lookup",
                        "arguments": json.dumps({"batch": batch}),
                    },
                    {
                        "type": "function_call_output",
                        "call_id": f"{args.name}-{batch}",
                        "output": f"{args.name} {batch} answer",
                    },
                ]
            )
        tell("added")
        await loop.run_in_executor(None, sys.stdin.readline)
        tell(json.dumps(await session.get_items()))


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("url", "stream", "prefix", "session", "name"):
        parser.add_argument(name)
    parser.add_argument("batches", type=int)
    asyncio.run(asyncio.wait_for(race(parser.parse_args()), 60))


if __name__ == "__main__":
    main()
