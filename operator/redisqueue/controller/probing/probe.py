"""Real PINGs against one Redis, coalesced, classified, and recorded as metrics.

A :class:`Probe` is one RedisQueue's view: its last result, its metric series and its log
lines. The connection it PINGs over is a small dedicated pool (never the app's) with short
timeouts, no backoff and bounded replies, shared by every RedisQueue on the same endpoint
and credential (:mod:`.endpoints`): a health answer must say the truth now, not after
retries. A stale pooled connection (Redis restarted) is replaced once, immediately, so a
restart that has already finished is not reported as an outage.

``check()`` guarantees that the answer comes from a PING *sent after the call began*:
callers never get the result of a PING that was already on the wire when they arrived;
callers that arrive together share the next one. A burst of health requests therefore
costs one PING per endpoint per turn of the event loop, one at a time.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Sequence

from redis.exceptions import AuthenticationError, ConnectionError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from redisqueue.contract import ConnectionContract

from ..telemetry import metrics
from ..telemetry.logs import about
from .bounded import ReplyRejected
from .dial import DialRefused
from .endpoints import EndpointPool, PingOutcome
from .result import ProbeOutcome, ProbeResult, QueueKey, format_latency

log = logging.getLogger("redisqueue.probe")


def classify(exc: BaseException, endpoint: str, timeout: float) -> tuple[ProbeOutcome, str]:
    """Turn an exception into (reason, user-facing message) that never holds a secret."""
    refused = exc if isinstance(exc, DialRefused) else exc.__cause__
    if isinstance(refused, DialRefused):
        # The name resolves into a network the policy refuses now: nothing was dialled.
        return "refused", f"redis at {endpoint}: not dialled: {refused}"
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


class Probe:
    """One RedisQueue's view of its Redis: results, metrics and log lines of its own, over
    the connection pool it shares with every RedisQueue on the same endpoint and credential.
    """

    def __init__(
        self,
        contract: ConnectionContract,
        *,
        namespace: str,
        name: str,
        timeout: float = 2.0,
        queues: Sequence[QueueKey] = (),
        detailed_errors: bool = True,
        endpoints: EndpointPool | None = None,
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
        self.closed = False
        self._outcome: PingOutcome | None = None  # the shared PING ``last`` was made from
        self._endpoints = endpoints if endpoints is not None else EndpointPool()
        #: The endpoint this probe PINGs through, shared with every RedisQueue on it.
        self.shared = self._endpoints.acquire(contract, timeout)

    # -- the coalesced check ------------------------------------------------------------
    async def check(self) -> ProbeResult:
        """A result from a PING sent after this call began (shared with concurrent calls,
        and with every RedisQueue on the same endpoint; see :meth:`Endpoint.ping`)."""
        return self.take(await self.shared.ping())

    def take(self, outcome: PingOutcome) -> ProbeResult:
        """This RedisQueue's result of a PING its endpoint answered (recorded once per PING;
        callers that already awaited the endpoint's PING pass its outcome here)."""
        if outcome is self._outcome and self.last is not None:
            return self.last  # another caller of this probe already turned it into a result
        result = self._result(outcome)
        self._outcome = outcome
        if not self.closed:  # a PING that finishes after close must not re-create series
            self._record(result)
        return result

    def _result(self, outcome: PingOutcome) -> ProbeResult:
        if outcome.error is None:
            return ProbeResult(
                True, self.endpoint, "ok", latency_seconds=outcome.latency_seconds, at=outcome.at
            )
        reason, message = classify(outcome.error, self.endpoint, self.timeout)
        masked = reason not in {"refused", "auth_failed"} or (
            reason == "auth_failed" and not self.contract.password
        )
        if not self.detailed_errors and masked:
            reason, message = "unreachable", undetailed_failure(self.endpoint, self.timeout)
        return ProbeResult(False, self.endpoint, reason, error=message, at=outcome.at)

    def _record(self, result: ProbeResult) -> None:
        previous, self.last = self.last, result
        latency = (result.latency_seconds or 0.0) if result.ok else None
        metrics.SERIES.probed(self.namespace, self.name, result.reason, result.at, latency)
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
        """INFO and queue depths into metrics (read in one pipeline per endpoint with every
        other RedisQueue asking at the same time); errors leave the last values alone."""
        try:
            details = await self.shared.details(self.queues)
        except Exception as exc:  # a hostile reply must not end the probe loop
            log.debug(
                "%s/%s: details of redis at %s not collected (%s)",
                self.namespace,
                self.name,
                self.endpoint,
                type(exc).__name__,
                extra=about(self.namespace, self.name),
            )
            return
        if self.closed:
            return
        if details.info is not None:
            metrics.SERIES.server(self.namespace, self.name, details.info)
        for queue, reading in details.queues.items():
            metrics.SERIES.depth(self.namespace, self.name, queue.key, queue.type, reading.depth)
            if queue.group and reading.pending is not None:
                metrics.SERIES.pending(
                    self.namespace, self.name, queue.key, queue.group, reading.pending
                )

    async def close(self) -> None:
        """Stop recording and give the shared connection back (closed with its last user)."""
        if self.closed:
            return
        self.closed = True
        await self._endpoints.release(self.shared)
