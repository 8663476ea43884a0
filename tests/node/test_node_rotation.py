"""Password rotation with zero downtime, on the real test node, the way users rotate.

The chart installs the operator; a provisioned RedisQueue serves three Deployments of
``tests/node/worker.py``: a producer pushing a job every 50 ms and consumers taking them with
BLMOVE, two that read ``REDIS_PASSWORD_FILE`` from the mounted injected Secret (no password in
their environment) and two that get the contract with ``envFrom`` and opt in to being restarted
(``spec.inject[].restart``). Then the auth Secret is changed, three times, with ``kubectl
patch``, and each rotation is measured: the Redis pod (same UID, no restart), failed commands
and consumption gaps of the file-reading apps, the longest push, the file-reading pods (not
restarted), the envFrom apps (processing again with the new password within the grace
period), the RedisQueue's Ready condition and rotation phase (followed by a watch), the old
password (refused only after the grace period and once the envFrom apps have rolled out) and,
at the end, every job.

A ValidatingAdmissionPolicy modelled on Kyverno's ``disallow-secrets-from-env-vars`` is bound
to the operator's pods before the Redis is created: the Redis pod is admitted, so none of its
environment variables references a Secret.
"""

from __future__ import annotations

import datetime
import itertools
import json
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from test_node_cluster import (
    WORKER,
    apply_manifest,
    events,
    in_toolbox,
    jsonpath,
    pod_field,
    provision_manifest,
    wait_for,
    worker_manifest,
)

from harness.ecosystem_fixtures import APP_SECRET, QUEUE_NAME, wait_queue_ready
from harness.kube_node import Node
from harness.node_fixtures import chart_installed

pytestmark = [pytest.mark.node, pytest.mark.timeout(1500)]

AUTH_SECRET = "analysis-jobs-redis-auth"
REDIS_POD = "analysis-jobs-redis-0"
#: Above the test node's kubelet sync period (10 s), which bounds when a mounted Secret file
#: changes; the shipped default (120 s) is for kubelets at their default of 1 minute.
GRACE = 40
ROTATIONS = 3
#: One job every 50 ms, for as long as the three rotations take: the test stops the
#: producer once they are over (``STOP_KEY``); JOBS is only its upper bound.
RATE = 20
JOBS = 7200
STOP_KEY = "phase1:jobs:stop-producing"
BLOCK_SECONDS = 30

# The Kyverno policy `disallow-secrets-from-env-vars`, as a ValidatingAdmissionPolicy.
NO_SECRETS_IN_ENV = """
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: disallow-secrets-from-env-vars}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - {apiGroups: [""], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [pods]}
  validations:
    - expression: >-
        object.spec.containers.all(c,
          (!has(c.env) || c.env.all(e, !has(e.valueFrom) || !has(e.valueFrom.secretKeyRef)))
          && (!has(c.envFrom) || c.envFrom.all(f, !has(f.secretRef))))
      message: Secrets must be mounted as volumes, not as environment variables
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: disallow-secrets-from-env-vars}
spec:
  policyName: disallow-secrets-from-env-vars
  validationActions: [Deny]
  matchResources:
    objectSelector:
      matchLabels: {app.kubernetes.io/managed-by: redisqueue-operator}
"""


# --------------------------------------------------------------------------- the install


@pytest.fixture(scope="module")
def chart_operator(node: Node) -> Iterator[str]:
    """The chart installed as its README says, with the image built here."""
    with chart_installed(node, wait_seconds=360) as release:
        yield release


def redis_queue(node: Node) -> str:
    doc = yaml.safe_load(provision_manifest(node))
    doc["spec"]["inject"] = [
        {"secretName": APP_SECRET, "restart": [{"kind": "Deployment", "name": "consumers-env"}]}
    ]
    doc["spec"]["rotation"] = {"gracePeriodSeconds": GRACE}
    return yaml.safe_dump(doc)


# --------------------------------------------------------------------------- observation


