"""Two operator replicas with Lease-based leader election, as the install runs them.

Both replicas run with the install's ServiceAccount (the manifests' Role for the Lease). One
holds the Lease and writes; the other probes every RedisQueue from a read-only watch and
answers the health endpoint. Killing the leader (SIGKILL: no chance to release the Lease)
hands the writing to the standby, while the standby's health answers stay 200.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kube_controlplane import ControlPlane
from operator_harness import (
    OPERATOR_NAMESPACE,
    OperatorProcess,
    apply_secret,
    condition,
    create_rq,
    events_for,
    eventually,
    install_crd_and_rbac,
    rq_path,
    service_account_kubeconfig,
    wait_for_ready,
)
from redis_server import RedisServer
from redisqueue.controller.api.kube import Kube, object_path

LEASE_SECONDS = 6
LEASE = object_path("coordination.k8s.io/v1", "Lease", OPERATOR_NAMESPACE, "redisqueue-operator")


def replica(kubeconfig: Path, workdir: Path, identity: str) -> OperatorProcess:
    return OperatorProcess(
        kubeconfig,
        workdir,
        identity=identity,
        extra_args=(
            "--leader-election",
            "--lease-namespace",
            OPERATOR_NAMESPACE,
            "--lease-duration",
            str(LEASE_SECONDS),
        ),
    )


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
) -> None:
    first, second = replicas
    leader_name = await eventually(lambda: holder(kube), timeout=30, what="a Lease holder")
    leader, standby = (first, second) if leader_name == first.identity else (second, first)
    assert leader_name == leader.identity

    await apply_secret(kube, namespace, "redis-auth", {"password": redis_server.password or ""})
    spec: dict[str, Any] = {
        "redis": {"external": {"host": redis_server.host, "port": redis_server.port}},
        "auth": {"secretRef": {"name": "redis-auth", "key": "password"}},
        "inject": [{"secretName": "app-redis"}],
        "healthCheck": {"intervalSeconds": 2, "timeoutSeconds": 1},
    }
    await create_rq(kube, namespace, "ha", spec)
    await wait_for_ready(kube, namespace, "ha")
    # Only the leader wrote: the Ready event names it.
    events = await events_for(kube, namespace, "ha")
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
