"""The operator's Prometheus families: one series set per RedisQueue, base units.

Every family carries ``namespace`` and ``name`` of the RedisQueue (reconcile families carry
only the outcome). The Redis server's own ``INFO`` view is read at scrape time by a
collector, named after redis_exporter's meanings where they overlap. Registered when the
operator imports this module, never by the client library.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import os
import platform
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import prometheus_client
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Info
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
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


@dataclass(slots=True)
class _Series:
    """One RedisQueue's series, as plain numbers (a few hundred bytes, not a metric child
    with a lock per histogram bucket)."""

    up: int = 0
    last_probe: float = 0.0
    probes: dict[str, int] = field(default_factory=dict)
    #: PING latencies: a count per bucket of LATENCY_BUCKETS (+Inf last), and their sum.
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0
    latency_count: int = 0
    depths: dict[tuple[str, str], float] = field(default_factory=dict)
    pending: dict[tuple[str, str], float] = field(default_factory=dict)
    info: ServerInfo | None = None


class QueueSeries(Collector):
    """Every RedisQueue's probe series (up, PING latency, probes by outcome, last probe,
    queue depths and pending entries, and the server's own INFO view), kept compact and
    turned into metric families at scrape time.

    A thousand RedisQueues as prometheus-client children cost about 6 KiB each (a lock and
    a value object per histogram bucket); here about half a KiB. Updates come from the
    event loop, scrapes from a worker thread: one lock guards both.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], _Series] = {}

    def _of(self, namespace: str, name: str) -> _Series:
        series = self._series.get((namespace, name))
        if series is None:
            series = self._series[(namespace, name)] = _Series()
        return series

    def probed(
        self, namespace: str, name: str, outcome: str, at: float, latency: float | None
    ) -> None:
        """One completed probe: its outcome, when, and (when it answered) its round trip."""
        with self._lock:
            series = self._of(namespace, name)
            series.up = 1 if outcome == "ok" else 0
            series.last_probe = at
            series.probes[outcome] = series.probes.get(outcome, 0) + 1
            if latency is not None:
                series.latency[bisect.bisect_left(LATENCY_BUCKETS, latency)] += 1
                series.latency_sum += latency
                series.latency_count += 1

    def depth(self, namespace: str, name: str, key: str, kind: str, value: float) -> None:
        with self._lock:
            self._of(namespace, name).depths[(key, kind)] = value

    def pending(self, namespace: str, name: str, key: str, group: str, value: float) -> None:
        with self._lock:
            self._of(namespace, name).pending[(key, group)] = value

    def server(self, namespace: str, name: str, info: ServerInfo) -> None:
        with self._lock:
            self._of(namespace, name).info = info

    def forget(self, namespace: str, name: str) -> None:
        """Drop every series of a deleted RedisQueue so dashboards do not show ghosts."""
        with self._lock:
            self._series.pop((namespace, name), None)

    def forget_keys(self, namespace: str, name: str, keep: Iterable[Any]) -> None:
        """Drop the depth series of queue keys a RedisQueue no longer configures (``keep``:
        the configured ones, anything with ``key``, ``type`` and ``group``)."""
        wanted = {(q.key, q.type) for q in keep}
        groups = {(q.key, q.group) for q in keep if q.group}
        with self._lock:
            series = self._series.get((namespace, name))
            if series is not None:
                series.depths = {k: v for k, v in series.depths.items() if k in wanted}
                series.pending = {k: v for k, v in series.pending.items() if k in groups}

    def __len__(self) -> int:
        return len(self._series)

    def collect(self) -> Iterator[Metric]:
        labels = ["namespace", "name"]
        up = GaugeMetricFamily(
            "redisqueue_up",
            "1 when the last PING of this RedisQueue's Redis succeeded, else 0.",
            labels=labels,
        )
        latency = HistogramMetricFamily(
            "redisqueue_ping_duration_seconds",
            "Round trip of the health PING, successful probes only.",
            labels=labels,
        )
        probes = CounterMetricFamily(
            "redisqueue_probes",
            "Health probes sent, by outcome (ok, unreachable, auth_failed, timeout, "
            "tls_error, refused, error).",
            labels=[*labels, "outcome"],
        )
        last = GaugeMetricFamily(
            "redisqueue_last_probe_timestamp_seconds",
            "Unix time of the last completed probe.",
            labels=labels,
        )
        depth = GaugeMetricFamily(
            "redisqueue_queue_depth",
            "Entries in a configured queue key (LLEN for lists, XLEN for streams).",
            labels=[*labels, "key", "type"],
        )
        pending = GaugeMetricFamily(
            "redisqueue_queue_pending",
            "Delivered but unacknowledged stream entries of a consumer group (XPENDING).",
            labels=[*labels, "key", "group"],
        )
        clients = GaugeMetricFamily(
            "redisqueue_redis_connected_clients",
            "Client connections the Redis server reports (INFO connected_clients).",
            labels=labels,
        )
        commands = CounterMetricFamily(
            "redisqueue_redis_commands_processed",
            "Commands the Redis server has processed (INFO total_commands_processed).",
            labels=labels,
        )
        memory = GaugeMetricFamily(
            "redisqueue_redis_memory_used_bytes",
            "Memory the Redis server has allocated (INFO used_memory).",
            labels=labels,
        )
        bounds = [*(str(b) for b in LATENCY_BUCKETS), "+Inf"]
        with self._lock:
            snapshot = [
                (
                    key,
                    s.up,
                    s.last_probe,
                    dict(s.probes),
                    list(s.latency),
                    s.latency_sum,
                    dict(s.depths),
                    dict(s.pending),
                    s.info,
                )
                for key, s in sorted(self._series.items())
            ]
        for (ns, nm), is_up, at, counts, buckets, total, depths, pend, info in snapshot:
            if counts:
                up.add_metric([ns, nm], is_up)
                last.add_metric([ns, nm], at)
                cumulative = list(itertools.accumulate(buckets))
                latency.add_metric([ns, nm], list(zip(bounds, cumulative, strict=True)), total)
            for outcome, count in sorted(counts.items()):
                probes.add_metric([ns, nm, outcome], count)
            for (key, kind), value in sorted(depths.items()):
                depth.add_metric([ns, nm, key, kind], value)
            for (key, group), value in sorted(pend.items()):
                pending.add_metric([ns, nm, key, group], value)
            if info is not None:
                clients.add_metric([ns, nm], info.connected_clients)
                commands.add_metric([ns, nm], info.commands_processed)
                memory.add_metric([ns, nm], info.used_memory_bytes)
        yield from (up, latency, probes, last, depth, pending, clients, commands, memory)

    def describe(self) -> Iterable[Metric]:
        return list(self.collect())


SERIES = QueueSeries()
with contextlib.suppress(ValueError):  # already registered
    REGISTRY.register(SERIES)


def forget_queue(namespace: str, name: str) -> None:
    """Drop every series of a deleted RedisQueue so dashboards do not show ghosts."""
    SERIES.forget(namespace, name)


def forget_queue_keys(namespace: str, name: str, keep: Iterable[Any]) -> None:
    """Drop the depth series of queue keys a RedisQueue no longer configures."""
    SERIES.forget_keys(namespace, name, keep)
