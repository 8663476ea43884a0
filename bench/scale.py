"""N RedisQueues on one Redis: convergence, memory, idle API load, connections, restart, churn.

Starts the local control plane (tests/controlplane), a redis-server and the operator with
the install path's ServiceAccount, then, in one run:

1. the baselines, with no operator running: the time to create N RedisQueues (raw
   API-server creates of the same objects); and the floor, the writes any controller must
   make for them, by a plain client as the operator's ServiceAccount (the same RBAC check,
   admission policies and audit record as the operator's writes). Two variants show where
   time goes: the same writes as the cluster admin, who skips those three, and as the
   ServiceAccount learning of each RedisQueue from a watch, as a controller must. And the
   kopf floor (bench/kopf_floor.py): the same writes made by the barest kopf operator,
   which shows what kopf's handling of each watch event adds to them;
2. N RedisQueues created with the operator running (external mode, one Redis, each
   injecting into its own app Secret): time until all are Ready with the Secret injected,
   as a ratio of each baseline, and p50/p95 create-to-Ready;
3. operator RSS; the operator's API requests at rest, by verb and resource, from the API
   server's audit log over a window at least twice the operator's longest periodic
   interval (its watches restart every WATCH_TIMEOUT_SECONDS); Redis connections of the
   operator (``CLIENT LIST``);
4. restart with N existing: time until every RedisQueue is probed again, and whether any
   Event was posted twice;
5. churn: delete all N and look for leftovers (contract keys, labels, finalizers, metric
   series, Redis connections) and for errors in the operator's log;
6. ``--cycles`` more rounds of creating and deleting all N: resident memory after each, so
   that memory kept per RedisQueue shows as reused rather than accumulated;
7. ``--rounds`` in all of the floor, the kopf floor and the operator's creates, one after
   the other (the first round is 1 and 2): the machine drifts between two phases by more
   than the difference between them, so the ratios to judge by are medians over rounds.

Run: ``python bench/scale.py --count 100`` (and ``--count 1000``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis
from kubernetes_asyncio import client, config, watch

import local_cluster
from floor_writes import write_rest
from harness.kube_controlplane import ControlPlane
from harness.operator_harness import OperatorProcess, rq_path, service_account_kubeconfig
from harness.redis_server import RedisServer
from local_cluster import NAMESPACE
from redisqueue.contract import ConnectionContract
from redisqueue.controller.api.kube import (
    TOKEN_MAX_AGE_SECONDS,
    WATCH_TIMEOUT_SECONDS,
    Kube,
)
from redisqueue.controller.api.paths import object_path
from redisqueue.controller.api.watch import follow
from redisqueue.controller.resource.admission import DEFAULT_INTERVAL_SECONDS

GROUP, VERSION, PLURAL = "redisqueue.dev", "v1alpha1", "redisqueues"
API = f"{GROUP}/{VERSION}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds of the API server, etcd, this process and (once started) the operator over
    a phase."""

    def __init__(self, plane: ControlPlane) -> None:
        self.pids = {
            name: pid for name, pid in plane.pids.items() if name in ("kube-apiserver", "etcd")
        }
        # This process: the creates, the watchers that time Ready, and the floors' writes.
        self.pids["bench"] = os.getpid()
        self.phase: dict[str, int] = {}
        self.start_values: dict[str, float] = {}
        self.started = 0.0

    def start(self, operator_pid: int | None = None, name: str = "operator") -> None:
        """Start a phase; ``operator_pid`` meters that process too (as ``name``), for this
        phase only (it may be a process that is gone by the next one)."""
        self.phase = dict(self.pids)
        if operator_pid is not None:
            self.phase[name] = operator_pid
        self.start_values = {name: cpu_seconds(pid) for name, pid in self.phase.items()}
        self.started = time.perf_counter()

    def stop(self) -> dict[str, float]:
        used = {
            name: cpu_seconds(pid) - self.start_values[name] for name, pid in self.phase.items()
        }
        used["wall"] = time.perf_counter() - self.started
        return used


