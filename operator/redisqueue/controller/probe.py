"""Real PINGs against one Redis, coalesced, classified, and recorded as metrics.

A :class:`Probe` owns a small dedicated connection pool (never the app's) with short
timeouts and no backoff: a health answer must say the truth now, not after retries. A
stale pooled connection (Redis restarted) is replaced once, immediately, so a restart that
has already finished is not reported as an outage.

``check()`` guarantees that the answer comes from a PING *sent after the call began*:
callers never get the result of a PING that was already on the wire when they arrived;
callers that arrive together share the next one. A burst of health requests therefore
costs one PING per turn of the event loop, at most ``MAX_IN_FLIGHT`` at a time.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Iterator, Mapping, Sequence

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, ConnectionError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from redisqueue.contract import ConnectionContract, tls_options

from . import metrics
from .bounded import ReplyRejected, limit_replies
from .logs import about
from .probe_result import ProbeOutcome, ProbeResult, QueueKey, format_latency

log = logging.getLogger("redisqueue.probe")

#: PINGs outstanding at once per Redis; later callers share the one sent after them.
MAX_IN_FLIGHT = 2


def classify(exc: BaseException, endpoint: str, timeout: float) -> tuple[ProbeOutcome, str]:
    """Turn an exception into (reason, user-facing message) that never holds a secret."""
    if isinstance(exc, AuthenticationError) or (
        isinstance(exc, ResponseError) and str(exc).startswith(("NOAUTH", "WRONGPASS"))
    ):
        return "auth_failed", (
            f"redis at {endpoint}: authentication failed (the password or ACL user was "
            "rejected; check the auth Secret)"
        )
    if isinstance(exc, ReplyRejected):
        # Its message names the limit or the fault, never the reply's bytes.
        return "error", f"redis at {endpoint}: reply refused ({exc})"
    if isinstance(exc, TimeoutError | RedisTimeoutError | asyncio.TimeoutError):
        return "timeout", f"redis at {endpoint}: no answer within {timeout:g}s"
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, ssl.SSLError) or isinstance(cause, ssl.SSLError) or "SSL" in str(exc):
        detail = _ssl_detail(cause if isinstance(cause, ssl.SSLError) else exc)
        return "tls_error", f"redis at {endpoint}: TLS handshake failed ({detail})"
    if isinstance(exc, ConnectionError | OSError):
        return "unreachable", f"redis at {endpoint}: cannot connect ({_os_detail(exc)})"
    return "error", f"redis at {endpoint}: {type(exc).__name__}"


def undetailed_failure(endpoint: str, timeout: float) -> str:
    """The one failure message of an endpoint the operator's policy does not name."""
    return (
        f"redis at {endpoint}: no PONG within {timeout:g}s (cannot connect, no answer, or not "
        "a Redis; the cause is reported only for hosts in the operator's allowed hosts)"
    )


