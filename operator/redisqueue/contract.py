"""The connection contract: the keys an app Secret (or environment) carries.

:data:`FIELDS` is the one definition of every contract field (its key, type, default,
bounds and meaning). The settings reader (:mod:`redisqueue.settings`), the
:class:`ConnectionContract` below, the RedisQueue spec's bounds and the README's table are
all read from it, so they cannot disagree. The operator writes these keys into app
Secrets; the client library reads the same names from the environment. Changing a key
name here is a contract change.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Generic, Literal, TypeVar
from urllib.parse import quote

Environment = Literal["development", "production"]

T = TypeVar("T", int, float, bool, str)


@dataclass(frozen=True, slots=True)
class ContractField(Generic[T]):
    """One key of the contract: how it is named, typed, bounded and explained."""

    attr: str  # the attribute of ConnectionContract / RedisSettings
    key: str  # the environment variable and Secret key
    kind: type[T]
    meaning: str  # one line for people (README, CRD descriptions)
    default: T | None = None
    readme_default: str = "-"
    minimum: float | None = None  # inclusive, or exclusive when exclusive_minimum
    maximum: float | None = None  # inclusive
    exclusive_minimum: bool = False
    unit: str = ""  # "seconds" for durations
    secret: bool = False  # never echoed in errors, logs or `redisqueue settings`
    extra_rule: str = ""  # said after the accepted range, e.g. a relation to another key

    def default_value(self) -> T:
        """The default, for fields that have one (a programming error otherwise)."""
        if self.default is None:
            raise LookupError(f"{self.key} has no default")
        return self.default

    def bounds(self) -> dict[str, Any]:
        """The bounds as pydantic ``Field`` keyword arguments (ge/gt/le)."""
        out: dict[str, Any] = {}
        if self.minimum is not None:
            out["gt" if self.exclusive_minimum else "ge"] = _plain(self.minimum)
        if self.maximum is not None:
            out["le"] = _plain(self.maximum)
        return out

    @property
    def accepted(self) -> str:
        """What a valid value looks like, as error messages say it."""
        if self.kind is bool:
            text = "true or false"
        elif self.kind is int:
            text = f"an integer from {_number(self.minimum or 0)} to {_number(self.maximum or 0)}"
        elif self.kind is float:
            low = _number(self.minimum or 0)
            first = f"above {low}" if self.exclusive_minimum else f"from {low}"
            noun = f"a number of {self.unit}" if self.unit else "a number"
            text = f"{noun} {first} up to {_number(self.maximum or 0)}"
        else:
            text = self.meaning
        return f"{text}, {self.extra_rule}" if self.extra_rule else text


def _plain(value: float) -> float:
    """Whole numbers as int, so generated schemas say ``300`` rather than ``300.0``."""
    return int(value) if float(value).is_integer() else value


def _number(value: float) -> str:
    """Render 1.0 as "1" and 0.5 as "0.5", so Secrets read the way people write them."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _seconds(
    attr: str, key: str, meaning: str, default: float, maximum: float, extra_rule: str = ""
) -> ContractField[float]:
    """A duration: a number of seconds above zero, up to ``maximum``."""
    return ContractField(
        attr,
        key,
        float,
        meaning,
        default,
        _number(default),
        minimum=0,
        maximum=maximum,
        exclusive_minimum=True,
        unit="seconds",
        extra_rule=extra_rule,
    )


URL: Final = ContractField(
    "url",
    "REDIS_URL",
    str,
    "`redis://`, `rediss://` (TLS) or `unix://` URL, password URL-encoded; redis-py's query "
    "parameters (`?health_check_interval=30`) are honoured",
)
HOST: Final = ContractField("host", "REDIS_HOST", str, "host name or IP address of the Redis")
PORT: Final = ContractField(
    "port", "REDIS_PORT", int, "TCP port", 6379, "6379", minimum=1, maximum=65535
)
DB: Final = ContractField("db", "REDIS_DB", int, "database number", 0, "0", minimum=0, maximum=15)
USERNAME: Final = ContractField("username", "REDIS_USERNAME", str, "ACL user (optional)")
PASSWORD: Final = ContractField(
    "password", "REDIS_PASSWORD", str, "password of the user (or of the default user)", secret=True
)
PASSWORD_FILE: Final = ContractField(
    "password_file",
    "REDIS_PASSWORD_FILE",
    str,
    "path of a file holding the password (a mounted Secret key); read at every connect, "
    "so a rotated password needs no restart; wins over `REDIS_PASSWORD`. Set by the app, "
    "never written by the operator",
)
TLS: Final = ContractField("tls", "REDIS_TLS", bool, "`true` / `false`", False, "false")
TLS_CA_CERT: Final = ContractField(
    "tls_ca_cert",
    "REDIS_TLS_CA_CERT",
    str,
    "PEM of a private CA, when the RedisQueue references one",
    secret=True,  # not a secret, but long: shown as its size
)
TLS_INSECURE_SKIP_VERIFY: Final = ContractField(
    "tls_insecure_skip_verify",
    "REDIS_TLS_INSECURE_SKIP_VERIFY",
    bool,
    "only `true` when the resource says so",
    False,
)
POOL_MAX_CONNECTIONS: Final = ContractField(
    "pool_max_connections",
    "REDIS_POOL_MAX_CONNECTIONS",
    int,
    "hard cap of open connections per pool",
    None,  # by environment: DEFAULT_POOL_MAX_CONNECTIONS
    "50 development, 100 production",
    minimum=1,
    maximum=10000,
)
POOL_TIMEOUT_SECONDS: Final = _seconds(
    "pool_timeout_seconds",
    "REDIS_POOL_TIMEOUT_SECONDS",
    "wait for a free connection before failing",
    5.0,
    300,
)
SOCKET_TIMEOUT_SECONDS: Final = _seconds(
    "socket_timeout_seconds",
    "REDIS_SOCKET_TIMEOUT_SECONDS",
    "longest wait for a reply (and for a connect); blocking commands (BLPOP, BLMOVE, "
    "XREADGROUP BLOCK, ...) wait their own block time plus this",
    5.0,
    300,
)
BACKOFF_BASE_SECONDS: Final = _seconds(
    "backoff_base_seconds",
    "REDIS_BACKOFF_BASE_SECONDS",
    "first retry delay",
    1.0,
    3600,
)
BACKOFF_CAP_SECONDS: Final = _seconds(
    "backoff_cap_seconds",
    "REDIS_BACKOFF_CAP_SECONDS",
    "longest retry delay",
    30.0,
    3600,
    "not below REDIS_BACKOFF_BASE_SECONDS",
)
RETRY_ATTEMPTS: Final = ContractField(
    "retry_attempts",
    "REDIS_RETRY_ATTEMPTS",
    int,
    "retries per command and per connect",
    10,
    "10",
    minimum=0,
    maximum=100,
)

