"""Time from creating a RedisQueue to Ready=True with its Secret injected, and operator RSS.

Starts the local control plane (tests/controlplane), a redis-server and the operator with
the install path's ServiceAccount, then creates RedisQueues one after another and measures
each until Ready=True and the app Secret carries REDIS_URL. Prints the median, and the
operator's resident memory at idle before and after. Run: ``python bench/operator_ready.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

import local_cluster
from harness.kube_controlplane import ControlPlane
from harness.operator_harness import (
    OperatorProcess,
    create_rq,
    read_secret,
    rq_path,
    service_account_kubeconfig,
)
from harness.redis_server import RedisServer
from local_cluster import NAMESPACE
from redisqueue.controller.api.kube import Kube


async def measure(
    plane: ControlPlane, operator: OperatorProcess, server: RedisServer, runs: int
) -> list[float]:
    kube = Kube.from_kubeconfig(plane.kubeconfig)
    await local_cluster.create_namespace(plane, kube, server)
    timings = []
    for i in range(runs):
        name = f"q{i}"
        started = time.perf_counter()
        await create_rq(kube, NAMESPACE, name, local_cluster.external_spec(server, f"app-{i}"))
        while True:
            rq = await kube.get(rq_path(NAMESPACE, name))
            env = await read_secret(kube, NAMESPACE, f"app-{i}")
            if local_cluster.is_ready(rq) and env and "REDIS_URL" in env:
                break
            await asyncio.sleep(0.02)
        timings.append(time.perf_counter() - started)
    await kube.close()
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    with local_cluster.control_plane() as (plane, workdir):
        server = local_cluster.start_redis(workdir)
        operator = OperatorProcess(service_account_kubeconfig(plane, workdir), workdir).start()
        try:
            time.sleep(3)
            assert operator.proc is not None
            idle_before = local_cluster.rss_mib(operator.proc.pid)
            timings = asyncio.run(measure(plane, operator, server, args.runs))
            time.sleep(5)
            idle_after = local_cluster.rss_mib(operator.proc.pid)
        finally:
            operator.stop()
            server.stop()
        print(f"control plane started in {plane.startup_seconds:.1f} s")
        print(
            f"create -> Ready=True and Secret injected: median {statistics.median(timings):.2f} s"
            f" (min {min(timings):.2f}, max {max(timings):.2f}, {len(timings)} runs)"
        )
        print(
            f"operator RSS at idle: {idle_before:.0f} MiB with no RedisQueue, "
            f"{idle_after:.0f} MiB with {len(timings)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
