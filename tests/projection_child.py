"""A store folding a stream's backlog and writing snapshots as it goes, in a process of its own.

tests/test_faults.py runs it and kills it with SIGKILL part-way: a crash of the projection,
not of nats-server. It prints ``restored <name|None>`` once connected, then ``snapshot
<sequence>`` after each snapshot it writes, and runs until killed (or gives up after
``--seconds``, so a test that failed to kill it leaves nothing behind).

    python tests/projection_child.py URL STREAM PREFIX EVERY
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from projections import JetStreamMessageStore, SnapshotPolicy


async def fold_and_snapshot(args: argparse.Namespace) -> None:
    """Connect without waiting for the backlog, so snapshots are written while it folds."""
    store = await JetStreamMessageStore.connect(
        args.url,
        stream=args.stream,
        subject_prefix=args.prefix,
        wait_until_ready=False,
        snapshots=SnapshotPolicy(every=args.every),
    )
    try:
        sys.stdout.write(f"restored {store.snapshots.health().restored}\n")
        sys.stdout.flush()
        after = 0
        while True:
            info = await store.snapshots.wait_written(after + 1)
            sys.stdout.write(f"snapshot {info.sequence}\n")
            sys.stdout.flush()
            after = info.sequence
    finally:
        await store.close()


def main() -> None:
    """Parse the arguments and fold until killed, or until ``--seconds`` have passed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("stream")
    parser.add_argument("prefix")
    parser.add_argument("every", type=int)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    asyncio.run(asyncio.wait_for(fold_and_snapshot(args), args.seconds))


if __name__ == "__main__":
    main()