#: Every field of the contract, in a stable order (the order of Secrets and of the README).
FIELDS: Final[tuple[ContractField[Any], ...]] = (
    URL,
    HOST,
    PORT,
    DB,
    USERNAME,
    PASSWORD,
    PASSWORD_FILE,
    TLS,
    TLS_CA_CERT,
    TLS_INSECURE_SKIP_VERIFY,
    POOL_MAX_CONNECTIONS,
    POOL_TIMEOUT_SECONDS,
    SOCKET_TIMEOUT_SECONDS,
    BACKOFF_BASE_SECONDS,
    BACKOFF_CAP_SECONDS,
    RETRY_ATTEMPTS,
)

#: Every key the contract may write. The operator owns exactly these keys in an app Secret
#: and removes only these on deletion.
CONTRACT_KEYS: Final[tuple[str, ...]] = tuple(f.key for f in FIELDS)

#: Pool size cap by environment (design.md: 50 development, 100 production).
DEFAULT_POOL_MAX_CONNECTIONS: Final[dict[str, int]] = {"development": 50, "production": 100}
DEFAULT_PORT: Final = PORT.default_value()
DEFAULT_DB: Final = DB.default_value()
DEFAULT_POOL_TIMEOUT_SECONDS: Final = POOL_TIMEOUT_SECONDS.default_value()
DEFAULT_SOCKET_TIMEOUT_SECONDS: Final = SOCKET_TIMEOUT_SECONDS.default_value()
DEFAULT_BACKOFF_BASE_SECONDS: Final = BACKOFF_BASE_SECONDS.default_value()
DEFAULT_BACKOFF_CAP_SECONDS: Final = BACKOFF_CAP_SECONDS.default_value()
DEFAULT_RETRY_ATTEMPTS: Final = RETRY_ATTEMPTS.default_value()


def format_endpoint(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets (``[::1]:6379``)."""
    bracketed = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"{bracketed}:{port}"


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
    return f"{scheme}://{auth}{format_endpoint(host, port)}/{db}"


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
    password_file: str | None = None
    tls: bool = False
    tls_ca_cert: str | None = None
    tls_insecure_skip_verify: bool = False
    pool_max_connections: int = DEFAULT_POOL_MAX_CONNECTIONS["development"]
    pool_timeout_seconds: float = DEFAULT_POOL_TIMEOUT_SECONDS
    socket_timeout_seconds: float = DEFAULT_SOCKET_TIMEOUT_SECONDS
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
        return format_endpoint(self.host, self.port)

    def to_env(self) -> dict[str, str]:
        """The contract as string key/value pairs (Secret ``stringData`` or environment).

        Optional keys are left out when unset; the TLS keys only appear with TLS on.
        """
        env: dict[str, str] = {URL.key: self.url}
        for field in FIELDS[1:]:
            value = getattr(self, field.attr)
            if value is None or (field.kind is str and value == "" and not field.secret):
                continue
            if field in (TLS_CA_CERT, TLS_INSECURE_SKIP_VERIFY) and not (self.tls and value):
                continue
            if isinstance(value, bool):
                env[field.key] = "true" if value else "false"
            elif isinstance(value, float):
                env[field.key] = _number(value)
            else:
                env[field.key] = str(value)
        return env

    def __repr__(self) -> str:  # keep the password out of reprs, logs and tracebacks
        return (
            f"ConnectionContract(endpoint={self.endpoint!r}, db={self.db}, tls={self.tls}, "
            f"pool_max_connections={self.pool_max_connections})"
        )


def tls_options(tls: bool, ca_pem: str | None, insecure: bool) -> dict[str, Any]:
    """redis-py's TLS keyword arguments for a contract: verify the certificate and host name
    unless the contract says insecure; trust ``ca_pem`` when given, else the system store.

    ``ssl_cert_reqs`` is given by name ("required"/"none"), which redis-py accepts, so this
    module stays free of the ``ssl`` module.
    """
    if not tls:
        return {}
    kwargs: dict[str, Any] = {
        "ssl_cert_reqs": "none" if insecure else "required",
        "ssl_check_hostname": not insecure,
    }
    if ca_pem:
        kwargs["ssl_ca_data"] = ca_pem
    return kwargs


def markdown_table() -> str:
    """The contract as the README's table (a test keeps the README equal to this)."""
    rows = ["| key | meaning | default |", "|---|---|---|"]
    rows += [f"| `{f.key}` | {f.meaning} | {f.readme_default} |" for f in FIELDS]
    return "\n".join(rows) + "\n"
