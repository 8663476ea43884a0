"""Failover: kill the leading operator replica; how long until the standby writes status?

Starts the local control plane, a redis-server and two operator replicas with leader
election (the install's ServiceAccount and Role), creates N RedisQueues, then kills the
leader twice over, once with SIGKILL (a node failure: the Lease must expire) and once with
SIGTERM (a drain: the Lease is released). For each it prints the time from the kill until
the new leader has written status for a spec change made right after the kill, against the
Lease duration measured in the same run, and how many /api/health/redis answers of the
standby were not 200 meanwhile (asked every 100 ms).

Run: ``python bench/failover.py --count 100``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import local_cluster
from harness.kube_controlplane import ControlPlane
from harness.operator_harness import (
    OPERATOR_NAMESPACE,
    OperatorProcess,
    create_rq,
    elected_replica,
    rq_path,
    service_account_kubeconfig,
)
from local_cluster import NAMESPACE
from redisqueue.controller.api.kube import Kube
from redisqueue.controller.api.paths import object_path

LEASE = object_path("coordination.k8s.io/v1", "Lease", OPERATOR_NAMESPACE, "redisqueue-operator")


def replica(kubeconfig: Path, workdir: Path, identity: str, lease: float) -> OperatorProcess:
    return elected_replica(kubeconfig, workdir, identity, lease_seconds=lease, log_level="INFO")


async def holder(kube: Kube) -> str | None:
    lease = await kube.get(LEASE)
    return None if lease is None else (lease.get("spec") or {}).get("holderIdentity")


async def wait_for(check: Any, limit: float, what: str) -> None:
    started = time.perf_counter()
    while not await check():
        if time.perf_counter() - started > limit:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def failover(
    kube: Kube,
    replicas: dict[str, OperatorProcess],
    how: signal.Signals,
    generation: int,
) -> tuple[float, int, int]:
    """(seconds until the new leader wrote status, health answers, non-200 answers)."""
    leader_name = await holder(kube)
    assert leader_name in replicas, leader_name
    leader = replicas[leader_name]
    standby = next(p for name, p in replicas.items() if name != leader_name)
    answers: list[int] = []

    async def ask() -> None:
        while True:
            status, _ = await asyncio.to_thread(standby.http, "/api/health/redis")
            answers.append(status)
            await asyncio.sleep(0.1)

    asker = asyncio.create_task(ask())
    await asyncio.sleep(1)
    assert leader.proc is not None
    killed = time.perf_counter()
    os.killpg(leader.proc.pid, how)
    await asyncio.to_thread(leader.proc.wait)
    leader.proc = None
    await kube.merge_patch(
        rq_path(NAMESPACE, "q0"), {"spec": {"pool": {"maxConnections": 10 + generation}}}
    )

    async def written() -> bool:
        rq = await kube.get(rq_path(NAMESPACE, "q0"))
        return bool(
            rq
            and (rq.get("status") or {}).get("observedGeneration") == rq["metadata"]["generation"]
        )

    await wait_for(written, 300, "status written by the new leader")
    seconds = time.perf_counter() - killed
    asker.cancel()
    leader.start()  # back as the standby for the next round
    failed = [a for a in answers if a != 200]
    if failed:
        print(f"non-200 answers during {how.name} failover: {sorted(set(failed))}")
    return seconds, len(answers), len(failed)


async def run(args: argparse.Namespace, plane: ControlPlane, workdir: Path) -> list[str]:
    server = local_cluster.start_redis(workdir)
    kube = Kube.from_kubeconfig(plane.kubeconfig)
    kubeconfig = service_account_kubeconfig(plane, workdir)
    replicas = {
        name: replica(kubeconfig, workdir, name, args.lease_seconds)
        for name in ("replica-a", "replica-b")
    }
    lines = []
    try:
        for process in replicas.values():
            process.start()
        await local_cluster.create_namespace(plane, kube, server)
        for i in range(args.count):
            spec = local_cluster.external_spec(server, f"app-{i}")
            await create_rq(kube, NAMESPACE, f"q{i}", spec)

        async def all_ready() -> bool:
            items = await kube.list(rq_path(NAMESPACE))
            return len(items) == args.count and all(local_cluster.is_ready(rq) for rq in items)

        await wait_for(all_ready, 600, "all Ready")
        await asyncio.sleep(3)
        for generation, how in enumerate((signal.SIGKILL, signal.SIGTERM), start=1):
            seconds, asked, failed = await failover(kube, replicas, how, generation)
            lines.append(
                f"leader killed with {how.name}: new leader wrote status after {seconds:.1f} s "
                f"(lease duration {args.lease_seconds:g} s, ratio "
                f"{seconds / args.lease_seconds:.2f}); standby health: {asked} answers, "
                f"{failed} not 200"
            )
            await asyncio.sleep(3)
        errors = [
            line
            for p in replicas.values()
            for line in p.logs().splitlines()
            if " ERROR " in line or "Traceback" in line
        ]
        lines.append(f"replica logs: {len(errors)} errors")
        lines += [f"  {line}" for line in errors]
    finally:
        for process in replicas.values():
            process.stop()
        server.stop()
        await kube.close()
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--lease-seconds", type=float, default=15.0)
    args = parser.parse_args()
    with local_cluster.control_plane() as (plane, workdir):
        lines = asyncio.run(run(args, plane, workdir))
    print(f"RedisQueues: {args.count}, two replicas with leader election")
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
