"""The client library's Prometheus families, prefixed ``redisqueue_client_``, base units.

Long on purpose: each family is defined for the scrape-time collectors and, next to it, as
prometheus-client's own metric for multiprocess mode, so the two cannot drift apart.

Every family carries a ``client`` label (the name an app gives its client). Pool gauges
and command counts are read at scrape time by collectors, so the command path only pays
for a few additions. Only these families appear in an app's ``/metrics``: the operator's
own families live in :mod:`redisqueue.controller.metrics` and are registered only when
the operator imports them.

Under prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set, as for
gunicorn), collectors see only the process that is scraped, so the same families are
prometheus-client's own metrics instead, which it writes to that directory for
``MultiProcessCollector``: counters and histograms as they are, and the pool gauges with
``multiprocess_mode="livesum"`` (the sum over the processes alive), set whenever a pool
hands out or takes back a connection.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

#: From an immediate hand-out (no wait) to the longest pool timeout the contract allows.
POOL_WAIT_BUCKETS = (
    0.0001,
    0.0005,
    0.001,
    0.005,
    0.01,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

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

#: prometheus-client's multiprocess mode, decided as it decides it: by these variables, read
#: when it is imported.
MULTIPROCESS = any(
    name in os.environ for name in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")
)

# --- help texts: one per family, whichever way it is exposed -----------------------------
_CONNECTIONS_HELP = "Connections of the client's pool, by state (in_use or idle)."
_MAX_HELP = "The pool's hard cap on open connections (REDIS_POOL_MAX_CONNECTIONS)."
_WAITERS_HELP = "Callers waiting for a free connection of the client's pool, in arrival order."
_COMMANDS_HELP = "Redis commands sent by the client library, by command and outcome (ok or error)."
_DURATION_HELP = "Time from sending a command to its reply, retries included."
_WAIT_HELP = "Time a caller waited for a connection from the client's pool (0 when one was free)."

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
POOL_EXHAUSTED = Counter(
    "redisqueue_client_pool_exhausted",
    "Callers that gave up after waiting REDIS_POOL_TIMEOUT_SECONDS for a connection "
    "(PoolExhaustedError); not a lost connection.",
    ["client"],
)
CLIENT_RECONNECTS = Counter(
    "redisqueue_client_reconnects",
    "Connections opened after the client had seen its Redis become unreachable.",
    ["client"],
)


# --- collectors read at scrape time -----------------------------------------------------
@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    in_use: int
    idle: int
    max: int
    waiting: int = 0


class PoolCollector(Collector):
    """Connections in use / idle / max for every live client, read from its pool."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._sources: dict[int, tuple[str, weakref.ref[object], Callable[[object], PoolSnapshot]]]
        self._sources = {}

    def track(self, name: str, owner: object, read: Callable[[object], PoolSnapshot]) -> None:
        key = id(owner)
        with self._lock:
            self._sources[key] = (name, weakref.ref(owner, lambda _r: self._forget(key)), read)
        self.refresh(name)

    def _forget(self, key: int) -> None:
        with self._lock:
            source = self._sources.pop(key, None)
        if source is not None:
            self.refresh(source[0])

    def _totals(self, only: str | None = None) -> dict[str, list[int]]:
        totals: dict[str, list[int]] = {}
        with self._lock:
            sources = list(self._sources.values())
        for name, ref, read in sources:
            owner = ref()
            if owner is None or (only is not None and name != only):
                continue
            snap = read(owner)
            acc = totals.setdefault(name, [0, 0, 0, 0])
            acc[0] += snap.in_use
            acc[1] += snap.idle
            acc[2] += snap.max
            acc[3] += snap.waiting
        return totals

    def refresh(self, name: str) -> None:
        """In multiprocess mode, write this process's pool state of client ``name``."""
        if _POOL_GAUGES is None:
            return
        with self._refresh_lock:
            in_use, idle, maximum, waiting = self._totals(name).get(name, [0, 0, 0, 0])
            connections, cap, waiters = _POOL_GAUGES
            connections.labels(name, "in_use").set(in_use)
            connections.labels(name, "idle").set(idle)
            cap.labels(name).set(maximum)
            waiters.labels(name).set(waiting)

    def collect(self) -> Iterator[Metric]:
        conns = GaugeMetricFamily(
            "redisqueue_client_connections", _CONNECTIONS_HELP, labels=["client", "state"]
        )
        cap = GaugeMetricFamily("redisqueue_client_connections_max", _MAX_HELP, labels=["client"])
        waiters = GaugeMetricFamily(
            "redisqueue_client_pool_waiters", _WAITERS_HELP, labels=["client"]
        )
        for name, (in_use, idle, maximum, waiting) in sorted(self._totals().items()):
            conns.add_metric([name, "in_use"], in_use)
            conns.add_metric([name, "idle"], idle)
            cap.add_metric([name], maximum)
            waiters.add_metric([name], waiting)
        yield conns
        yield cap
        yield waiters

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


