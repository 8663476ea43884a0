"""The client library apps use: a fair bounded pool, the contract's backoff, and metrics.

Long on purpose: the sync and the asyncio client are built side by side from the same parts,
so that any difference between the two shows.

``create_client()`` (sync) and ``create_async_client()`` (asyncio) return redis-py
clients configured from the connection contract (see :mod:`redisqueue.settings`):

* a fair pool (:mod:`redisqueue.pool`) capped at ``REDIS_POOL_MAX_CONNECTIONS``: callers
  wait in arrival order, up to ``REDIS_POOL_TIMEOUT_SECONDS``, for a free connection, then
  get :class:`~redisqueue.pool.PoolExhaustedError`;
* replies within ``REDIS_SOCKET_TIMEOUT_SECONDS``, except that blocking commands wait their
  own block time on top (:mod:`redisqueue.connection`), and idle connections are checked
  with a PING before reuse;
* retries with :class:`~redisqueue.backoff.ContractBackoff` (1 s, 2 s, 4 s ... 30 s) for
  connects and commands, ``REDIS_RETRY_ATTEMPTS`` times, but never of a command that may
  have run: after a lost reply only reads and other commands safe to repeat are sent again
  (:mod:`redisqueue.commands`), the others raise :class:`CommandMayHaveRun`, and
  :func:`reply_timeout` gives longer commands their time; authentication errors are not
  retried (a wrong password does not fix itself by waiting) unless the password comes from
  ``REDIS_PASSWORD_FILE``, which is read again at every attempt (a rotated Secret);
* Prometheus metrics (:mod:`redisqueue.metrics`) and one log line per connection event.

Any redis-py keyword argument (``decode_responses=True``, ``client_name=...``,
``health_check_interval=...``, ``socket_timeout=...``, ``protocol=3``, ...) passes through
to the connections; the pool, its cap and the retry policy stay the contract's.

Pipelines and pub/sub use redis-py's own classes and are not counted per command.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import redis
import redis.asyncio
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    ConnectionError,
    ResponseError,
    TimeoutError,
)

from . import connection, metrics
from .backoff import ContractBackoff
from .connection import (
    BlockingCommandInterrupted,
    CommandMayHaveRun,
    PasswordFileCredentials,
    reply_timeout,
)
from .contract import tls_options
from .pool import AsyncFairBlockingConnectionPool, FairBlockingConnectionPool, PoolExhaustedError
from .retry import NOT_RETRYABLE_WITH_FILE, AsyncContractRetry, ContractRetry, checker
from .settings import RedisSettings, load_settings

__all__ = [
    "AsyncRedis",
    "BlockingCommandInterrupted",
    "CommandMayHaveRun",
    "PoolExhaustedError",
    "Redis",
    "create_async_client",
    "create_client",
    "reply_timeout",
]

log = logging.getLogger("redisqueue.client")

#: Idle connections older than this get a PING before they carry a command.
HEALTH_CHECK_INTERVAL_SECONDS = 30

# Failures that are not a lost connection, whatever their base class says.
_NOT_LOST = (AuthenticationError, AuthorizationError, ResponseError, PoolExhaustedError)

# redis-py keyword arguments the contract decides: name -> the contract variable to set.
_CONTRACT_OWNED = {
    "connection_pool": "the contract's pool (REDIS_POOL_MAX_CONNECTIONS)",
    "max_connections": "REDIS_POOL_MAX_CONNECTIONS",
    "timeout": "REDIS_POOL_TIMEOUT_SECONDS",
    "retry": "REDIS_RETRY_ATTEMPTS and REDIS_BACKOFF_*_SECONDS",
    "retry_on_timeout": "REDIS_RETRY_ATTEMPTS",
    "retry_on_error": "REDIS_RETRY_ATTEMPTS",
    "host": "REDIS_URL or REDIS_HOST",
    "port": "REDIS_URL or REDIS_PORT",
    "path": "a unix:// REDIS_URL",
    "unix_socket_path": "a unix:// REDIS_URL",
    "db": "REDIS_URL or REDIS_DB",
    "username": "REDIS_URL or REDIS_USERNAME",
    "password": "REDIS_PASSWORD or REDIS_PASSWORD_FILE",
    "connection_class": "REDIS_URL (redis://, rediss:// or unix://)",
}


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
        self._exhausted = metrics.POOL_EXHAUSTED.labels(name)
        self._waits = metrics.POOL_WAITS.stats_for(name)
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
        if isinstance(exc, ConnectionError | TimeoutError) and not isinstance(exc, _NOT_LOST):
            self.lost(exc)

    # PoolObserver
    def waited(self, seconds: float) -> None:
        self._waits.observe(seconds)

    def exhausted(self) -> None:
        self._exhausted.inc()

    def changed(self) -> None:
        # Read at scrape time by a collector, except in multiprocess mode.
        if metrics.MULTIPROCESS:
            metrics.POOLS.refresh(self.name)

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


def _keepalive_options(socket_timeout: float) -> dict[int, int]:
    # A blocking command may wait for ever: TCP keepalive is what notices a peer that
    # vanished without closing (a node lost, a pod's network gone), after about 4x the
    # socket timeout.
    seconds = max(1, math.ceil(socket_timeout))
    options: dict[int, int] = {}
    for name, value in (("TCP_KEEPIDLE", seconds), ("TCP_KEEPINTVL", seconds), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            options[getattr(socket, name)] = value
    return options


def _connection_kwargs(
    settings: RedisSettings, redis_kwargs: Mapping[str, Any], retry_auth: bool
) -> dict[str, Any]:
    for key in redis_kwargs:
        if key in _CONTRACT_OWNED:
            raise TypeError(
                f"create_client: {key!r} is set by the connection contract; "
                f"use {_CONTRACT_OWNED[key]}"
            )
    socket_timeout = float(redis_kwargs.get("socket_timeout") or settings.socket_timeout_seconds)
    kwargs: dict[str, Any] = {
        "db": settings.db,
        "socket_timeout": settings.socket_timeout_seconds,
        "socket_connect_timeout": settings.socket_timeout_seconds,
        "health_check_interval": HEALTH_CHECK_INTERVAL_SECONDS,
    }
    if settings.unix_socket_path:
        kwargs["path"] = settings.unix_socket_path
    else:
        kwargs.update(host=settings.host, port=settings.port)
        kwargs.update(
            socket_keepalive=True, socket_keepalive_options=_keepalive_options(socket_timeout)
        )
        kwargs.update(
            tls_options(settings.tls, settings.tls_ca_cert, settings.tls_insecure_skip_verify)
        )
    if retry_auth:
        kwargs["credential_provider"] = PasswordFileCredentials(settings)
    else:
        kwargs.update(username=settings.username, password=settings.password)
    kwargs.update(settings.url_options)
    kwargs.update(redis_kwargs)
    return kwargs


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
    waiting = int(getattr(pool, "waiting")())  # noqa: B009
    return metrics.PoolSnapshot(
        in_use=in_use,
        idle=free,
        max=int(getattr(pool, "max_connections")),  # noqa: B009
        waiting=waiting,
    )


def _check_kwargs(connection_class: type, kwargs: dict[str, Any]) -> None:
    # A misspelt keyword should fail here, not at the first command.
    try:
        connection_class(**kwargs)
    except TypeError as exc:
        raise TypeError(f"create_client: {exc}") from None


def create_client(
    settings: RedisSettings | None = None, *, name: str = "default", **redis_kwargs: Any
) -> Redis:
    """A sync client for ``settings`` (default: read from the environment and ``.env``).

    ``redis_kwargs`` are redis-py connection keyword arguments (``decode_responses``,
    ``client_name``, ``health_check_interval``, ``socket_timeout``, ``protocol``, ...);
    the pool, its cap and timeout, the endpoint, the credentials and the retry policy come
    from the contract, and passing one of those raises ``TypeError`` naming the variable.
    """
    settings = settings or load_settings()
    instr = _Instrumentation(name, settings.endpoint, settings.retry_attempts)

    def on_connect(conn: redis.connection.AbstractConnection) -> None:
        conn.on_connect()
        instr.connected()

    pool = _fair_pool(_SYNC, settings, instr, on_connect, redis_kwargs)
    # The client owns its pool: close() and `with` release every connection of it.
    client = cast(Redis, Redis.from_pool(pool))
    _observe(client, pool, instr, name)
    return client


def create_async_client(
    settings: RedisSettings | None = None, *, name: str = "default", **redis_kwargs: Any
) -> AsyncRedis:
    """An asyncio client for ``settings`` (default: read from the environment and ``.env``).

    ``redis_kwargs`` as for :func:`create_client`.
    """
    settings = settings or load_settings()
    instr = _Instrumentation(name, settings.endpoint, settings.retry_attempts)

    async def on_connect(conn: redis.asyncio.connection.AbstractConnection) -> None:
        await conn.on_connect()
        instr.connected()

    pool = _fair_pool(_ASYNC, settings, instr, on_connect, redis_kwargs)
    # The client owns its pool: aclose() and `async with` release every connection of it.
    client = cast(AsyncRedis, AsyncRedis.from_pool(pool))
    _observe(client, pool, instr, name)
    return client


_Pool = TypeVar("_Pool", FairBlockingConnectionPool, AsyncFairBlockingConnectionPool)


@dataclass(frozen=True, slots=True)
class _Flavour(Generic[_Pool]):
    """The classes a sync or an asyncio client's pool is built from."""

    pool: type[_Pool]
    retry: type[ContractRetry] | type[AsyncContractRetry]
    unix: type
    tls: type
    tcp: type

    def connection_class(self, settings: RedisSettings) -> type:
        """The connection class for the endpoint: a unix socket, TLS or plain TCP."""
        if settings.unix_socket_path:
            return self.unix
        return self.tls if settings.tls else self.tcp