def _ssl_detail(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or getattr(exc, "verify_message", None)
    if isinstance(reason, str) and reason:
        return reason.replace("_", " ").lower()
    text = str(exc)
    if "certificate verify failed" in text:
        return "certificate verify failed"
    if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
        return "the server does not speak TLS"
    return "see the server's TLS settings"


def _os_detail(exc: BaseException) -> str:
    text = str(exc)
    for known in (
        "Connection refused",
        "Name or service not known",
        "No route to host",
        "Connection reset by peer",
        "Temporary failure in name resolution",
        "Connection closed by server",
    ):
        if known.lower() in text.lower():
            return known.lower()
    return "connection error"


def _info_int(info: object, field: str) -> int:
    """A numeric INFO field; 0 when INFO is not a mapping or the field is not a number."""
    value = info.get(field, 0) if isinstance(info, dict) else 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return int(value)


class Probe:
    """PINGs one Redis; shares in-flight PINGs between concurrent callers."""

    def __init__(
        self,
        contract: ConnectionContract,
        *,
        namespace: str,
        name: str,
        timeout: float = 2.0,
        queues: Sequence[QueueKey] = (),
        detailed_errors: bool = True,
    ) -> None:
        self.namespace = namespace
        # False for endpoints the operator's policy does not name: their failures all read the
        # same, so status does not tell a closed port from a filtered one (see .policy).
        self.detailed_errors = detailed_errors
        self.name = name
        self.contract = contract
        self.endpoint = contract.endpoint
        self.timeout = timeout
        self.queues = tuple(queues)
        self.last: ProbeResult | None = None
        self._down_since: float | None = None
        self._pending: asyncio.Future[ProbeResult] | None = None  # the next PING's waiters
        self._launch_scheduled = False
        self._in_flight = 0
        ssl_kwargs = tls_options(
            contract.tls, contract.tls_ca_cert, contract.tls_insecure_skip_verify
        )
        if ssl_kwargs:
            ssl_kwargs["ssl"] = True
        self._client = redis.asyncio.Redis(
            host=contract.host,
            port=contract.port,
            db=contract.db,
            username=contract.username,
            password=contract.password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
            max_connections=MAX_IN_FLIGHT + 2,
            protocol=2,  # the bounded reader below parses RESP2
            **ssl_kwargs,
        )
        limit_replies(self._client)  # a tenant's endpoint decides nothing about our memory
        self._up = metrics.UP.labels(namespace, name)
        self._latency = metrics.PING_DURATION.labels(namespace, name)
        self._last_probe = metrics.LAST_PROBE.labels(namespace, name)

    # -- the coalesced check ------------------------------------------------------------
    async def check(self) -> ProbeResult:
        """A result from a PING sent after this call began (shared with concurrent calls).

        Callers that arrive before the next PING is sent share it; it is sent on the next
        turn of the event loop, so everyone who arrived in the same turn shares one PING.
        At most ``MAX_IN_FLIGHT`` PINGs are outstanding; beyond that the shared PING is sent
        as soon as one of them returns.
        """
        if self._pending is None:
            self._pending = asyncio.get_running_loop().create_future()
            if self._in_flight < MAX_IN_FLIGHT and not self._launch_scheduled:
                self._launch_scheduled = True
                asyncio.get_running_loop().call_soon(self._launch)
        return await asyncio.shield(self._pending)

    def _launch(self) -> None:
        self._launch_scheduled = False
        waiting, self._pending = self._pending, None
        if waiting is None or waiting.done():
            return
        self._in_flight += 1
        task = asyncio.create_task(self._ping(), name=f"ping {self.namespace}/{self.name}")

        def deliver(done: asyncio.Task[ProbeResult]) -> None:
            self._in_flight -= 1
            if not waiting.done():
                if done.cancelled():
                    waiting.cancel()
                elif (exc := done.exception()) is not None:
                    waiting.set_exception(exc)
                else:
                    waiting.set_result(done.result())
            if self._pending is not None and not self._launch_scheduled:
                self._launch()

        task.add_done_callback(deliver)

    async def _ping(self) -> ProbeResult:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                pong = await self._client.ping()
            if pong is not True:
                raise ReplyRejected("the answer to PING was not PONG")
        except Exception as exc:  # any fault is this RedisQueue's status
            reason, message = classify(exc, self.endpoint, self.timeout)
            if not self.detailed_errors and not (
                reason == "auth_failed" and self.contract.password
            ):
                reason, message = "unreachable", undetailed_failure(self.endpoint, self.timeout)
            result = ProbeResult(False, self.endpoint, reason, error=message)
            await self._reset_connections()
        else:
            elapsed = time.perf_counter() - started
            result = ProbeResult(True, self.endpoint, "ok", latency_seconds=elapsed)
            self._latency.observe(elapsed)
        self._record(result)
        return result

    async def _reset_connections(self) -> None:
        # Drop pooled sockets after a failure so the next PING dials afresh.
        try:
            await self._client.connection_pool.disconnect()
        except Exception:  # noqa: S110 - the pool is rebuilt on the next PING anyway
            pass

    def _record(self, result: ProbeResult) -> None:
        previous, self.last = self.last, result
        self._up.set(1 if result.ok else 0)
        self._last_probe.set(result.at)
        metrics.PROBES.labels(self.namespace, self.name, result.reason).inc()
        if result.ok:
            if previous is None:
                log.info(
                    "%s/%s: redis at %s connected (%s)",
                    self.namespace,
                    self.name,
                    self.endpoint,
                    format_latency(result.latency_seconds or 0.0),
                    extra=about(self.namespace, self.name),
                )
            elif not previous.ok:
                down = time.monotonic() - (self._down_since or time.monotonic())
                log.info(
                    "%s/%s: redis at %s recovered after %.1f s",
                    self.namespace,
                    self.name,
                    self.endpoint,
                    down,
                    extra=about(self.namespace, self.name),
                )
            self._down_since = None
        elif previous is None or previous.ok or previous.reason != result.reason:
            if self._down_since is None:
                self._down_since = time.monotonic()
            lost = "connection lost: " if previous is not None and previous.ok else ""
            log.warning(
                "%s/%s: %s%s",
                self.namespace,
                self.name,
                lost,
                result.error or result.reason,
                extra=about(self.namespace, self.name),
            )

    # -- details for scheduled probes ------------------------------------------------------
    async def collect_details(self) -> None:
        """INFO and queue depths into metrics; errors leave the last values alone."""
        try:
            async with asyncio.timeout(self.timeout):
                info = await self._client.info()
                metrics.SERVER_INFO.update(
                    self.namespace,
                    self.name,
                    metrics.ServerInfo(
                        connected_clients=_info_int(info, "connected_clients"),
                        commands_processed=_info_int(info, "total_commands_processed"),
                        used_memory_bytes=_info_int(info, "used_memory"),
                    ),
                )
                for queue in self.queues:
                    await self._queue_depth(queue)
        except Exception as exc:  # a hostile reply must not end the probe loop
            log.debug(
                "%s/%s: details of redis at %s not collected (%s)",
                self.namespace,
                self.name,
                self.endpoint,
                type(exc).__name__,
                extra=about(self.namespace, self.name),
            )

    async def _queue_depth(self, queue: QueueKey) -> None:
        if queue.type == "list":
            depth = await self._client.llen(queue.key)
        else:
            depth = await self._client.xlen(queue.key)
            if queue.group:
                try:
                    pending = await self._client.xpending(queue.key, queue.group)
                except ResponseError:  # no such group (yet)
                    pending = {"pending": 0}
                metrics.QUEUE_PENDING.labels(self.namespace, self.name, queue.key, queue.group).set(
                    int(pending.get("pending", 0))
                )
        metrics.QUEUE_DEPTH.labels(self.namespace, self.name, queue.key, queue.type).set(depth)

    async def close(self) -> None:
        await self._client.aclose()


class ProbeRegistry:
    """The Redis endpoints the server answers for, keyed by (namespace, name)."""

    def __init__(self) -> None:
        self._probes: dict[tuple[str, str], Probe] = {}
        self._labels: dict[tuple[str, str], dict[str, str]] = {}

    def set_labels(self, namespace: str, name: str, labels: Mapping[str, str]) -> None:
        """The RedisQueue's labels, for health answers scoped by a label selector."""
        self._labels[(namespace, name)] = dict(labels)

    def labels_of(self, namespace: str, name: str) -> Mapping[str, str]:
        return self._labels.get((namespace, name), {})

    def add(self, probe: Probe) -> Probe | None:
        """Register ``probe``; returns the probe it replaced (the caller closes it)."""
        key = (probe.namespace, probe.name)
        previous = self._probes.get(key)
        self._probes[key] = probe
        return previous

    def remove(self, namespace: str, name: str) -> Probe | None:
        self._labels.pop((namespace, name), None)
        return self._probes.pop((namespace, name), None)

    def get(self, namespace: str, name: str) -> Probe | None:
        return self._probes.get((namespace, name))

    def snapshot(self) -> list[Probe]:
        """The probes now registered (a copy: registration may change while callers await)."""
        return list(self._probes.values())

    def __iter__(self) -> Iterator[Probe]:
        return iter(self.snapshot())

    def __len__(self) -> int:
        return len(self._probes)
