"""Peak memory of one PING answered with 160 MB: redis-py's own reader against the probe's.

Each side runs in a fresh interpreter (peak RSS only grows, so they cannot share one) against
the hostile fake endpoint of the tests (``tests/harness/hostile_redis.py``; a real redis-server
cannot send such a reply). Prints the peak RSS growth of each and their ratio.

Run: ``python bench/reply_memory.py``
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = """
import asyncio, resource, sys
sys.path.insert(0, {tests!r})
import redis.asyncio
from harness.hostile_redis import HostileRedis
from redisqueue.controller.probing.bounded import limit_replies

async def main() -> None:
    async with HostileRedis("huge_bulk_ping") as fake:
        client = redis.asyncio.Redis(host=fake.host, port=fake.port, protocol=2, socket_timeout=60)
        if {bounded}:
            limit_replies(client)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            await client.ping()
        except Exception:
            pass
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        await client.aclose()
        print(after - before, fake.sent)

asyncio.run(main())
"""


def growth_kib(bounded: bool) -> tuple[int, int]:
    code = CHILD.format(tests=str(HERE.parent / "tests"), bounded=bounded)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[0]), int(out[1])


def main() -> None:
    stock, stock_sent = growth_kib(False)
    bounded, bounded_sent = growth_kib(True)
    mib = 2**20
    print(f"redis-py reader: peak RSS +{stock / 1024:.1f} MiB, {stock_sent / mib:.1f} MiB sent")
    print(f"bounded reader:  peak RSS +{bounded / 1024:.1f} MiB, {bounded_sent / mib:.1f} MiB sent")
    print(f"ratio bounded/stock: {max(bounded, 1) / max(stock, 1):.4f}")


if __name__ == "__main__":
    main()
