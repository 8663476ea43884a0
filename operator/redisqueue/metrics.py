"""Prometheus metric families, all prefixed ``redisqueue_`` and in base units.

Client/pool side metrics carry a ``client`` label (the name an app gives its client);
operator side metrics carry ``namespace`` and ``name`` of the RedisQueue. Pool gauges and
the Redis server's own ``INFO`` view are read at scrape time by collectors, so the command
path only pays for one counter increment and one histogram observation.
"""

from __future__ import annotations

import bisect
import contextlib
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

#: Sub-millisecond resolution for loopback and in-VPC round trips, up to multi-second stalls.
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)

# --- client / pool side -------------------------------------------------------------
CLIENT_RETRIES = Counter(
    "redisqueue_client_retries",
    "Retries scheduled by the exponential backoff, for commands and for connects.",
    ["client"],
)
CLIENT_CONNECTS = Counter(
    "redisqueue_client_connections_opened",
    "Connections the client's pool opened (a new connection per pool slot and per reconnect).",
    ["client"],
)
CLIENT_RECONNECTS = Counter(
    "redisqueue_client_reconnects",
    "Connections opened after the client had seen its Redis become unreachable.",
    ["client"],
)

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
    "Health probes sent, by outcome (ok, unreachable, auth_failed, timeout, tls_error, error).",
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


# --- collectors read at scrape time -----------------------------------------------------
@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    in_use: int
    idle: int
    max: int


class PoolCollector(Collector):
    """Connections in use / idle / max for every live client, read from its pool."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: dict[int, tuple[str, weakref.ref[object], Callable[[object], PoolSnapshot]]]
        self._sources = {}

    def track(self, name: str, owner: object, read: Callable[[object], PoolSnapshot]) -> None:
        key = id(owner)
        with self._lock:
            self._sources[key] = (name, weakref.ref(owner, lambda _r: self._forget(key)), read)

    def _forget(self, key: int) -> None:
        with self._lock:
            self._sources.pop(key, None)

    def collect(self) -> Iterator[Metric]:
        conns = GaugeMetricFamily(
            "redisqueue_client_connections",
            "Connections of the client's pool, by state (in_use or idle).",
            labels=["client", "state"],
        )
        cap = GaugeMetricFamily(
            "redisqueue_client_connections_max",
            "The pool's hard cap on open connections (REDIS_POOL_MAX_CONNECTIONS).",
            labels=["client"],
        )
        totals: dict[str, list[int]] = {}
        with self._lock:
            sources = list(self._sources.values())
        for name, ref, read in sources:
            owner = ref()
            if owner is None:
                continue
            snap = read(owner)
            acc = totals.setdefault(name, [0, 0, 0])
            acc[0] += snap.in_use
            acc[1] += snap.idle
            acc[2] += snap.max
        for name, (in_use, idle, maximum) in sorted(totals.items()):
            conns.add_metric([name, "in_use"], in_use)
            conns.add_metric([name, "idle"], idle)
            cap.add_metric([name], maximum)
        yield conns
        yield cap

    def describe(self) -> Iterable[Metric]:
        return list(self.collect())


class CommandStats:
    """Per-command counts and latency histogram of one client, kept as plain numbers.

    This is the command path's only cost: a bisect and three additions under an
    uncontended lock. :class:`CommandCollector` turns the numbers into the
    ``redisqueue_client_commands_total`` counter and the
    ``redisqueue_client_command_duration_seconds`` histogram when Prometheus scrapes.
    """

    __slots__ = ("_lock", "client", "records")

    # record layout: [ok, error, sum of seconds, count per bucket ..., count above the last]
    def __init__(self, client: str) -> None:
        self.client = client
        self.records: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def observe(self, command: str, seconds: float, ok: bool) -> None:
        record = self.records.get(command)
        if record is None:
            record = self.records.setdefault(command, [0.0] * (len(LATENCY_BUCKETS) + 4))
        slot = bisect.bisect_left(LATENCY_BUCKETS, seconds) + 3
        with self._lock:
            record[0 if ok else 1] += 1
            record[2] += seconds
            record[slot] += 1

    def snapshot(self) -> list[tuple[str, list[float]]]:
        with self._lock:
            return [(command, list(record)) for command, record in self.records.items()]


class CommandCollector(Collector):
    """Commands by outcome and their latency histogram, for every client."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats: dict[str, CommandStats] = {}

    def stats_for(self, client: str) -> CommandStats:
        """The (shared) stats of every client created with this name."""
        with self._lock:
            return self._stats.setdefault(client, CommandStats(client))

    def collect(self) -> Iterator[Metric]:
        commands = CounterMetricFamily(
            "redisqueue_client_commands",
            "Redis commands sent by the client library, by command and outcome (ok or error).",
            labels=["client", "command", "outcome"],
        )
        duration = HistogramMetricFamily(
            "redisqueue_client_command_duration_seconds",
            "Time from sending a command to its reply, retries included.",
            labels=["client", "command"],
        )
        with self._lock:
            all_stats = sorted(self._stats.items())
        for client, stats in all_stats:
            for command, record in sorted(stats.snapshot()):
                if record[0]:
                    commands.add_metric([client, command, "ok"], record[0])
                if record[1]:
                    commands.add_metric([client, command, "error"], record[1])
                cumulative = 0.0
                buckets = []
                for bound, count in zip(LATENCY_BUCKETS, record[3:], strict=False):
                    cumulative += count
                    buckets.append((repr(float(bound)), cumulative))
                buckets.append(("+Inf", record[0] + record[1]))
                duration.add_metric([client, command], buckets, record[2])
        yield commands
        yield duration

    def describe(self) -> Iterable[Metric]:
        return list(self.collect())


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


POOLS = PoolCollector()
SERVER_INFO = ServerInfoCollector()
COMMANDS = CommandCollector()


def _register(registry: CollectorRegistry) -> None:
    for collector in (POOLS, SERVER_INFO, COMMANDS):
        with contextlib.suppress(ValueError):  # already registered
            registry.register(collector)


_register(REGISTRY)


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


def _label_sets(metric: Counter | Gauge) -> list[tuple[str, ...]]:
    # prometheus-client keeps children in a private dict; reading its keys is the only way
    # to enumerate label sets without tracking them twice.
    return list(getattr(metric, "_metrics", {}).keys())
