"""Helpers of the client library's tests: settings for a test server, and metric samples."""

from __future__ import annotations

from prometheus_client import REGISTRY

from harness.redis_server import RedisServer
from redisqueue.settings import RedisSettings, load_settings


def settings_for(server: RedisServer, **extra: str) -> RedisSettings:
    """The contract for ``server`` (TLS when it speaks TLS, its password when it has one), with
    ``extra`` variables on top, read as an app reads it but without a ``.env`` file."""
    scheme = "rediss" if server.tls else "redis"
    env = {"REDIS_URL": f"{scheme}://{server.endpoint}/0"}
    if server.password:
        env["REDIS_PASSWORD"] = server.password
    env.update(extra)
    return load_settings(env, env_file=None)


def retrying_settings(
    server: RedisServer, *, base: float, cap: float, attempts: int, **extra: str
) -> RedisSettings:
    """:func:`settings_for` with the backoff's base and cap (seconds) and its retry attempts."""
    return settings_for(
        server,
        REDIS_BACKOFF_BASE_SECONDS=str(base),
        REDIS_BACKOFF_CAP_SECONDS=str(cap),
        REDIS_RETRY_ATTEMPTS=str(attempts),
        **extra,
    )


def pool_settings(
    server: RedisServer, *, max_connections: int, timeout: float, **extra: str
) -> RedisSettings:
    """:func:`settings_for` with the pool's cap on connections and its timeout (seconds)."""
    return settings_for(
        server,
        REDIS_POOL_MAX_CONNECTIONS=str(max_connections),
        REDIS_POOL_TIMEOUT_SECONDS=str(timeout),
        **extra,
    )


def sample(name: str, **labels: str) -> float:
    """The current value of one sample in the default registry, 0 when it does not exist."""
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value
