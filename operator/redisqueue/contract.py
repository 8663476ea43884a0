"""The connection contract: the keys an app Secret (or environment) carries.

This module is pure: it turns connection parts into the contract's key/value pairs and
back into a URL. The operator writes these keys into app Secrets; the client library
reads the same names from the environment. Changing a key name here is a contract change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import quote

Environment = Literal["development", "production"]

#: Pool size cap by environment (design.md: 50 development, 100 production).
DEFAULT_POOL_MAX_CONNECTIONS: Final[dict[str, int]] = {"development": 50, "production": 100}
DEFAULT_PORT: Final = 6379
DEFAULT_DB: Final = 0
DEFAULT_POOL_TIMEOUT_SECONDS: Final = 5.0
DEFAULT_BACKOFF_BASE_SECONDS: Final = 1.0
DEFAULT_BACKOFF_CAP_SECONDS: Final = 30.0
DEFAULT_RETRY_ATTEMPTS: Final = 10

KEY_URL: Final = "REDIS_URL"
KEY_HOST: Final = "REDIS_HOST"
KEY_PORT: Final = "REDIS_PORT"
KEY_DB: Final = "REDIS_DB"
KEY_USERNAME: Final = "REDIS_USERNAME"
KEY_PASSWORD: Final = "REDIS_PASSWORD"  # noqa: S105 - a variable name, not a secret
KEY_TLS: Final = "REDIS_TLS"
KEY_TLS_CA: Final = "REDIS_TLS_CA_CERT"
KEY_TLS_INSECURE: Final = "REDIS_TLS_INSECURE_SKIP_VERIFY"
KEY_POOL_MAX: Final = "REDIS_POOL_MAX_CONNECTIONS"
KEY_POOL_TIMEOUT: Final = "REDIS_POOL_TIMEOUT_SECONDS"
KEY_BACKOFF_BASE: Final = "REDIS_BACKOFF_BASE_SECONDS"
KEY_BACKOFF_CAP: Final = "REDIS_BACKOFF_CAP_SECONDS"
KEY_RETRY_ATTEMPTS: Final = "REDIS_RETRY_ATTEMPTS"

#: Every key the contract may write, in a stable order. The operator owns exactly these
#: keys in an app Secret and removes only these on deletion.
CONTRACT_KEYS: Final[tuple[str, ...]] = (
    KEY_URL,
    KEY_HOST,
    KEY_PORT,
    KEY_DB,
    KEY_USERNAME,
    KEY_PASSWORD,
    KEY_TLS,
    KEY_TLS_CA,
    KEY_TLS_INSECURE,
    KEY_POOL_MAX,
    KEY_POOL_TIMEOUT,
    KEY_BACKOFF_BASE,
    KEY_BACKOFF_CAP,
    KEY_RETRY_ATTEMPTS,
)


def _number(value: float) -> str:
    """Render 1.0 as "1" and 0.5 as "0.5", so Secrets read the way people write them."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def build_url(
    host: str,
    port: int = DEFAULT_PORT,
    db: int = DEFAULT_DB,
    *,
    tls: bool = False,
    username: str | None = None,
    password: str | None = None,
) -> str:
    """Return a redis:// or rediss:// URL with the credentials percent-encoded."""
    scheme = "rediss" if tls else "redis"
    auth = ""
    if password is not None or username:
        user = quote(username or "", safe="")
        secret = quote(password or "", safe="")
        auth = f"{user}:{secret}@" if password is not None else f"{user}@"
    netloc_host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"{scheme}://{auth}{netloc_host}:{port}/{db}"


def redact_url(url: str) -> str:
    """Return the URL with any password replaced by ``***`` (safe for logs and errors)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    creds, _, hostpart = rest.partition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{hostpart}" if ":" in creds else f"{scheme}://{user}@{hostpart}"


@dataclass(frozen=True, slots=True)
class ConnectionContract:
    """Everything an app needs to reach one Redis, as the contract defines it."""

    host: str
    port: int = DEFAULT_PORT
    db: int = DEFAULT_DB
    username: str | None = None
    password: str | None = None
    tls: bool = False
    tls_ca_cert: str | None = None
    tls_insecure_skip_verify: bool = False
    pool_max_connections: int = DEFAULT_POOL_MAX_CONNECTIONS["development"]
    pool_timeout_seconds: float = DEFAULT_POOL_TIMEOUT_SECONDS
    backoff_base_seconds: float = DEFAULT_BACKOFF_BASE_SECONDS
    backoff_cap_seconds: float = DEFAULT_BACKOFF_CAP_SECONDS
    retry_attempts: int = DEFAULT_RETRY_ATTEMPTS

    @property
    def url(self) -> str:
        return build_url(
            self.host,
            self.port,
            self.db,
            tls=self.tls,
            username=self.username,
            password=self.password,
        )

    @property
    def endpoint(self) -> str:
        """host:port, the credential-free name used in errors, status and metrics."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def to_env(self) -> dict[str, str]:
        """The contract as string key/value pairs (Secret ``stringData`` or environment)."""
        env = {
            KEY_URL: self.url,
            KEY_HOST: self.host,
            KEY_PORT: str(self.port),
            KEY_DB: str(self.db),
            KEY_TLS: "true" if self.tls else "false",
            KEY_POOL_MAX: str(self.pool_max_connections),
            KEY_POOL_TIMEOUT: _number(self.pool_timeout_seconds),
            KEY_BACKOFF_BASE: _number(self.backoff_base_seconds),
            KEY_BACKOFF_CAP: _number(self.backoff_cap_seconds),
            KEY_RETRY_ATTEMPTS: str(self.retry_attempts),
        }
        if self.username:
            env[KEY_USERNAME] = self.username
        if self.password is not None:
            env[KEY_PASSWORD] = self.password
        if self.tls and self.tls_ca_cert:
            env[KEY_TLS_CA] = self.tls_ca_cert
        if self.tls and self.tls_insecure_skip_verify:
            env[KEY_TLS_INSECURE] = "true"
        return env

    def __repr__(self) -> str:  # keep the password out of reprs, logs and tracebacks
        return (
            f"ConnectionContract(endpoint={self.endpoint!r}, db={self.db}, tls={self.tls}, "
            f"pool_max_connections={self.pool_max_connections})"
        )
