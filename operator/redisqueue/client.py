"""The client library apps use: a bounded pool, the contract's backoff, and metrics.

``create_client()`` (sync) and ``create_async_client()`` (asyncio) return redis-py
clients configured from the connection contract (see :mod:`redisqueue.settings`):

* a ``BlockingConnectionPool`` capped at ``REDIS_POOL_MAX_CONNECTIONS``: callers wait up
  to ``REDIS_POOL_TIMEOUT_SECONDS`` for a free connection instead of opening more;
* retries with :class:`~redisqueue.backoff.ContractBackoff` (1 s, 2 s, 4 s ... 30 s) for
  connects and commands, ``REDIS_RETRY_ATTEMPTS`` times; authentication errors are not
  retried (a wrong password does not fix itself by waiting);
* Prometheus metrics (:mod:`redisqueue.metrics`) and one log line per connection event.

Pipelines and pub/sub use redis-py's own classes and are not counted per command.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    ConnectionError,
    ResponseError,
    TimeoutError,
)

from . import metrics
from .backoff import ContractBackoff
from .contract import tls_options
from .settings import RedisSettings, load_settings

log = logging.getLogger("redisqueue.client")

T = TypeVar("T")

# Errors that waiting cannot fix: retrying them only delays the real answer.
_NOT_RETRYABLE = (AuthenticationError, AuthorizationError, ResponseError)


class _Instrumentation:
    """Per-client metric children and connection state, shared by its connections."""

    def __init__(self, name: str, endpoint: str, attempts: int) -> None:
        self.name = name
        self.endpoint = endpoint
        self.attempts = attempts
        self._commands = metrics.COMMANDS.stats_for(name)
        self._names: dict[object, str] = {}  # command as sent -> metric label
        self._retries = metrics.CLIENT_RETRIES.labels(name)
        self._connects = metrics.CLIENT_CONNECTS.labels(name)
        self._reconnects = metrics.CLIENT_RECONNECTS.labels(name)
        self._state_lock = threading.Lock()
        self._ever_connected = False
        self._lost_at: float | None = None

    def observe(self, command: object, started: float, ok: bool) -> None:
        # The hot path: one perf_counter, a dict lookup and a few additions.
        elapsed = time.perf_counter() - started
        name = self._names.get(command)
        if name is None:
            raw = command.decode() if isinstance(command, bytes) else str(command)
            name = self._names.setdefault(command, raw.upper())
        self._commands.observe(name, elapsed, ok)

    def failed(self, command: object, started: float, exc: BaseException) -> None:
        self.observe(command, started, ok=False)
        if isinstance(exc, ConnectionError | TimeoutError) and not isinstance(exc, _NOT_RETRYABLE):
            self.lost(exc)

    def lost(self, exc: BaseException) -> None:
        with self._state_lock:
            if self._lost_at is not None:
                return
            self._lost_at = time.monotonic()
        log.warning("redis %s: connection lost (%s)", self.endpoint, type(exc).__name__)

    def retrying(self, retry: int, delay: float) -> None:
        self._retries.inc()
        with self._state_lock:
            if self._lost_at is None:
                self._lost_at = time.monotonic()
        log.warning(
            "redis %s: retrying in %.1f s (retry %d of %d)",
            self.endpoint,
            delay,
            retry,
            self.attempts,
        )

    def connected(self) -> None:
        self._connects.inc()
        with self._state_lock:
            lost_at, self._lost_at = self._lost_at, None
            first = not self._ever_connected
            self._ever_connected = True
        if lost_at is not None:
            self._reconnects.inc()
            log.info("redis %s: recovered after %.1f s", self.endpoint, time.monotonic() - lost_at)
        elif first:
            log.info("redis %s: connected", self.endpoint)


def _retryable(error: Exception) -> bool:
    return not isinstance(error, _NOT_RETRYABLE)


def _combine(
    is_retryable: Callable[[Exception], bool] | None,
) -> Callable[[Exception], bool]:
    # Called once per command: no closure unless redis-py passed its own check.
    if is_retryable is None:
        return _retryable
    return lambda error: _retryable(error) and is_retryable(error)


class ContractRetry(redis.retry.Retry):
    """redis-py's Retry that gives up at once on errors waiting cannot fix."""

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        return super().call_with_retry(do, fail, _combine(is_retryable), with_failure_count)