def _buckets(
    bounds: Sequence[float], counts: Sequence[float], total: float
) -> list[tuple[str, float]]:
    """Cumulative histogram buckets from per-bucket ``counts``, ending with ``+Inf``."""
    cumulative = 0.0
    buckets = []
    for bound, count in zip(bounds, counts, strict=False):
        cumulative += count
        buckets.append((repr(float(bound)), cumulative))
    buckets.append(("+Inf", total))
    return buckets


S = TypeVar("S")


class _PerClient(Collector, Generic[S]):
    """A collector over the stats each client name keeps in this process."""

    def __init__(self, make: Callable[[str], S]) -> None:
        self._lock = threading.Lock()
        self._stats: dict[str, S] = {}
        self._make = make

    def _local(self, client: str) -> S:
        with self._lock:
            return self._stats.setdefault(client, self._make(client))

    def _by_client(self) -> list[tuple[str, S]]:
        with self._lock:
            return sorted(self._stats.items(), key=lambda item: item[0])

    def describe(self) -> Iterable[Metric]:
        return list(self.collect())


class CommandCollector(_PerClient[CommandStats]):
    """Commands by outcome and their latency histogram, for every client."""

    def __init__(self) -> None:
        super().__init__(CommandStats)

    def stats_for(self, client: str) -> CommandObserver:
        """The (shared) stats of every client created with this name."""
        if _COMMAND_FAMILIES is not None:
            return _MultiprocessCommands(client, *_COMMAND_FAMILIES)
        return self._local(client)

    def collect(self) -> Iterator[Metric]:
        commands = CounterMetricFamily(
            "redisqueue_client_commands", _COMMANDS_HELP, labels=["client", "command", "outcome"]
        )
        duration = HistogramMetricFamily(
            "redisqueue_client_command_duration_seconds",
            _DURATION_HELP,
            labels=["client", "command"],
        )
        for client, stats in self._by_client():
            for command, record in sorted(stats.snapshot()):
                if record[0]:
                    commands.add_metric([client, command, "ok"], record[0])
                if record[1]:
                    commands.add_metric([client, command, "error"], record[1])
                buckets = _buckets(LATENCY_BUCKETS, record[3:], record[0] + record[1])
                duration.add_metric([client, command], buckets, record[2])
        yield commands
        yield duration


class WaitStats:
    """One client's waits for a pooled connection, as a histogram kept in plain numbers
    (every command waits, if only for nothing, so this is on the hot path)."""

    __slots__ = ("_lock", "record")

    # record layout: [sum of seconds, count per bucket ..., count above the last]
    def __init__(self) -> None:
        self.record = [0.0] * (len(POOL_WAIT_BUCKETS) + 2)
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        slot = bisect.bisect_left(POOL_WAIT_BUCKETS, seconds) + 1
        with self._lock:
            self.record[0] += seconds
            self.record[slot] += 1

    def snapshot(self) -> list[float]:
        with self._lock:
            return list(self.record)