class ApiServerProfile:
    """A CPU profile of the API server over the first ``seconds`` of a phase (Go pprof, read
    with ``go tool pprof``), when ``directory`` is given. With 1000 RedisQueues each phase
    lasts longer than the default 10 s, so the profiles of two phases compare like for like."""

    def __init__(self, plane: ControlPlane, directory: str | None, seconds: int = 10) -> None:
        self.plane, self.seconds = plane, seconds
        self.directory = Path(directory) if directory else None
        self.running: tuple[str, subprocess.Popen[bytes]] | None = None

    async def start(self, name: str) -> None:
        if self.directory is None:
            return
        await self.wait()  # the API server makes one CPU profile at a time
        self.directory.mkdir(parents=True, exist_ok=True)
        assert self.plane.bin_dir is not None
        command = [
            str(self.plane.bin_dir / "kubectl"),
            f"--kubeconfig={self.plane.kubeconfig}",
            "get",
            "--raw",
            f"/debug/pprof/profile?seconds={self.seconds}",
        ]
        with (self.directory / f"{name}.pprof").open("wb") as out:
            # Runs beside the phase; only its exit is awaited (:meth:`wait`).
            proc = subprocess.Popen(command, stdout=out, env=self.plane.env)  # noqa: ASYNC220
        self.running = (name, proc)

    async def wait(self) -> None:
        if self.running is None:
            return
        (name, proc), self.running = self.running, None
        if await asyncio.to_thread(proc.wait, self.seconds + 60) != 0:
            raise RuntimeError(f"the API server's CPU profile of {name} failed (see above)")


def request_counts(plane: ControlPlane) -> Counter[str]:
    """Requests the API server has answered so far, by "VERB resource[/subresource]"; WATCH
    (long-running) excluded."""
    text = plane.kubectl("get", "--raw", "/metrics").stdout
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{") and 'verb="WATCH"' not in line:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
            what = labels.get("resource", "") + (
                f"/{labels['subresource']}" if labels.get("subresource") else ""
            )
            counts[f"{labels.get('verb', '?')} {what}"] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def per_object(before: Counter[str], after: Counter[str], count: int) -> dict[str, float]:
    """Requests per object between two readings, largest first (the readings excluded)."""
    diff = after - before
    return {k: v / count for k, v in diff.most_common() if v >= count / 10}


#: The operator's periodic activities at rest and their periods (seconds): watches are
#: started again when the API server ends them; the mounted token is re-read (no request);
#: the admission policies are read again (GETs).
PERIODS: dict[str, float] = {
    "watch restart": float(WATCH_TIMEOUT_SECONDS),
    "token re-read": TOKEN_MAX_AGE_SECONDS,
    "probe interval": 10.0,
    "admission policy check": DEFAULT_INTERVAL_SECONDS,
}
IDLE_WINDOW_SECONDS = 2 * max(PERIODS.values())
#: CPU seconds over one second under which a freshly started operator counts as settled.
SETTLED_CPU_SECONDS = 0.1


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def operator_requests_at_rest(plane: ControlPlane, seconds: float) -> Counter[str]:
    """The operator's requests (by "verb resource[/subresource]") the API server received
    during ``seconds`` of rest, from its audit log (each request once)."""
    since = utc_now()
    await asyncio.sleep(seconds)
    until = utc_now()
    seen: dict[str, str] = {}
    for event in plane.audited("redisqueue-operator"):
        if since <= event["requestReceivedTimestamp"] < until:
            ref = event.get("objectRef") or {}
            what = ref.get("resource", "") + (
                f"/{ref['subresource']}" if ref.get("subresource") else ""
            )
            seen[event["auditID"]] = f"{event['verb']} {what}"
    return Counter(seen.values())


def operator_connections(server: RedisServer) -> int:
    """Client connections on the Redis server other than this one."""
    r = redis.Redis(host=server.host, port=server.port, password=server.password)
    try:
        return len([c for c in r.client_list() if c.get("cmd") != "client|list"])
    finally:
        r.close()


def metric_samples(operator: OperatorProcess, family: str) -> list[tuple[str, float]]:
    """(labels, value) of every sample of ``family`` the operator serves now."""
    status, text = operator.http("/metrics")
    if status != 200:
        return []
    pattern = re.compile(rf"^{family}\{{([^}}]*)\}} (\S+)$")
    return [(m[1], float(m[2])) for line in text.splitlines() if (m := pattern.match(line))]


def metric_series(operator: OperatorProcess, family: str, namespace: str) -> dict[str, float]:
    return {
        labels: value
        for labels, value in metric_samples(operator, family)
        if f'namespace="{namespace}"' in labels
    }


def gc_collections(operator: OperatorProcess) -> dict[str, float]:
    """The operator's cyclic garbage collections so far, by generation."""
    samples = metric_samples(operator, "python_gc_collections_total")
    found = ((re.search(r'generation="(\d+)"', labels), value) for labels, value in samples)
    return {m[1]: value for m, value in found if m}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def rq_body(namespace: str, name: str, server: RedisServer, inject: str) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "RedisQueue",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            **local_cluster.external_spec(server, inject),
            "healthCheck": {"intervalSeconds": 10},
        },
    }


