"""The operator's Prometheus families: one series set per RedisQueue, base units.

Every family carries ``namespace`` and ``name`` of the RedisQueue (reconcile families carry
only the outcome). The Redis server's own ``INFO`` view is read at scrape time by a
collector, named after redis_exporter's meanings where they overlap. Registered when the
operator imports this module, never by the client library.
"""

from __future__ import annotations

import contextlib
import os
import platform
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import prometheus_client
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from redisqueue import __version__
from redisqueue.metrics import LATENCY_BUCKETS

#: Set to "true" to get the ``*_created`` series (counter and histogram creation times)
#: that prometheus-client adds by default; they double the series count and dashboards do
#: not use them.
CREATED_SERIES_ENV = "REDISQUEUE_METRICS_CREATED_SERIES"

BUILD_INFO = Info(
    "redisqueue_build",
    "Version of the redisqueue operator and of the Python running it (always 1).",
)
BUILD_INFO.info({"version": __version__, "python_version": platform.python_version()})


def configure_created_series(environ: Mapping[str, str] = os.environ) -> bool:
    """Drop the ``*_created`` series unless the environment asks for them; True if kept."""
    wanted = environ.get(CREATED_SERIES_ENV, "").strip().lower() in {"1", "true", "yes"}
    if wanted:
        prometheus_client.enable_created_metrics()  # type: ignore[no-untyped-call]
    else:
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    return wanted


# --- operator / probe side ------------------------------------------------------------
UP = Gauge(
    "redisqueue_up",
    "1 when the last PING of this RedisQueue's Redis succeeded, else 0.",
    ["namespace", "name"],
)
PING_DURATION = Histogram(
    "redisqueue_ping_duration_seconds",
    "Round trip of the health PING, successful probes only.",
    ["namespace", "name"],
    buckets=LATENCY_BUCKETS,
)
PROBES = Counter(
    "redisqueue_probes",
    "Health probes sent, by outcome (ok, unreachable, auth_failed, timeout, tls_error, "
    "refused, error).",
    ["namespace", "name", "outcome"],
)
LAST_PROBE = Gauge(
    "redisqueue_last_probe_timestamp_seconds",
    "Unix time of the last completed probe.",
    ["namespace", "name"],
)
QUEUE_DEPTH = Gauge(
    "redisqueue_queue_depth",
    "Entries in a configured queue key (LLEN for lists, XLEN for streams).",
    ["namespace", "name", "key", "type"],
)
QUEUE_PENDING = Gauge(
    "redisqueue_queue_pending",
    "Delivered but unacknowledged stream entries of a consumer group (XPENDING).",
    ["namespace", "name", "key", "group"],
)
RECONCILES = Counter(
    "redisqueue_reconcile",
    "Reconciliations of RedisQueue resources, by outcome (success, retry, error).",
    ["outcome"],
)
RECONCILE_DURATION = Histogram(
    "redisqueue_reconcile_duration_seconds",
    "Time spent in one reconciliation, by outcome.",
    ["outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

LEADER = Gauge(
    "redisqueue_operator_leader",
    "1 while this replica holds the leader Lease and may write, else 0 (a standby, or "
    "without leader election 1).",
)
LEADER_TRANSITIONS = Counter(
    "redisqueue_operator_leader_transitions",
    "Times this replica became the leader or stopped being it.",
)


@dataclass(frozen=True, slots=True)
class ServerInfo:
    connected_clients: int
    commands_processed: int
    used_memory_bytes: int


class ServerInfoCollector(Collector):
    """The Redis server's own view from INFO, named after redis_exporter's meanings."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._info: dict[tuple[str, str], ServerInfo] = {}

    def update(self, namespace: str, name: str, info: ServerInfo) -> None:
        with self._lock:
            self._info[(namespace, name)] = info

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._info.pop((namespace, name), None)

    def collect(self) -> Iterator[Metric]:
        clients = GaugeMetricFamily(
            "redisqueue_redis_connected_clients",
            "Client connections the Redis server reports (INFO connected_clients).",
            labels=["namespace", "name"],
        )
        commands = CounterMetricFamily(
            "redisqueue_redis_commands_processed",
            "Commands the Redis server has processed (INFO total_commands_processed).",
            labels=["namespace", "name"],
        )
        memory = GaugeMetricFamily(
            "redisqueue_redis_memory_used_bytes",
            "Memory the Redis server has allocated (INFO used_memory).",
            labels=["namespace", "name"],
        )
        with self._lock:
            items = sorted(self._info.items())
        for (namespace, name), info in items:
            clients.add_metric([namespace, name], info.connected_clients)
            commands.add_metric([namespace, name], info.commands_processed)
            memory.add_metric([namespace, name], info.used_memory_bytes)
        yield clients
        yield commands
        yield memory

    def describe(self) -> Iterable[Metric]:
        return list(self.collect())


SERVER_INFO = ServerInfoCollector()
with contextlib.suppress(ValueError):  # already registered
    REGISTRY.register(SERVER_INFO)


def forget_queue(namespace: str, name: str) -> None:
    """Drop every series of a deleted RedisQueue so dashboards do not show ghosts."""
    for metric in (UP, LAST_PROBE, PING_DURATION):
        with contextlib.suppress(KeyError):
            metric.remove(namespace, name)
    for family in (PROBES, QUEUE_DEPTH, QUEUE_PENDING):
        for labels in list(_label_sets(family)):
            if labels[:2] == (namespace, name):
                family.remove(*labels)
    SERVER_INFO.forget(namespace, name)


def forget_queue_keys(namespace: str, name: str, keep: Iterable[Any]) -> None:
    """Drop the depth series of queue keys a RedisQueue no longer configures (``keep``: the
    configured ones, anything with ``key``, ``type`` and ``group``), so editing
    ``spec.queues`` never leaves series behind."""
    wanted = {(q.key, q.type) for q in keep}
    groups = {(q.key, q.group) for q in keep if q.group}
    for labels in list(_label_sets(QUEUE_DEPTH)):
        if labels[:2] == (namespace, name) and (labels[2], labels[3]) not in wanted:
            QUEUE_DEPTH.remove(*labels)
    for labels in list(_label_sets(QUEUE_PENDING)):
        if labels[:2] == (namespace, name) and (labels[2], labels[3]) not in groups:
            QUEUE_PENDING.remove(*labels)


def _label_sets(metric: Counter | Gauge) -> list[tuple[str, ...]]:
    # prometheus-client keeps children in a private dict; reading its keys is the only way
    # to enumerate label sets without tracking them twice.
    return list(getattr(metric, "_metrics", {}).keys())