class AsyncContractRetry(redis.asyncio.retry.Retry):
    """The asyncio twin of :class:`ContractRetry`."""

    # A plain method handing back redis-py's coroutine: no extra coroutine per command.
    def call_with_retry(  # type: ignore[override]
        self,
        do: Callable[[], Awaitable[T]],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> Awaitable[T]:
        return super().call_with_retry(do, fail, _combine(is_retryable), with_failure_count)


class Redis(redis.Redis):
    """A sync redis-py client whose commands are counted and timed."""

    _instrumentation: _Instrumentation

    def execute_command(self, *args: Any, **options: Any) -> Any:
        started = time.perf_counter()
        try:
            result = super().execute_command(*args, **options)
        except BaseException as exc:
            self._instrumentation.failed(args[0], started, exc)
            raise
        self._instrumentation.observe(args[0], started, ok=True)
        return result


class AsyncRedis(redis.asyncio.Redis):
    """An asyncio redis-py client whose commands are counted and timed."""

    _instrumentation: _Instrumentation

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        started = time.perf_counter()
        try:
            result = await super().execute_command(*args, **options)
        except BaseException as exc:
            self._instrumentation.failed(args[0], started, exc)
            raise
        self._instrumentation.observe(args[0], started, ok=True)
        return result


def _common_kwargs(settings: RedisSettings) -> dict[str, Any]:
    return {
        "host": settings.host,
        "port": settings.port,
        "db": settings.db,
        "username": settings.username,
        "password": settings.password,
        "socket_connect_timeout": settings.pool_timeout_seconds,
        "socket_keepalive": True,
        "max_connections": settings.pool_max_connections,
        "timeout": settings.pool_timeout_seconds,
        **tls_options(settings.tls, settings.tls_ca_cert, settings.tls_insecure_skip_verify),
    }


def _backoff(settings: RedisSettings, instr: _Instrumentation) -> ContractBackoff:
    return ContractBackoff(
        settings.backoff_base_seconds,
        settings.backoff_cap_seconds,
        on_retry=instr.retrying,
    )


def _pool_reader(pool: object) -> metrics.PoolSnapshot:
    # Both redis-py pools expose these two views of their connections.
    free = len(list(getattr(pool, "_get_free_connections")()))  # noqa: B009
    in_use = len(list(getattr(pool, "_get_in_use_connections")()))  # noqa: B009
    return metrics.PoolSnapshot(in_use=in_use, idle=free, max=int(getattr(pool, "max_connections")))  # noqa: B009


def create_client(settings: RedisSettings | None = None, *, name: str = "default") -> Redis:
    """A sync client for ``settings`` (default: read from the environment and ``.env``)."""
    settings = settings or load_settings()
    instr = _Instrumentation(name, settings.endpoint, settings.retry_attempts)

    def on_connect(conn: redis.connection.AbstractConnection) -> None:
        conn.on_connect()
        instr.connected()

    retry = ContractRetry(_backoff(settings, instr), settings.retry_attempts)
    pool = redis.BlockingConnectionPool(
        connection_class=redis.SSLConnection if settings.tls else redis.Connection,
        retry=retry,
        redis_connect_func=on_connect,
        **_common_kwargs(settings),
    )
    client = Redis(connection_pool=pool, retry=retry)
    client._instrumentation = instr
    metrics.POOLS.track(name, pool, _pool_reader)
    return client


def create_async_client(
    settings: RedisSettings | None = None, *, name: str = "default"
) -> AsyncRedis:
    """An asyncio client for ``settings`` (default: read from the environment and ``.env``)."""
    settings = settings or load_settings()
    instr = _Instrumentation(name, settings.endpoint, settings.retry_attempts)

    async def on_connect(conn: redis.asyncio.connection.AbstractConnection) -> None:
        await conn.on_connect()
        instr.connected()

    retry = AsyncContractRetry(_backoff(settings, instr), settings.retry_attempts)
    pool = redis.asyncio.BlockingConnectionPool(
        connection_class=(
            redis.asyncio.SSLConnection if settings.tls else redis.asyncio.Connection
        ),
        retry=retry,
        redis_connect_func=on_connect,
        **_common_kwargs(settings),
    )
    client = AsyncRedis(connection_pool=pool, retry=retry)
    client._instrumentation = instr
    metrics.POOLS.track(name, pool, _pool_reader)
    return client
