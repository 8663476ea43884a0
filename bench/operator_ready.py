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
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "operator"))

from harness.kube_controlplane import ControlPlane  # noqa: E402
from harness.operator_harness import (  # noqa: E402
    OperatorProcess,
    apply_secret,
    create_rq,
    install_crd_and_rbac,
    read_secret,
    rq_path,
    service_account_kubeconfig,
)
from harness.redis_server import RedisServer  # noqa: E402
from redisqueue.controller.api.kube import Kube  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def measure(
    plane: ControlPlane, operator: OperatorProcess, server: RedisServer, runs: int
) -> list[float]:
    kube = Kube.from_kubeconfig(plane.kubeconfig)
    plane.kubectl("create", "namespace", "bench")
    await apply_secret(kube, "bench", "redis-auth", {"password": server.password or ""})
    timings = []
    for i in range(runs):
        name = f"q{i}"
        started = time.perf_counter()
        await create_rq(
            kube,
            "bench",
            name,
            {
                "redis": {"external": {"host": server.host, "port": server.port}},
                "auth": {"secretRef": {"name": "redis-auth", "key": "password"}},
                "inject": [{"secretName": f"app-{i}"}],
            },
        )
        while True:
            rq = await kube.get(rq_path("bench", name))
            ready = [
                c
                for c in (rq or {}).get("status", {}).get("conditions", [])
                if c["type"] == "Ready" and c["status"] == "True"
            ]
            env = await read_secret(kube, "bench", f"app-{i}")
            if ready and env and "REDIS_URL" in env:
                break
            await asyncio.sleep(0.02)
        timings.append(time.perf_counter() - started)
    await kube.close()
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ControlPlane() as plane:
        workdir = Path(tmp)
        server = RedisServer(workdir / "redis", password="bench-password-0123").start()
        install_crd_and_rbac(plane)
        operator = OperatorProcess(service_account_kubeconfig(plane, workdir), workdir).start()
        try:
            time.sleep(3)
            assert operator.proc is not None
            idle_before = rss_mib(operator.proc.pid)
            timings = asyncio.run(measure(plane, operator, server, args.runs))
            time.sleep(5)
            idle_after = rss_mib(operator.proc.pid)
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
