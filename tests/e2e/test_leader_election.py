"""Two operator replicas with Lease-based leader election, as the install runs them.

Both replicas run with the install's ServiceAccount (the manifests' Role for the Lease). One
holds the Lease and writes; the other probes every RedisQueue from a read-only watch and
answers the health endpoint. Killing the leader (SIGKILL: no chance to release the Lease)
hands the writing to the standby, while the standby's health answers stay 200.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import re
import signal
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.api_proxy import ApiProxy
from harness.kube_controlplane import ControlPlane
from harness.operator_harness import (
    OPERATOR_NAMESPACE,
    ExternalQueue,
    OperatorProcess,
    apply_secret,
    condition,
    create_rq,
    elected_replica,
    events_for,
    eventually,
    external_spec,
    install_crd_and_rbac,
    rq_path,
    service_account_kubeconfig,
)
from harness.redis_server import RedisServer, TLSFiles
from redisqueue.controller.api.kube import Kube
from redisqueue.controller.api.paths import object_path

LEASE_SECONDS = 6
LEASE = object_path("coordination.k8s.io/v1", "Lease", OPERATOR_NAMESPACE, "redisqueue-operator")


def replica(kubeconfig: Path, workdir: Path, identity: str) -> OperatorProcess:
    return elected_replica(kubeconfig, workdir, identity, lease_seconds=LEASE_SECONDS)


@pytest.fixture
def replicas(control_plane: ControlPlane, tmp_path: Path) -> Iterator[list[OperatorProcess]]:
    install_crd_and_rbac(control_plane)
    control_plane.kubectl("delete", "lease", "-n", OPERATOR_NAMESPACE, "--all", check=False)
    kubeconfig = service_account_kubeconfig(control_plane, tmp_path)
    started = [replica(kubeconfig, tmp_path, "replica-a").start()]
    started.append(replica(kubeconfig, tmp_path, "replica-b").start())
    yield started
    for process in started:
        process.stop()


async def holder(kube: Kube) -> str | None:
    lease = await kube.get(LEASE)
    return None if lease is None else (lease.get("spec") or {}).get("holderIdentity")


async def test_one_replica_leads_the_standby_probes_and_takes_over_when_the_leader_dies(
    replicas: list[OperatorProcess],
    kube: Kube,
    namespace: str,
    redis_server: RedisServer,
    external_queue: ExternalQueue,
) -> None:
    first, second = replicas
    leader_name = await eventually(lambda: holder(kube), timeout=30, what="a Lease holder")
    leader, standby = (first, second) if leader_name == first.identity else (second, first)
    assert leader_name == leader.identity

    every_2s = {"intervalSeconds": 2, "timeoutSeconds": 1}
    spec = external_spec(redis_server, inject=[{"secretName": "app-redis"}], healthCheck=every_2s)
    await external_queue("ha", spec)
    # Only the leader wrote: the Ready event (posted just after the status) names it.
    events = await eventually(
        lambda: events_for(kube, namespace, "ha"), timeout=30, what="the Ready Event"
    )
    assert {e["reportingInstance"] for e in events} == {leader.identity}

    # The standby answers for the RedisQueue from its own PINGs.
    async def standby_answers() -> bool:
        status, body = standby.health(namespace, "ha")
        return status == 200 and body.get("status") == "connected"

    await eventually(standby_answers, timeout=30, what="the standby's health answer")
    assert "Handler 'reconcile'" not in standby.logs()

    # Kill the leader outright: it cannot release the Lease, so the standby must wait it out.
    assert leader.proc is not None
    os.killpg(leader.proc.pid, signal.SIGKILL)
    leader.proc.wait()
    leader.proc = None

    answers: list[int] = []

    async def keep_asking() -> None:
        while True:
            answers.append(standby.http("/api/health/redis")[0])
            await asyncio.sleep(0.2)

    asker = asyncio.create_task(keep_asking())
    try:
        await eventually(
            lambda: _is(holder(kube), standby.identity),
            timeout=LEASE_SECONDS * 4,
            what="the standby taking the Lease over",
        )

        # The new leader writes: a spec change is reconciled and its generation observed.
        await kube.merge_patch(rq_path(namespace, "ha"), {"spec": {"pool": {"maxConnections": 9}}})

        async def observed() -> dict[str, Any] | None:
            rq = await kube.get(rq_path(namespace, "ha"))
            if rq and rq["status"].get("observedGeneration") == rq["metadata"]["generation"]:
                return rq
            return None

        rq = await eventually(observed, timeout=60, what="status written by the new leader")
        assert condition(rq, "Ready")["status"] == "True"
    finally:
        asker.cancel()
    assert answers and set(answers) == {200}, answers
    assert "Traceback" not in standby.logs()


async def _is(value: Awaitable[str | None], expected: str) -> bool:
    return await value == expected


def _written(control_plane: ControlPlane, identity: str, since: str) -> list[dict[str, Any]]:
    """The operator replica ``identity``'s writes that the API server carried out since."""
    return [
        e
        for e in control_plane.audited_writes(f"redisqueue-operator/{identity}")
        if int((e.get("responseStatus") or {}).get("code") or 0) < 300
        and e["requestReceivedTimestamp"] >= since
    ]