async def create_all(
    kube: Kube, namespace: str, count: int, server: RedisServer, concurrency: int
) -> tuple[float, dict[str, float]]:
    """Create ``count`` RedisQueues, ``concurrency`` at a time; (seconds, name -> created at)."""
    created: dict[str, float] = {}
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await kube.create(rq_body(namespace, f"q{i}", server, f"app-{i}"))
            created[f"q{i}"] = time.perf_counter()

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return time.perf_counter() - started, created


def floor_contract(server: RedisServer) -> ConnectionContract:
    """The contract the floors write into each app Secret: the one Redis, its password."""
    return ConnectionContract(host=server.host, port=server.port, password=server.password)


async def write_floor(
    kube: Kube, writer: Kube, namespace: str, count: int, server: RedisServer, concurrency: int
) -> float:
    """The floor: ``kube`` creates each RedisQueue and ``writer`` makes the writes any
    controller must make for it (:func:`write_rest`), knowing what was created, nothing else
    in between. Seconds for all of them."""
    gate = asyncio.Semaphore(concurrency)
    contract = floor_contract(server)

    async def one(i: int) -> None:
        async with gate:
            created = await kube.create(rq_body(namespace, f"q{i}", server, f"app-{i}"))
            await write_rest(writer, namespace, created, contract)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return time.perf_counter() - started


async def write_floor_watching(
    kube: Kube, writer: Kube, namespace: str, count: int, server: RedisServer, concurrency: int
) -> float:
    """The floor's writes made as a controller must make them: ``kube`` creates, and
    ``writer`` learns of each new RedisQueue from a watch of RedisQueues (whole objects, as
    JSON) and makes the same writes (:func:`write_rest`), ``concurrency`` at a time. No
    framework, no checks, no probe, no Secret watch. Seconds from the first create until the
    last RedisQueue's writes are done."""
    new: asyncio.Queue[Mapping[str, Any]] = asyncio.Queue()
    seen: set[str] = set()
    done: list[float] = []
    all_done = asyncio.Event()
    contract = floor_contract(server)

    async def handle(kind: str, obj: Mapping[str, Any]) -> None:
        name = obj["metadata"].get("name", "")
        if kind == "ADDED" and name not in seen:
            seen.add(name)
            new.put_nowait(obj)

    async def write_each() -> None:
        while True:
            await write_rest(writer, namespace, await new.get(), contract)
            done.append(time.perf_counter())
            if len(done) == count:
                all_done.set()

    # The operator's own list+watch loop (api/watch.py), as its standby follows RedisQueues.
    tasks = [asyncio.create_task(follow(writer, rq_path(namespace), handle))]
    tasks += [asyncio.create_task(write_each()) for _ in range(concurrency)]
    finished = asyncio.create_task(all_done.wait())
    try:
        started = time.perf_counter()
        await create_all(kube, namespace, count, server, concurrency)
        await asyncio.wait([finished, *tasks], return_when=asyncio.FIRST_COMPLETED)
        if not all_done.is_set():  # a writer failed (follow never ends on its own)
            await asyncio.gather(*tasks)
        return max(done) - started
    finally:
        for task in [finished, *tasks]:
            task.cancel()
        await asyncio.gather(finished, *tasks, return_exceptions=True)


class KopfFloor:
    """bench/kopf_floor.py as a process: the floor's writes for RedisQueues in ``namespace``,
    made by the barest kopf operator, as the operator's ServiceAccount (``kubeconfig``)."""

    def __init__(
        self, kubeconfig: Path, workdir: Path, namespace: str, server: RedisServer
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.server = server
        self.log_path = workdir / f"kopf-floor-{namespace}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "KUBE"))}
        env.update(
            KUBECONFIG=str(self.kubeconfig),
            KOPF_FLOOR_NAMESPACE=self.namespace,
            KOPF_FLOOR_REDIS=f"{self.server.host}:{self.server.port}",
            KOPF_FLOOR_PASSWORD=self.server.password or "",
        )
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("kopf_floor.py"))],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def problems(self) -> int:
        """Lines of its log that tell of an error or a retried handler."""
        return sum(
            1
            for line in self.log_path.read_text(errors="replace").splitlines()
            if " ERROR " in line or "Traceback" in line or "Will retry" in line
        )


async def delete_all(plane: ControlPlane, kube: Kube, namespace: str) -> None:
    """Delete every RedisQueue in ``namespace`` (dropping finalizers no one will remove)."""
    for obj in await kube.list(rq_path(namespace)):
        if obj["metadata"].get("finalizers"):
            path = rq_path(namespace) + "/" + obj["metadata"]["name"]
            await kube.merge_patch(path, {"metadata": {"finalizers": None}})
    # kubectl's --wait watches the objects one after another (minutes for a thousand).
    plane.kubectl("delete", PLURAL, "--all", "-n", namespace, "--wait=false", timeout=600)
    while await kube.list(rq_path(namespace)):  # noqa: ASYNC110 - polling the API server
        await asyncio.sleep(0.5)


