"""The operator's memory against a busy cluster, on the real API server: 300 Secrets of
1 MiB each in a namespace, two replicas with leader election (the install's default).

The Secret watch and lists carry metadata only, page by page, and only Secrets a
RedisQueue reads are fetched with their data: both replicas stay far under the chart's
memory limit (384 MiB) and are ready within 60 s of a start.
"""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import pytest

from harness.kube_controlplane import ControlPlane
from harness.operator_harness import (
    OPERATOR_NAMESPACE,
    OperatorProcess,
    apply_secret,
    create_rq,
    elected_replica,
    eventually,
    install_crd_and_rbac,
    read_secret,
    service_account_kubeconfig,
    wait_for_ready,
)
from harness.redis_server import RedisServer
from redisqueue.controller.api.kube import Kube

BIG_SECRETS = 300
SECRET_BYTES = 1024 * 1024
#: The chart's memory limit; the replicas must stay well under it.
LIMIT_MIB = 384
READY_WITHIN_SECONDS = 60.0


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


async def _has_password(kube: Kube, namespace: str, password: str) -> bool:
    app = await read_secret(kube, namespace, "app")
    return app is not None and app.get("REDIS_PASSWORD") == password


def start_replicas(kubeconfig: Path, workdir: Path) -> tuple[list[OperatorProcess], float]:
    """Two replicas as the install runs them; the seconds until both answered /readyz."""
    started = time.monotonic()
    replicas = [
        elected_replica(kubeconfig, workdir, f"bounded-{i}", log_level="INFO").start(
            timeout=READY_WITHIN_SECONDS
        )
        for i in range(2)
    ]
    return replicas, time.monotonic() - started


@pytest.mark.timeout(900)
async def test_two_replicas_stay_small_and_start_fast_beside_300_one_mib_secrets(
    control_plane: ControlPlane,
    kube: Kube,
    namespace: str,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    install_crd_and_rbac(control_plane)
    control_plane.kubectl("delete", "lease", "-n", OPERATOR_NAMESPACE, "--all", check=False)
    blob = base64.b64encode(os.urandom(SECRET_BYTES * 3 // 4)).decode()
    for i in range(BIG_SECRETS):
        await kube.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"big-{i}", "namespace": namespace},
                "data": {"blob": blob},
            }
        )
    await apply_secret(kube, namespace, "redis-auth", {"password": redis_server.password or ""})
    spec = {
        "redis": {"external": {"host": redis_server.host, "port": redis_server.port}},
        "auth": {"secretRef": {"name": "redis-auth", "key": "password"}},
        "inject": [{"secretName": "app"}],
    }
    await create_rq(kube, namespace, "beside-big-secrets", spec)
    kubeconfig = service_account_kubeconfig(control_plane, tmp_path)
    figures = []
    for run in ("start", "restart"):
        replicas, ready_after = start_replicas(kubeconfig, tmp_path)
        try:
            await wait_for_ready(kube, namespace, "beside-big-secrets")
            # More big Secrets while the replicas watch, then a rotated password: the watch
            # of Secrets is alive, and what it carries is metadata, not data.
            for i in range(BIG_SECRETS, BIG_SECRETS + 30):
                await kube.create(
                    {
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "metadata": {"name": f"{run}-big-{i}", "namespace": namespace},
                        "data": {"blob": blob},
                    }
                )
            rotated = f"rotated-{run}"
            with redis_server.admin() as admin:
                admin.config_set("requirepass", rotated)
            redis_server.password = rotated
            await apply_secret(kube, namespace, "redis-auth", {"password": rotated})
            await eventually(
                lambda rotated=rotated: _has_password(kube, namespace, rotated),  # type: ignore[misc]
                timeout=30,
                what="the rotated password in the app Secret",
            )
            peaks = [peak_rss_mib(r.proc.pid) for r in replicas if r.proc is not None]
        finally:
            for replica in replicas:
                replica.stop()
        figures.append((run, ready_after, ", ".join(f"{p:.0f}" for p in peaks), peaks))
        assert ready_after < READY_WITHIN_SECONDS, figures
        assert all(peak < LIMIT_MIB / 2 for peak in peaks), figures
    print(
        f"{BIG_SECRETS} Secrets of {SECRET_BYTES // 1024} KiB: "
        + "; ".join(
            f"{run}: both ready in {ready:.1f} s, peak RSS {shown} MiB"
            for run, ready, shown, _ in figures
        )
    )