async def test_a_leader_whose_lease_calls_hang_stops_writing_before_the_standby_starts(
    control_plane: ControlPlane,
    kube: Kube,
    namespace: str,
    redis_server: RedisServer,
    tls_files: TLSFiles,
    tmp_path: Path,
) -> None:
    """The leader reaches the API server through a proxy that, from a moment on, never
    answers its Lease calls (a half-open connection), while its other calls go through.
    The API server's own audit record shows that the old leader's last write completed
    before the new leader's first write arrived."""
    install_crd_and_rbac(control_plane)
    control_plane.kubectl("delete", "lease", "-n", OPERATOR_NAMESPACE, "--all", check=False)
    since = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    direct = service_account_kubeconfig(control_plane, tmp_path)
    proxy = ApiProxy(direct, tls_files).start()
    leader = replica(proxy.kubeconfig(tmp_path), tmp_path, "cut-off").start()
    standby: OperatorProcess | None = None
    creator: asyncio.Task[None] | None = None
    try:
        await eventually(lambda: _is(holder(kube), leader.identity), timeout=30, what="a leader")
        standby = replica(direct, tmp_path, "taking-over").start()
        await apply_secret(kube, namespace, "redis-auth", {"password": redis_server.password or ""})
        spec = external_spec(redis_server, healthCheck={"intervalSeconds": 2, "timeoutSeconds": 1})

        async def keep_creating() -> None:
            # A steady stream of work: the leader writes right up to its renew deadline.
            for i in range(10_000):
                await create_rq(kube, namespace, f"w{i}", spec)
                await asyncio.sleep(0.2)

        creator = asyncio.create_task(keep_creating())
        await eventually(
            lambda: _async(len(_written(control_plane, leader.identity, since)) >= 10),
            timeout=60,
            what="the leader writing",
        )
        proxy.black_hole = re.compile(r"/leases/")
        cut_at = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        await eventually(
            lambda: _is(holder(kube), standby.identity),  # type: ignore[union-attr]
            timeout=LEASE_SECONDS * 6,
            what="the standby taking the Lease over",
        )
        await eventually(
            lambda: _async(len(_written(control_plane, standby.identity, since)) >= 5),  # type: ignore[union-attr]
            timeout=60,
            what="the new leader writing",
        )
        await asyncio.sleep(LEASE_SECONDS)  # time for any late write of the old leader
    finally:
        if creator is not None:
            creator.cancel()
        proxy.close()
        leader.stop()
        if standby is not None:
            standby.stop()
    old = _written(control_plane, leader.identity, since)
    new = _written(control_plane, standby.identity, since)
    last_old = max(e["stageTimestamp"] for e in old)
    first_new = min(e["requestReceivedTimestamp"] for e in new)
    print(
        f"Lease calls black-holed at {cut_at}; old leader's last write completed {last_old}, "
        f"new leader's first write received {first_new} ({len(old)} and {len(new)} writes, "
        f"{proxy.held} Lease calls held)"
    )
    assert proxy.held > 0
    assert last_old < first_new, (last_old, first_new)
    assert "no longer the leader (writes stopped)" in leader.logs()
    events = await kube.list(object_path("v1", "Event", OPERATOR_NAMESPACE))
    elected = [e for e in events if e.get("reason") == "LeaderElected"]
    assert any(standby.identity in e["message"] for e in elected), elected


async def _async(value: bool) -> bool:
    return value