async def wait_all_ready(kube: Kube, namespace: str, count: int, limit: float) -> None:
    """Poll until ``count`` RedisQueues in ``namespace`` show Ready=True."""
    started = time.perf_counter()
    while True:
        ready = sum(1 for rq in await kube.list(rq_path(namespace)) if local_cluster.is_ready(rq))
        if ready == count:
            return
        if time.perf_counter() - started > limit:
            raise RuntimeError(f"{ready} of {count} RedisQueues Ready after {limit} s")
        await asyncio.sleep(1)


class Watcher:
    """Records when each RedisQueue first shows Ready=True and its app Secret REDIS_URL."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.ready: dict[str, float] = {}
        self.injected: dict[str, float] = {}
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Watcher:
        self.tasks = [asyncio.create_task(self._rqs()), asyncio.create_task(self._secrets())]
        await asyncio.sleep(1)  # both watches established before anything is created
        return self

    async def __aexit__(self, *_: object) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def done_at(self, name: str) -> float | None:
        ready, injected = self.ready.get(name), self.injected.get(name.replace("q", "app-", 1))
        return None if ready is None or injected is None else max(ready, injected)

    async def _rqs(self) -> None:
        while True:
            try:
                await self._watch_rqs()
            except (client.ApiException, OSError, TimeoutError, ValueError):
                await asyncio.sleep(0.5)  # e.g. "too large resource version": list again

    async def _secrets(self) -> None:
        while True:
            try:
                await self._watch_secrets()
            except (client.ApiException, OSError, TimeoutError, ValueError):
                await asyncio.sleep(0.5)

    async def _watch_rqs(self) -> None:
        custom = client.CustomObjectsApi(self.api)
        while True:
            async with watch.Watch() as w:
                async for event in w.stream(
                    custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    timeout_seconds=3600,
                ):
                    obj = event["object"]
                    name = obj["metadata"]["name"]
                    if name not in self.ready and local_cluster.is_ready(obj):
                        self.ready[name] = time.perf_counter()

    async def _watch_secrets(self) -> None:
        core = client.CoreV1Api(self.api)
        while True:
            async with watch.Watch() as w:
                async for event in w.stream(
                    core.list_namespaced_secret, self.namespace, timeout_seconds=3600
                ):
                    obj = event["object"]
                    name = obj.metadata.name
                    if name not in self.injected and "REDIS_URL" in (obj.data or {}):
                        self.injected[name] = time.perf_counter()


async def wait_until(check: Any, limit: float, what: str, interval: float = 0.1) -> float:
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > limit:
            raise RuntimeError(f"timed out after {limit} s waiting for {what}")
        await asyncio.sleep(interval)
    return time.perf_counter() - started


async def settled(pid: int, limit: float = 60.0) -> float:
    """Wait until the process ``pid`` (a freshly started operator) has finished its start:
    its initial lists and watches read, it uses under a tenth of a core over a second.
    Seconds waited. Every round's creates then meet an operator that runs, as a user's do."""
    started = time.perf_counter()
    used = cpu_seconds(pid)
    while True:
        await asyncio.sleep(1.0)
        now = cpu_seconds(pid)
        if now - used < SETTLED_CPU_SECONDS:
            return time.perf_counter() - started
        if time.perf_counter() - started > limit:
            raise RuntimeError(f"the operator was still busy {limit} s after its start")
        used = now


async def time_to_ready(
    kube: Kube,
    watcher: Watcher,
    namespace: str,
    count: int,
    server: RedisServer,
    args: argparse.Namespace,
) -> tuple[float, list[float]]:
    """Create ``count`` RedisQueues in ``namespace`` while the operator runs: seconds from the
    first create until all are Ready with their app Secret injected (as ``watcher`` saw
    them), and each one's create-to-Ready."""
    started = time.perf_counter()
    _, created = await create_all(kube, namespace, count, server, args.concurrency)
    await wait_until(
        lambda: all(watcher.done_at(name) for name in created),
        limit=args.timeout,
        what=f"{count} RedisQueues Ready",
    )
    finished = max(watcher.done_at(name) or 0.0 for name in created)
    return finished - started, [(watcher.done_at(name) or 0.0) - at for name, at in created.items()]


async def count_events(kube: Kube, namespace: str) -> tuple[int, int]:
    """(RedisQueue events, distinct (object, reason, message) among them)."""
    events = [
        e
        for e in await kube.list(object_path("v1", "Event", namespace))
        if e["involvedObject"].get("kind") == "RedisQueue"
    ]
    return len(events), len(
        {(e["involvedObject"]["name"], e["reason"], e["message"]) for e in events}
    )