@dataclass
class StatusWatch:
    """``kubectl get -w`` of the RedisQueue: every status it went through, with the time."""

    node: Node
    namespace: str
    seen: list[tuple[float, str, str | None]] = field(default_factory=list)
    proc: subprocess.Popen[str] | None = None
    reader: threading.Thread | None = None

    def start(self) -> StatusWatch:
        bin_dir = self.node.plane.bin_dir
        assert bin_dir is not None
        self.proc = subprocess.Popen(
            [
                str(bin_dir / "kubectl"),
                f"--kubeconfig={self.node.kubeconfig}",
                "get",
                "redisqueue",
                QUEUE_NAME,
                "-n",
                self.namespace,
                "-w",
                "-o",
                "json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        for line in self.proc.stdout:
            buffer += line
            while buffer.strip():
                try:
                    obj, end = decoder.raw_decode(buffer.lstrip())
                except json.JSONDecodeError:
                    break
                buffer = buffer.lstrip()[end:]
                status = obj.get("status") or {}
                ready = next(
                    (c["status"] for c in status.get("conditions", []) if c["type"] == "Ready"),
                    "?",
                )
                phase = (status.get("rotation") or {}).get("phase")
                self.seen.append((time.time(), ready, phase))

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            if self.reader is not None:
                self.reader.join(timeout=10)  # it reads to the end of the closed pipe
            if self.proc.stdout is not None:
                self.proc.stdout.close()


# Without retries: redis-py retries a failed AUTH on its own backoff (about 4 s in all), which
# would blur the moment measured; the name is resolved once for the same reason.
AUTH_WATCH = """
import json, socket, sys, time, redis
from redis.backoff import NoBackoff
from redis.retry import Retry
cfg = json.load(sys.stdin)
address = socket.gethostbyname(cfg["host"])
deadline = time.time() + cfg["seconds"]
while time.time() < deadline:
    try:
        redis.Redis(
            host=address, port=6379, password=cfg["old"], socket_timeout=3,
            retry=Retry(NoBackoff(), 0),
        ).ping()
    except redis.AuthenticationError:
        print(json.dumps({"rejected_at": time.time()}))
        break
    except redis.RedisError as exc:
        print(json.dumps({"error": type(exc).__name__, "at": time.time()}), flush=True)
    time.sleep(0.1)
"""


def watch_old_password(
    node: Node, namespace: str, old: str, seconds: float, answer: dict[str, Any]
) -> threading.Thread:
    """In the cluster: the time Redis first refuses a new connection with ``old``."""

    def run() -> None:
        host = f"{QUEUE_NAME}-redis.{namespace}.svc"
        proc = in_toolbox(
            node, AUTH_WATCH, {"host": host, "old": old, "seconds": seconds}, seconds + 60
        )
        for line in proc.stdout.splitlines():
            answer.update(json.loads(line))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def pods(node: Node, namespace: str, app: str) -> dict[str, dict[str, Any]]:
    items = json.loads(
        node.kubectl("get", "pods", "-n", namespace, "-l", f"app={app}", "-o", "json").stdout
    )["items"]
    return {p["metadata"]["name"]: p for p in items if not p["metadata"].get("deletionTimestamp")}


def restarts(pod: dict[str, Any]) -> int:
    return sum(int(c.get("restartCount", 0)) for c in pod["status"].get("containerStatuses", []))


def redis_eval(node: Node, namespace: str, password: str, code: str) -> Any:
    host = f"{QUEUE_NAME}-redis.{namespace}.svc"
    prelude = (
        "import json, sys, redis\ncfg = json.load(sys.stdin)\n"
        "r = redis.Redis(host=cfg['host'], port=6379, password=cfg['password'],"
        " socket_timeout=10, decode_responses=True)\n"
    )
    proc = in_toolbox(node, prelude + code, {"host": host, "password": password})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def attempts(node: Node, namespace: str, password: str) -> list[tuple[str, str, float]]:
    """Every processing attempt: (job, consumer pod, time)."""
    raw = redis_eval(
        node, namespace, password, "print(json.dumps(sorted(r.smembers('phase1:jobs:attempts'))))"
    )
    found = []
    for member in raw:
        job, consumer, at, _ = member.split()
        found.append((job, consumer, float(at)))
    return found


def logs(node: Node, namespace: str, app: str) -> str:
    return node.kubectl("logs", "-n", namespace, "-l", f"app={app}", "--tail=-1").stdout


def failures(text: str) -> int:
    """Failed commands a worker saw: its own error lines and the client library's retries."""
    return len(re.findall(r"redis error|retrying in|AuthenticationError", text))


def longest_gap(times: list[float], start: float, end: float) -> float:
    inside = sorted(t for t in times if start <= t <= end)
    edges = [start, *inside, end]
    return max(b - a for a, b in itertools.pairwise(edges))


def auth_password(node: Node, namespace: str) -> str:
    import base64

    data = jsonpath(node, "secret", "-n", namespace, AUTH_SECRET, "-o", "jsonpath={.data.password}")
    return base64.b64decode(data).decode()


# --------------------------------------------------------------------------- the proof


def test_rotation_keeps_redis_apps_and_jobs_running_and_retires_the_old_password_last(
    node: Node, chart_operator: str, toolbox: str, node_namespace: str
) -> None:
    namespace = node_namespace
    node.kubectl("apply", "-f", "-", input=NO_SECRETS_IN_ENV)
    try:
        _run(node, namespace)
    finally:
        node.kubectl("delete", "-f", "-", "--ignore-not-found", input=NO_SECRETS_IN_ENV)


def _run(node: Node, namespace: str) -> None:
    # The admission policy is loaded asynchronously; the Redis pod is created only after it.
    time.sleep(3)
    apply_manifest(node, namespace, redis_queue(node))
    wait_queue_ready(node, namespace)
    redis_pod = json.loads(
        node.kubectl("get", "pod", "-n", namespace, REDIS_POD, "-o", "json").stdout
    )
    for container in redis_pod["spec"]["containers"]:
        assert "envFrom" not in container
        for env in container.get("env", []):
            assert "secretKeyRef" not in env.get("valueFrom", {}), env
    redis_uid = redis_pod["metadata"]["uid"]

    node.kubectl("create", "configmap", "worker", "-n", namespace, f"--from-file={WORKER}")
    host = {"REDIS_HOST": f"{QUEUE_NAME}-redis.{namespace}.svc"}
    consumer_env = {"BLOCK_SECONDS": str(BLOCK_SECONDS)}
    for manifest in (
        worker_manifest(
            node, "consumers-file", "consume", 2, {**host, **consumer_env}, from_file=True
        ),
        worker_manifest(node, "consumers-env", "consume", 2, consumer_env, from_file=False),
    ):
        apply_manifest(node, namespace, manifest)
    for name in ("consumers-file", "consumers-env"):
        node.kubectl(
            "rollout", "status", "-n", namespace, f"deploy/{name}", "--timeout=180s", timeout=200
        )
    producer_env = {
        **host,
        "JOBS": str(JOBS),
        "RATE": str(RATE),
        "RUN": "rot",
        "STOP_KEY": STOP_KEY,
    }
    producer = worker_manifest(node, "producer", "produce", 1, producer_env, from_file=True)
    apply_manifest(node, namespace, producer)
    node.kubectl("rollout", "status", "-n", namespace, "deploy/producer", "--timeout=120s")
    steady = {name: pods(node, namespace, name) for name in ("consumers-file", "producer")}
    assert all(len(group) == n for group, n in zip(steady.values(), (2, 1), strict=True))
    time.sleep(10)  # jobs flowing before the first change

    watch = StatusWatch(node, namespace).start()
    figures: list[dict[str, Any]] = []
    window_start = time.time()
    try:
        for run in range(1, ROTATIONS + 1):
            figures.append(_rotate(node, namespace, run))
    finally:
        watch.stop()
    window_end = time.time()
    password = auth_password(node, namespace)
    # The producer must still have been pushing when the last rotation ended, or the gaps
    # measured below would be the end of the work, not a stall.
    assert "produced" not in logs(node, namespace, "producer"), "raise JOBS"
    redis_eval(node, namespace, password, f"print(json.dumps(r.set({STOP_KEY!r}, 1)))")

    # Every job the producer pushed was processed.
    wait_for(
        "the producer to stop",
        lambda: "produced" in logs(node, namespace, "producer"),
        timeout=60,
        interval=2,
    )
    ((stopped_at, produced),) = [
        (float(t), int(n))
        for t, n in re.findall(r"([0-9.]+) produced (\d+),", logs(node, namespace, "producer"))
    ]
    # It pushed all along the rotations: it stopped only after the last one had ended.
    assert stopped_at >= window_end, (stopped_at, window_end)

    def settled() -> dict[str, Any] | None:
        summary: dict[str, Any] = redis_eval(
            node,
            namespace,
            password,
            "keys = r.keys('phase1:jobs:processing:*')\n"
            "print(json.dumps({'done': r.scard('phase1:jobs:done'),"
            " 'queued': r.llen('phase1:jobs'),"
            " 'in_flight': sum(r.llen(k) for k in keys)}))",
        )
        return summary if summary["queued"] == 0 and summary["in_flight"] == 0 else None

    summary = wait_for("the queue to drain", settled, timeout=BLOCK_SECONDS + 90, interval=2)
    missing = redis_eval(
        node,
        namespace,
        password,
        f"done = r.smembers('phase1:jobs:done')\n"
        f"print(json.dumps([n for n in range({produced}) if f'rot-{{n}}' not in done]))",
    )

    # What the file-reading apps and the producer saw over all three rotations.
    seen = attempts(node, namespace, password)
    file_logs = logs(node, namespace, "consumers-file") + logs(node, namespace, "producer")
    slow = [float(x) for x in re.findall(r"slow push ([0-9.]+) s", file_logs)]
    longest_push = float(re.findall(r"longest push ([0-9.]+) s", file_logs)[-1])
    file_pods = pods(node, namespace, "consumers-file")
    gaps = {
        pod: longest_gap([t for _, c, t in seen if c == pod], window_start, window_end)
        for pod in file_pods
    }
    all_gap = longest_gap([t for _, _, t in seen], window_start, window_end)
    now_redis = json.loads(
        node.kubectl("get", "pod", "-n", namespace, REDIS_POD, "-o", "json").stdout
    )
    reasons = [e["reason"] for e in events(node, namespace, f"involvedObject.name={QUEUE_NAME}")]
    ready_states = {ready for _, ready, _ in watch.seen}
    phases = [phase for _, _, phase in watch.seen]

    print()
    print(
        "rotation | Redis UID kept | operator saw the change | env apps processing again "
        "| env rollout done | old password removed (status) | refused to a new connection "
        "| grace | env apps' failed commands"
    )
    for f in figures:
        print(
            f"{f['run']} | {f['redis_uid_kept']} | +{f['operator_saw']:.1f} s "
            f"| +{f['env_processing']:.1f} s | +{f['env_rolled_out']:.1f} s "
            f"| +{f['operator_removed']:.1f} s | +{f['old_refused']:.1f} s | {GRACE} s "
            f"| {f['env_failures']}"
        )
    print(
        f"over {ROTATIONS} rotations: failed commands in file-reading apps "
        f"{failures(file_logs)}; longest consumption gap per file-reading pod "
        f"{max(gaps.values()):.2f} s (all consumers {all_gap:.2f} s); longest push "
        f"{longest_push:.3f} s (slow pushes over 0.25 s: {len(slow)}); file-reading pods "
        f"restarted {sum(restarts(p) for p in file_pods.values())}, replaced "
        f"{len(set(steady['consumers-file']) ^ set(file_pods))}; Redis pod UID kept "
        f"{now_redis['metadata']['uid'] == redis_uid}, restarts {restarts(now_redis)}; "
        f"Ready seen {sorted(ready_states)}; phases {sorted({p for p in phases if p})}; "
        f"jobs {summary['done']} of {produced} done, lost {len(missing)}"
    )

    assert now_redis["metadata"]["uid"] == redis_uid and restarts(now_redis) == 0
    assert failures(file_logs) == 0, file_logs[-3000:]
    assert max(gaps.values()) <= 2.0, gaps
    assert longest_push <= 2.0
    assert set(file_pods) == set(steady["consumers-file"])
    assert all(restarts(p) == 0 for p in file_pods.values())
    assert set(pods(node, namespace, "producer")) == set(steady["producer"])
    assert ready_states == {"True"}, watch.seen
    assert "Overlap" in phases and "Complete" in phases
    assert reasons.count("RotationStarted") == ROTATIONS, reasons
    assert reasons.count("RotationCompleted") == ROTATIONS, reasons
    assert missing == [], missing[:20]
    for f in figures:
        assert f["redis_uid_kept"]
        assert f["env_processing"] < GRACE, f
        assert f["env_failures"] == 0, f
        assert f["old_refused"] >= GRACE, f
        assert f["old_refused"] >= f["env_rolled_out"], f


def _rotate(node: Node, namespace: str, run: int) -> dict[str, Any]:
    """Change the auth Secret once and measure until the old password is refused."""
    old = auth_password(node, namespace)
    new = f"rotation-{run}-" + secrets.token_hex(16)
    env_before = set(pods(node, namespace, "consumers-env"))
    redis_uid = pod_field(node, namespace, REDIS_POD, "{.metadata.uid}")
    refused: dict[str, Any] = {}
    watcher = watch_old_password(node, namespace, old, 3 * GRACE + 60, refused)
    time.sleep(1)
    changed_at = time.time()
    node.kubectl(
        "patch",
        "secret",
        "-n",
        namespace,
        AUTH_SECRET,
        "--type=merge",
        "-p",
        json.dumps({"stringData": {"password": new}}),
    )

    def rolled_out() -> bool:
        current = pods(node, namespace, "consumers-env")
        ready = [
            p
            for p in current.values()
            if all(c.get("ready") for c in p["status"].get("containerStatuses", []))
            and p["status"].get("containerStatuses")
        ]
        return not (set(current) & env_before) and len(ready) == 2

    wait_for("the envFrom consumers to roll out", rolled_out, timeout=3 * GRACE, interval=0.5)
    env_rolled_out = time.time() - changed_at
    env_pods = set(pods(node, namespace, "consumers-env"))
    watcher.join(timeout=3 * GRACE + 90)
    assert "rejected_at" in refused, refused
    seen = attempts(node, namespace, new)
    first_env = min(
        (t for _, consumer, t in seen if consumer in env_pods and t >= changed_at), default=None
    )
    assert first_env is not None, "the restarted envFrom consumers never processed a job"
    env_logs = "".join(
        node.kubectl("logs", "-n", namespace, pod, check=False).stdout for pod in env_pods
    )
    figures = {
        "run": run,
        "redis_uid_kept": redis_uid == pod_field(node, namespace, REDIS_POD, "{.metadata.uid}"),
        "env_processing": first_env - changed_at,
        "env_rolled_out": env_rolled_out,
        "old_refused": refused["rejected_at"] - changed_at,
        "env_failures": failures(env_logs),
    }
    wait_for(
        f"rotation {run} to complete in status",
        lambda: rotation_status(node, namespace).get("phase") == "Complete",
        timeout=60,
    )
    done = rotation_status(node, namespace)
    figures["operator_saw"] = _unix(done["startedAt"]) - changed_at
    figures["operator_removed"] = _unix(done["completedAt"]) - changed_at
    return figures


def rotation_status(node: Node, namespace: str) -> dict[str, Any]:
    raw = jsonpath(
        node, "redisqueue", "-n", namespace, QUEUE_NAME, "-o", "jsonpath={.status.rotation}"
    )
    return dict(json.loads(raw)) if raw else {}


def _unix(rfc3339: str) -> float:
    return datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()