_SYNC = _Flavour(
    FairBlockingConnectionPool,
    ContractRetry,
    connection.UnixDomainSocketConnection,
    connection.SSLConnection,
    connection.Connection,
)
_ASYNC = _Flavour(
    AsyncFairBlockingConnectionPool,
    AsyncContractRetry,
    connection.AsyncUnixDomainSocketConnection,
    connection.AsyncSSLConnection,
    connection.AsyncConnection,
)


def _fair_pool(
    flavour: _Flavour[_Pool],
    settings: RedisSettings,
    instr: _Instrumentation,
    on_connect: Callable[[Any], Any],
    redis_kwargs: dict[str, Any],
) -> _Pool:
    """The client's own pool for ``settings``, with the contract's retry policy and limits."""
    retry = flavour.retry(_backoff(settings, instr), settings.retry_attempts)
    return flavour.pool(
        redis_connect_func=on_connect,
        **_pool_arguments(settings, flavour.connection_class(settings), retry, redis_kwargs),
    )


def _pool_arguments(
    settings: RedisSettings,
    connection_class: type,
    retry: ContractRetry | AsyncContractRetry,
    redis_kwargs: dict[str, Any],
) -> dict[str, Any]:
    """What the sync and the async pool are both built from: the connection class, the
    retry policy, the pool's limits and the checked connection arguments."""
    from_file = settings.password_file is not None
    if from_file:
        retry.check = checker(NOT_RETRYABLE_WITH_FILE)
    kwargs = _connection_kwargs(settings, redis_kwargs, from_file)
    _check_kwargs(connection_class, kwargs)
    return {
        "connection_class": connection_class,
        "retry": retry,
        "max_connections": settings.pool_max_connections,
        "timeout": settings.pool_timeout_seconds,
        **kwargs,
    }


def _observe(
    client: Redis | AsyncRedis,
    pool: FairBlockingConnectionPool | AsyncFairBlockingConnectionPool,
    instr: _Instrumentation,
    name: str,
) -> None:
    pool.observer = instr
    client._instrumentation = instr
    metrics.POOLS.track(name, pool, _pool_reader)