async def run(  # noqa: PLR0915 - one scenario, read top to bottom
    args: argparse.Namespace, plane: ControlPlane, workdir: Path
) -> dict[str, Any]:
    n = args.count
    figures: dict[str, Any] = {"count": n, "interval_wait": args.interval_wait}
    server = local_cluster.start_redis(workdir)
    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=str(plane.kubeconfig), client_configuration=configuration
    )
    api = client.ApiClient(configuration)
    kube = Kube.from_kubeconfig(plane.kubeconfig)
    operator_config = service_account_kubeconfig(plane, workdir)
    writer = Kube.from_kubeconfig(operator_config)
    operator = OperatorProcess(operator_config, workdir, log_level="INFO")
    try:
        for namespace in ("raw", NAMESPACE):
            await local_cluster.create_namespace(plane, kube, server, namespace)

        # 1. Baselines: the control plane alone; raw creates of the same objects; and the
        # writes any controller must make for them (the floor), by a plain client.
        meter = CpuMeter(plane)
        apiserver_profile = ApiServerProfile(
            plane, args.apiserver_profile, args.apiserver_profile_seconds
        )
        meter.start()
        raw_seconds, _ = await create_all(kube, "raw", n, server, args.concurrency)
        figures["raw_seconds"] = raw_seconds
        figures["raw_cpu"] = meter.stop()
        await delete_all(plane, kube, "raw")

        # The floors: the RedisQueues' writes that any controller must make, by a plain
        # client. As the operator's ServiceAccount, so that they pass the same RBAC check,
        # admission policies and audit record as the operator's own; as the cluster admin,
        # who skips all three; and as that ServiceAccount learning of each RedisQueue from a
        # watch. Each under the same watchers as the operator's run.
        async def floor(key: str, write: Any, as_whom: Kube, namespace: str) -> float:
            await local_cluster.create_namespace(plane, kube, server, namespace)
            async with Watcher(api, namespace):
                requests_before = request_counts(plane)
                await apiserver_profile.start(key)
                meter.start()  # no operator runs
                seconds: float = await write(kube, as_whom, namespace, n, server, args.concurrency)
                figures[f"{key}_cpu"] = meter.stop()
                figures[f"{key}_requests"] = per_object(requests_before, request_counts(plane), n)
            await delete_all(plane, kube, namespace)
            return seconds

        floors = (
            ("floor", write_floor, writer),
            ("admin_floor", write_floor, kube),
            ("watching_floor", write_floor_watching, writer),
        )
        for key, write, as_whom in floors:
            figures[f"{key}_seconds"] = await floor(key, write, as_whom, key.replace("_", "-"))

        # The kopf floor: the floor's writes by the barest kopf operator, timed as the
        # operator's creates are (from the first create until the watchers saw all Ready).
        figures["kopf_floor_problems"] = 0

        async def kopf_floor(key: str, namespace: str) -> float:
            await local_cluster.create_namespace(plane, kube, server, namespace)
            process = KopfFloor(operator_config, workdir, namespace, server)
            process.start()
            try:
                await settled(process.pid)
                async with Watcher(api, namespace) as watcher:
                    requests_before = request_counts(plane)
                    await apiserver_profile.start(key)
                    meter.start(process.pid, name="kopf floor")
                    seconds, _ = await time_to_ready(kube, watcher, namespace, n, server, args)
                    figures[f"{key}_cpu"] = meter.stop()
                    figures[f"{key}_requests"] = per_object(
                        requests_before, request_counts(plane), n
                    )
            finally:
                process.stop()
            figures["kopf_floor_problems"] += process.problems()
            await delete_all(plane, kube, namespace)
            return seconds

        figures["kopf_floor_seconds"] = await kopf_floor("kopf_floor", "kopf-floor")

        # 2. The same creates with the operator running.
        operator.start()
        figures["settled_seconds"] = [await settled(operator.proc.pid)]  # type: ignore[union-attr]
        figures["rss_empty_mib"] = local_cluster.rss_mib(operator.proc.pid)  # type: ignore[union-attr]
        profiler = None
        if args.profile:
            profiler = subprocess.Popen(  # noqa: ASYNC220 - py-spy runs alongside
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "--pid",
                    str(operator.proc.pid),  # type: ignore[union-attr]
                    "--format",
                    "raw",
                    "--output",
                    args.profile,
                    "--rate",
                    "50",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            await asyncio.sleep(1)
        async with Watcher(api, NAMESPACE) as watcher:
            requests_before = request_counts(plane)
            collections_before = gc_collections(operator)
            await apiserver_profile.start("operator")
            meter.start(operator.proc.pid)  # type: ignore[union-attr]
            figures["ready_seconds"], latencies = await time_to_ready(
                kube, watcher, NAMESPACE, n, server, args
            )
            figures["operator_cpu"] = meter.stop()
            figures["operator_gc"] = {
                generation: count - collections_before.get(generation, 0.0)
                for generation, count in gc_collections(operator).items()
            }
            figures["operator_requests"] = per_object(requests_before, request_counts(plane), n)
        figures["p50"] = statistics.median(latencies)
        figures["p95"] = percentile(latencies, 0.95)
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=30)
        await apiserver_profile.wait()

        # 3. Steady state.
        await asyncio.sleep(5)
        figures["idle_seconds"] = args.idle_seconds
        figures["idle_requests"] = await operator_requests_at_rest(plane, args.idle_seconds)
        # At rest the API connections of the creation burst have been closed (keep-alive):
        # each held a TLS read buffer of 256 KiB.
        figures["rss_rest_mib"] = local_cluster.rss_mib(operator.proc.pid)  # type: ignore[union-attr]
        figures["rss_mib"] = local_cluster.rss_mib(operator.proc.pid)  # type: ignore[union-attr]
        figures["rss_peak_mib"] = local_cluster.rss_mib(operator.proc.pid, "VmHWM")  # type: ignore[union-attr]
        figures["redis_connections"] = operator_connections(server)
        events_before = await count_events(kube, NAMESPACE)

        # 4. Restart with N existing.
        operator.stop()
        requests_before = request_counts(plane)
        restarted = time.time()
        started = time.perf_counter()
        operator.start()

        def all_probed() -> bool:
            stamps = metric_series(operator, "redisqueue_last_probe_timestamp_seconds", NAMESPACE)
            return len(stamps) == n and all(v >= restarted for v in stamps.values())

        await wait_until(
            all_probed, limit=args.timeout, what="all probed after restart", interval=1
        )
        figures["restart_seconds"] = time.perf_counter() - started
        await asyncio.sleep(args.interval_wait)
        figures["restart_requests"] = per_object(requests_before, request_counts(plane), n)
        events_after = await count_events(kube, NAMESPACE)
        figures["events_before"], figures["events_after"] = events_before, events_after
        figures["rss_after_restart_mib"] = local_cluster.rss_mib(operator.proc.pid)  # type: ignore[union-attr]

        # 5. Churn: delete them all.
        started = time.perf_counter()
        plane.kubectl("delete", PLURAL, "--all", "-n", NAMESPACE, "--wait=false", timeout=600)

        async def gone() -> int:
            return len(await kube.list(rq_path(NAMESPACE)))

        while await gone():
            if time.perf_counter() - started > args.timeout:
                raise RuntimeError("RedisQueues not deleted in time")
            await asyncio.sleep(0.5)
        figures["delete_seconds"] = time.perf_counter() - started
        await asyncio.sleep(3)
        secrets = await kube.list(object_path("v1", "Secret", NAMESPACE))
        figures["left_secrets_with_contract"] = sum(
            1 for s in secrets if "REDIS_URL" in (s.get("data") or {})
        )
        figures["left_labelled_secrets"] = sum(
            1
            for s in secrets
            if any(k.startswith("redisqueue.dev") for k in (s["metadata"].get("labels") or {}))
        )
        families = (
            "redisqueue_up",
            "redisqueue_probes_total",
            "redisqueue_last_probe_timestamp_seconds",
            "redisqueue_redis_connected_clients",
        )
        figures["left_metric_series"] = sum(
            len(metric_series(operator, family, NAMESPACE)) for family in families
        )
        figures["left_redis_connections"] = operator_connections(server)
        figures["rss_after_delete_mib"] = local_cluster.rss_mib(operator.proc.pid)  # type: ignore[union-attr]

        # 6. More churn: memory per RedisQueue is reused, not accumulated.
        figures["rss_cycles_mib"] = []
        for _ in range(args.cycles):
            await create_all(kube, NAMESPACE, n, server, args.concurrency)
            await wait_all_ready(kube, NAMESPACE, n, args.timeout)
            with_n = local_cluster.rss_mib(operator.proc.pid)  # type: ignore[union-attr]
            await delete_all(plane, kube, NAMESPACE)
            await asyncio.sleep(3)
            figures["rss_cycles_mib"].append(
                (with_n, local_cluster.rss_mib(operator.proc.pid))  # type: ignore[union-attr]
            )
        figures["left_after_cycles"] = sum(
            1
            for s in await kube.list(object_path("v1", "Secret", NAMESPACE))
            if "REDIS_URL" in (s.get("data") or {})
        ) + len(metric_series(operator, "redisqueue_up", NAMESPACE))
        # 7. More rounds of the floor and the operator's creates, one after the other: the
        # machine drifts by more than the difference, so the verdict is the median ratio.
        figures["rounds"] = [
            (figures["floor_seconds"], figures["kopf_floor_seconds"], figures["ready_seconds"])
        ]
        for r in range(2, args.rounds + 1):
            operator.stop()
            floor_seconds = await floor(f"floor_{r}", write_floor, writer, f"floor-{r}")
            kopf_floor_seconds = await kopf_floor(f"kopf_floor_{r}", f"kopf-floor-{r}")
            operator.start()
            figures["settled_seconds"].append(await settled(operator.proc.pid))  # type: ignore[union-attr]
            namespace = f"{NAMESPACE}-{r}"
            await local_cluster.create_namespace(plane, kube, server, namespace)
            async with Watcher(api, namespace) as watcher:
                await apiserver_profile.start(f"operator_{r}")
                ready_seconds, _ = await time_to_ready(kube, watcher, namespace, n, server, args)
            figures["rounds"].append((floor_seconds, kopf_floor_seconds, ready_seconds))
            await delete_all(plane, kube, namespace)
        await apiserver_profile.wait()
        log = operator.logs()
        figures["escalate_lines"] = log.count("Will escalate")
        figures["error_lines"] = sum(
            1 for line in log.splitlines() if " ERROR " in line or "Traceback" in line
        )
        figures["warning_lines"] = sum(1 for line in log.splitlines() if " WARNING " in line)
        figures["log"] = log
    finally:
        operator.stop()
        server.stop()
        await api.close()
        await kube.close()
        await writer.close()
    return figures


