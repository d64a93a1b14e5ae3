"""The Docker healthcheck of a convlog replica: whether every partition of the service answers.

    python /etc/convlog/healthcheck.py [NATS_URL[,NATS_URL...]] [STREAM]

Asks each partition's ``health`` endpoint through RemoteMessageStore.health_check(); exit 0
when every partition has a replica that answers "ok", 1 otherwise (no replica yet, one
partition unserved, or a replica degraded), printing the status either way. It checks the
service, not this container alone: requests go to whichever replica of a partition the
server picks, so a second replica reads healthy as soon as the first serves everything.
"""

import asyncio
import os
import sys

from eventlog import ConvlogError
from projections import RemoteMessageStore


async def check(url: str, stream: str) -> int:
    """Print the service's health; 0 if ok."""
    try:
        servers = url.split(",")  # a cluster's URLs, as `convlog serve --nats-url` takes them
        async with await RemoteMessageStore.connect(servers, stream=stream, request_timeout=3) as s:
            health = await s.health_check()
    except ConvlogError as err:
        print(f"unavailable: {err}")
        return 1
    print(f"{health.status}, applied sequence {health.applied_sequence} {health.detail}".strip())
    return 0 if health.status == "ok" else 1


arguments = sys.argv[1:]
url = arguments.pop(0) if arguments else os.environ.get("NATS_URL", "nats://nats:4222")
stream = arguments.pop(0) if arguments else "CONVLOG"
sys.exit(asyncio.run(check(url, stream)))
