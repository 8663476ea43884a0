"""Provision mode and Redis failures on the real test node, as medians over several runs.

Starts the single-node cluster of ``tests/harness/kube_node.py`` (root), installs the chart with the
locally built operator image, then per run, in a fresh namespace:

* applies ``manifests/examples/provision.yaml`` (Redis image built here) and measures apply
  -> RedisQueue ``Ready=True``, next to apply -> the Redis pod Ready (the kubelet's own
  verdict, the baseline the operator cannot beat);
* kills the Redis pod (``kubectl delete pod``) while a client in the cluster PINGs it every
  50 ms with the injected credentials, and measures the failure window: first failed PING
  to first successful one. The same for a crash of the Redis process (SIGKILL from the
  host), after which the kubelet restarts the container in place.

Run: ``sudo .venv/bin/python bench/node_bench.py --runs 5``.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))

import yaml  # noqa: E402

from harness.kube_node import Node  # noqa: E402
from harness.node_fixtures import (  # noqa: E402
    TOOLBOX,
    ensure_toolbox,
    install_chart,
)

PINGER = """
import json, sys, time, redis
cfg = json.load(sys.stdin)
r = redis.Redis.from_url(cfg["url"], password=cfg["password"], socket_timeout=0.5,
                         socket_connect_timeout=0.5)
print("start", flush=True)
first_fail = last_fail = None
ok_since = None
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    try:
        r.ping()
        now = time.monotonic()
        if first_fail is not None:
            ok_since = ok_since or now
            if now - ok_since > 2:
                break
    except redis.RedisError:
        now = time.monotonic()
        first_fail = first_fail or now
        last_fail, ok_since = now, None
    time.sleep(0.05)
window = None if first_fail is None else (ok_since or time.monotonic()) - first_fail
print(json.dumps({"window": window}), flush=True)
"""


def get(node: Node, *args: str) -> str:
    return node.kubectl("get", *args).stdout.strip()


def is_ready(node: Node, namespace: str, kind: str, name: str) -> bool:
    """Whether the object shows the condition Ready=True (not while it does not exist yet)."""
    status = get(
        node,
        kind,
        "-n",
        namespace,
        name,
        "--ignore-not-found",
        "-o",
        "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
    )
    return status == "True"


def wait(what: str, probe: Any, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def provision(node: Node, namespace: str) -> tuple[float, float]:
    doc = yaml.safe_load((REPO / "manifests" / "examples" / "provision.yaml").read_text())
    doc["spec"]["redis"]["provision"]["image"] = node.images["redis"].ref
    started = time.monotonic()
    node.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc))
    pod_ready = rq_ready = 0.0
    deadline = started + 180
    while not (pod_ready and rq_ready) and time.monotonic() < deadline:
        if not pod_ready and is_ready(node, namespace, "pod", "analysis-jobs-redis-0"):
            pod_ready = time.monotonic() - started
        if not rq_ready and is_ready(node, namespace, "redisqueue", "analysis-jobs"):
            rq_ready = time.monotonic() - started
        time.sleep(0.1)
    if not (pod_ready and rq_ready):
        raise SystemExit("provision example did not become Ready")
    return rq_ready, pod_ready


def failure_window(node: Node, namespace: str, kill: str) -> float:
    secret = json.loads(
        node.kubectl("get", "secret", "-n", namespace, "analysis-worker-redis", "-o", "json").stdout
    )["data"]
    cfg = {
        "url": base64.b64decode(secret["REDIS_URL"]).decode(),
        "password": base64.b64decode(secret["REDIS_PASSWORD"]).decode(),
    }
    import subprocess

    assert node.plane.bin_dir is not None
    proc = subprocess.Popen(
        [
            str(node.plane.bin_dir / "kubectl"),
            f"--kubeconfig={node.kubeconfig}",
            "exec",
            "-i",
            "-n",
            "default",
            TOOLBOX,
            "--",
            "python3",
            "-c",
            PINGER,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(cfg))
    proc.stdin.close()
    assert proc.stdout.readline().strip() == "start"
    time.sleep(1)
    pod = "analysis-jobs-redis-0"
    if kill == "pod":
        node.kubectl("delete", "pod", "-n", namespace, pod, "--wait=false")
    else:
        cid = get(
            node,
            "pod",
            "-n",
            namespace,
            pod,
            "-o",
            "jsonpath={.status.containerStatuses[0].containerID}",
        ).split("://", 1)[1]
        node.kill_container(cid)
    out = proc.stdout.read()
    proc.wait(timeout=150)
    window = json.loads(out.strip().splitlines()[-1])["window"]
    if window is None:
        raise SystemExit("the pinger saw no failure")
    node.kubectl("wait", "-n", namespace, "--for=condition=Ready", f"pod/{pod}", "--timeout=120s")
    return float(window)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with Node() as node:
        print(
            f"node up in {node.startup_seconds:.1f} s "
            f"({', '.join(f'{k} {v:.1f} s' for k, v in node.timings.items())})"
        )
        started = time.monotonic()
        install_chart(node, wait_seconds=300)
        print(f"helm install -> operator Ready: {time.monotonic() - started:.1f} s")
        ensure_toolbox(node)
        ready, pod_ready, pod_kill, crash = [], [], [], []
        for run in range(args.runs):
            namespace = f"bench-{run}"
            node.kubectl("create", "namespace", namespace)
            rq, pod = provision(node, namespace)
            ready.append(rq)
            pod_ready.append(pod)
            pod_kill.append(failure_window(node, namespace, "pod"))
            crash.append(failure_window(node, namespace, "crash"))
            print(
                f"run {run + 1}: apply->Ready {rq:.1f} s (Redis pod Ready {pod:.1f} s), "
                f"failure window: pod delete {pod_kill[-1]:.1f} s, crash {crash[-1]:.1f} s"
            )
        med = statistics.median
        print(f"\nmedians over {args.runs} runs (2 cores, shared):")
        print(f"  provision.yaml apply -> RedisQueue Ready=True  {med(ready):5.1f} s")
        print(
            f"  baseline: apply -> Redis pod Ready (kubelet)  {med(pod_ready):5.1f} s"
            f"  (operator adds {med(ready) - med(pod_ready):.1f} s, "
            f"ratio {med(ready) / med(pod_ready):.2f})"
        )
        print(f"  failure window, Redis pod deleted            {med(pod_kill):5.1f} s")
        print(f"  failure window, Redis process SIGKILLed      {med(crash):5.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