def report(f: dict[str, Any]) -> None:
    n = f["count"]
    print(f"RedisQueues: {n} (external mode, one Redis, one app Secret each)")
    print(
        f"all Ready + injected: {f['ready_seconds']:.1f} s; raw creates of the same objects: "
        f"{f['raw_seconds']:.1f} s; ratio raw/operator {f['raw_seconds'] / f['ready_seconds']:.2f}x"
    )
    floors = (
        (
            "floor",
            "the same objects' necessary writes by a plain client as the operator's "
            "ServiceAccount: create, finalizer, app Secret, status, Event",
        ),
        (
            "admin_floor",
            "the same writes as the cluster admin: no RBAC check, admission policy or audit record",
        ),
        (
            "watching_floor",
            "the same writes as the ServiceAccount, learning of each RedisQueue from a watch",
        ),
    )
    for key, what in floors:
        seconds = f[f"{key}_seconds"]
        print(
            f"{key.replace('_', ' ')} ({what}): {seconds:.1f} s; "
            f"ratio {key.replace('_', ' ')}/operator {seconds / f['ready_seconds']:.2f}x"
        )
    rounds = f["rounds"]
    for label, pick, order in (
        (
            "floor / operator",
            lambda r: (r[0], r[2]),
            "floor, kopf floor, then the operator's creates",
        ),
        ("floor / kopf floor", lambda r: (r[0], r[1]), "the floor's writes, and under kopf"),
        (
            "kopf floor / operator",
            lambda r: (r[1], r[2]),
            "the same writes under kopf, and the operator",
        ),
    ):
        pairs = [pick(r) for r in rounds]
        ratios = [a / b for a, b in pairs]
        listed = "; ".join(
            f"{a:.1f} / {b:.1f} s = {ratio:.2f}x"
            for (a, b), ratio in zip(pairs, ratios, strict=True)
        )
        print(
            f"{label} over {len(rounds)} round(s) ({order}): "
            f"{listed}; median ratio {statistics.median(ratios):.2f}x"
        )
    print(
        f"kopf floor ({f['kopf_floor_seconds']:.1f} s in the first round): one kopf on.create "
        f"handler making the floor's writes; its log: {f['kopf_floor_problems']} errors or retries"
    )
    settled = ", ".join(f"{seconds:.0f}" for seconds in f["settled_seconds"])
    print(f"each round's operator had settled after its start (initial reads done): {settled} s")
    print(f"create-to-Ready: p50 {f['p50']:.2f} s, p95 {f['p95']:.2f} s")
    for label, key in (
        ("floor", "floor_requests"),
        ("admin floor", "admin_floor_requests"),
        ("kopf floor", "kopf_floor_requests"),
        ("operator", "operator_requests"),
    ):
        requests = f[key]
        listed = ", ".join(f"{what} {v:.2f}" for what, v in requests.items())
        print(
            f"API requests per RedisQueue during {label}: {sum(requests.values()):.2f} ({listed})"
        )
    cores = os.cpu_count() or 1
    for label, key in (
        ("raw creates", "raw_cpu"),
        ("floor", "floor_cpu"),
        ("admin floor", "admin_floor_cpu"),
        ("watching floor", "watching_floor_cpu"),
        ("kopf floor", "kopf_floor_cpu"),
        ("operator", "operator_cpu"),
    ):
        used = f[key]
        parts = ", ".join(
            f"{name} {used[name]:.1f} s"
            for name in ("kube-apiserver", "etcd", "kopf floor", "operator", "bench")
            if name in used
        )
        busy = sum(v for k, v in used.items() if k != "wall") / (used["wall"] * cores)
        print(
            f"CPU during {label} ({used['wall']:.1f} s wall, {cores} cores): {parts}; "
            f"these processes kept {busy:.0%} of the cores busy"
        )
    collections = ", ".join(f"{g} {c:.0f}" for g, c in sorted(f["operator_gc"].items()))
    print(f"operator's cyclic garbage collections while creating, by generation: {collections}")
    print(
        f"operator RSS: {f['rss_empty_mib']:.0f} MiB empty, {f['rss_mib']:.0f} MiB with {n} "
        f"(peak {f['rss_peak_mib']:.0f} MiB while creating them, "
        f"{f['rss_rest_mib']:.0f} MiB at rest after the idle window), "
        f"{f['rss_after_restart_mib']:.0f} MiB after restart, "
        f"{f['rss_after_delete_mib']:.0f} MiB after deleting all"
    )
    cycles = "; ".join(
        f"{a:.0f} MiB with {n}, {b:.0f} after delete" for a, b in f["rss_cycles_mib"]
    )
    if cycles:
        print(
            f"operator RSS over {len(f['rss_cycles_mib'])} more create+delete cycles: {cycles}; "
            f"contract Secrets and series left: {f['left_after_cycles']}"
        )
    idle, window = f["idle_requests"], f["idle_seconds"]
    listed = ", ".join(f"{what} {count}" for what, count in idle.most_common()) or "none"
    periods = ", ".join(f"{name} {seconds:g} s" for name, seconds in PERIODS.items())
    print(
        f"operator's API requests at rest over {window:.0f} s (periodic activities: {periods}): "
        f"{sum(idle.values())}, {sum(idle.values()) / window:.3f}/s ({listed})"
    )
    print(f"Redis connections of the operator (one endpoint): {f['redis_connections']}")
    eb, ea = f["events_before"], f["events_after"]
    listed = ", ".join(f"{what} {v:.2f}" for what, v in f["restart_requests"].items())
    print(
        f"API requests per RedisQueue from the restart until {f['interval_wait']:.0f} s after "
        f"all were probed again: "
        f"{sum(f['restart_requests'].values()):.2f} ({listed or 'none above 0.1'})"
    )
    print(
        f"restart with {n} existing: all probed again in {f['restart_seconds']:.1f} s; "
        f"events {eb[0]} before, {ea[0]} after ({ea[0] - eb[0]} new)"
    )
    print(
        f"delete all: {f['delete_seconds']:.1f} s; left behind: "
        f"{f['left_secrets_with_contract']} Secrets with contract keys, "
        f"{f['left_labelled_secrets']} labelled Secrets, {f['left_metric_series']} metric series, "
        f"{f['left_redis_connections']} Redis connections"
    )
    print(
        f"operator log: {f['error_lines']} errors, {f['warning_lines']} warnings, "
        f"{f['escalate_lines']} 'Will escalate'"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=20, help="creates in flight")
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=IDLE_WINDOW_SECONDS,
        help=f"rest window (default {IDLE_WINDOW_SECONDS:g}: twice the longest periodic interval)",
    )
    parser.add_argument("--interval-wait", type=float, default=12.0, help="after restart")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument(
        "--cycles", type=int, default=2, help="more create+delete cycles at the end (memory)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of the floor then the operator's creates; the ratio is their median",
    )
    parser.add_argument("--profile", help="py-spy the operator while creating (raw stacks)")
    parser.add_argument(
        "--apiserver-profile",
        metavar="DIR",
        help="CPU-profile the API server over the first seconds of each floor and of the "
        "operator's creates (DIR/<phase>.pprof, for go tool pprof)",
    )
    parser.add_argument(
        "--apiserver-profile-seconds", type=int, default=10, help="the profiles' window"
    )
    parser.add_argument("--keep-log", help="write the operator's log here")
    args = parser.parse_args()
    with local_cluster.control_plane() as (plane, workdir):
        figures = asyncio.run(run(args, plane, workdir))
    if args.keep_log:
        Path(args.keep_log).write_text(figures["log"])
    report(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