class WaitCollector(_PerClient[WaitStats]):
    """``redisqueue_client_pool_wait_seconds``: how long callers waited for a connection."""

    def __init__(self) -> None:
        super().__init__(lambda _client: WaitStats())

    def stats_for(self, client: str) -> WaitObserver:
        if _WAIT_FAMILY is not None:
            return _WAIT_FAMILY.labels(client)
        return self._local(client)

    def collect(self) -> Iterator[Metric]:
        waits = HistogramMetricFamily(
            "redisqueue_client_pool_wait_seconds", _WAIT_HELP, labels=["client"]
        )
        for client, stats in self._by_client():
            record = stats.snapshot()
            buckets = _buckets(POOL_WAIT_BUCKETS, record[1:], sum(record[1:]))
            waits.add_metric([client], buckets, record[0])
        yield waits


class CommandObserver(Protocol):
    """Where a client records each command: its name, seconds and outcome."""

    def observe(self, command: str, seconds: float, ok: bool) -> None: ...


class WaitObserver(Protocol):
    """Where a client records each wait for a pooled connection."""

    def observe(self, amount: float) -> None: ...


class _MultiprocessCommands:
    """One client's commands, recorded in prometheus-client's own (multiprocess) metrics."""

    __slots__ = ("_children", "_client", "_counter", "_histogram")

    def __init__(self, client: str, counter: Counter, histogram: Histogram) -> None:
        self._client = client
        self._counter = counter
        self._histogram = histogram
        self._children: dict[tuple[str, bool], tuple[Any, Any]] = {}

    def observe(self, command: str, seconds: float, ok: bool) -> None:
        children = self._children.get((command, ok))
        if children is None:
            outcome = "ok" if ok else "error"
            children = (
                self._counter.labels(self._client, command, outcome),
                self._histogram.labels(self._client, command),
            )
            self._children[(command, ok)] = children
        children[0].inc()
        children[1].observe(seconds)


_POOL_GAUGES: tuple[Gauge, Gauge, Gauge] | None = None
_COMMAND_FAMILIES: tuple[Counter, Histogram] | None = None
_WAIT_FAMILY: Histogram | None = None
if MULTIPROCESS:
    _POOL_GAUGES = (
        Gauge(
            "redisqueue_client_connections",
            _CONNECTIONS_HELP,
            ["client", "state"],
            multiprocess_mode="livesum",
        ),
        Gauge(
            "redisqueue_client_connections_max",
            _MAX_HELP,
            ["client"],
            multiprocess_mode="livesum",
        ),
        Gauge(
            "redisqueue_client_pool_waiters", _WAITERS_HELP, ["client"], multiprocess_mode="livesum"
        ),
    )
    _COMMAND_FAMILIES = (
        Counter("redisqueue_client_commands", _COMMANDS_HELP, ["client", "command", "outcome"]),
        Histogram(
            "redisqueue_client_command_duration_seconds",
            _DURATION_HELP,
            ["client", "command"],
            buckets=LATENCY_BUCKETS,
        ),
    )
    _WAIT_FAMILY = Histogram(
        "redisqueue_client_pool_wait_seconds", _WAIT_HELP, ["client"], buckets=POOL_WAIT_BUCKETS
    )

POOLS = PoolCollector()
COMMANDS = CommandCollector()
POOL_WAITS = WaitCollector()


def _register(registry: CollectorRegistry) -> None:
    for collector in (POOLS, COMMANDS, POOL_WAITS):
        with contextlib.suppress(ValueError):  # already registered
            registry.register(collector)


if not MULTIPROCESS:
    # In multiprocess mode the families above are prometheus-client's own metrics, which
    # MultiProcessCollector reads from PROMETHEUS_MULTIPROC_DIR.
    _register(REGISTRY)
