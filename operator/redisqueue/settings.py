"""Client settings from the environment (and a local ``.env``), validated.

Resolution order for every contract variable ``REDIS_<X>``:

1. ``REDIS_<X>`` itself, when set (this is what an injected app Secret provides);
2. ``REDIS_DEV_<X>`` or ``REDIS_PROD_<X>``, chosen by ``REDIS_ENV``;
3. the contract default.

``.env`` is read without overriding variables that are already set in the process.
Errors name the variable and say what is accepted; they never echo a credential.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from redis.connection import URL_QUERY_ARGUMENT_PARSERS, parse_url

from . import contract

_SECRET_FIELDS = frozenset(f.attr for f in contract.FIELDS if f.secret)

# field name -> (variable suffix, what is accepted), the suffix appended to REDIS_,
# REDIS_DEV_ or REDIS_PROD_; read from the contract's one table.
_VARIABLES: dict[str, tuple[str, str]] = {
    f.attr: (f.key.removeprefix("REDIS_"), f.accepted) for f in contract.FIELDS
}
_VARIABLES["url"] = (
    "URL",
    "a redis://, rediss:// or unix:// URL, e.g. redis://localhost:6379/0",
)
_VARIABLES["host"] = ("HOST", "a host name or IP address")

_ENV_PREFIX = {"development": "REDIS_DEV_", "production": "REDIS_PROD_"}


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


class RedisSettings(BaseModel):
    """Validated connection settings: the connection contract as the client sees it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    environment: Literal["development", "production"] = "development"
    host: str = Field(default="localhost", min_length=1)
    port: int = Field(default=contract.DEFAULT_PORT, **contract.PORT.bounds())
    db: int = Field(default=contract.DEFAULT_DB, **contract.DB.bounds())
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    password_file: str | None = None
    tls: bool = False
    tls_ca_cert: str | None = Field(default=None, repr=False)
    tls_insecure_skip_verify: bool = False
    # the default is filled in by _pool_default from the environment
    pool_max_connections: int = Field(
        default=0, validate_default=False, **contract.POOL_MAX_CONNECTIONS.bounds()
    )
    pool_timeout_seconds: float = Field(
        default=contract.DEFAULT_POOL_TIMEOUT_SECONDS, **contract.POOL_TIMEOUT_SECONDS.bounds()
    )
    socket_timeout_seconds: float = Field(
        default=contract.DEFAULT_SOCKET_TIMEOUT_SECONDS,
        **contract.SOCKET_TIMEOUT_SECONDS.bounds(),
    )
    backoff_base_seconds: float = Field(
        default=contract.DEFAULT_BACKOFF_BASE_SECONDS, **contract.BACKOFF_BASE_SECONDS.bounds()
    )
    backoff_cap_seconds: float = Field(
        default=contract.DEFAULT_BACKOFF_CAP_SECONDS, **contract.BACKOFF_CAP_SECONDS.bounds()
    )
    retry_attempts: int = Field(
        default=contract.DEFAULT_RETRY_ATTEMPTS, **contract.RETRY_ATTEMPTS.bounds()
    )
    # Not contract keys: what a REDIS_URL can say beyond them.
    unix_socket_path: str | None = None  # from a unix:// URL; host and port are then unused
    url_options: dict[str, Any] = Field(default_factory=dict)  # redis-py query parameters

    @model_validator(mode="before")
    @classmethod
    def _pool_default(cls, data: Any) -> Any:
        # Not given: the environment decides (50 development, 100 production).
        if isinstance(data, dict) and data.get("pool_max_connections") is None:
            env = data.get("environment", "development")
            data = {
                **data,
                "pool_max_connections": contract.DEFAULT_POOL_MAX_CONNECTIONS.get(env, 50),
            }
        return data

    @model_validator(mode="after")
    def _check(self) -> RedisSettings:
        if self.backoff_cap_seconds < self.backoff_base_seconds:
            raise ValueError("backoff_cap_seconds below backoff_base_seconds")
        return self

    @property
    def endpoint(self) -> str:
        """host:port (or unix:path) without credentials, for logs, errors and metric labels."""
        if self.unix_socket_path:
            return f"unix:{self.unix_socket_path}"
        return self.to_contract().endpoint

    def read_password(self) -> str | None:
        """The password to authenticate with: the file's content when ``password_file`` is
        set (read now, so a rotated Secret is picked up), else ``password``.

        Raises ``OSError`` when the file cannot be read; the message names the file only.
        """
        if self.password_file is None:
            return self.password
        with open(self.password_file, encoding="utf-8") as handle:
            return handle.read().rstrip("\r\n")

    def to_contract(self) -> contract.ConnectionContract:
        """The same settings as the contract's key/value form."""
        return contract.ConnectionContract(
            **{f.attr: getattr(self, f.attr) for f in contract.FIELDS if f is not contract.URL}
        )


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise SettingsError(f"{name}: expected true or false, got {raw!r}")


# REDIS_URL query parameters that are contract settings under another name: the contract's
# field takes the value (an explicit REDIS_* variable still wins).
_QUERY_TO_FIELD = {
    "max_connections": "pool_max_connections",
    "timeout": "pool_timeout_seconds",
    "socket_timeout": "socket_timeout_seconds",
}
# Retries follow the contract (REDIS_RETRY_ATTEMPTS, the backoff keys); the URL cannot
# switch on a second retry policy.
_QUERY_REFUSED = frozenset({"retry_on_timeout", "retry_on_error"})
# Everything else redis-py's URL parser knows is passed to redis-py's connections.
_QUERY_PASSTHROUGH = frozenset(
    {*URL_QUERY_ARGUMENT_PARSERS, "client_name", "lib_name", "lib_version"}
) - {"db", *_QUERY_TO_FIELD, *_QUERY_REFUSED}


def _parse_url(name: str, raw: str) -> dict[str, Any]:
    """Split a Redis URL into settings fields with redis-py's own URL parser.

    Checks the parts first so that an error never echoes the URL (it may hold a password):
    urllib and redis-py quote the piece they could not read.
    """
    text = raw.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise SettingsError(
            f"{name}: not a valid URL ({_describe_url_error(exc)}); "
            "expected redis://[user:password@]host[:port][/db], rediss://... or unix:///path"
        ) from None
    if parts.scheme not in {"redis", "rediss", "unix"}:
        raise SettingsError(
            f"{name}: scheme must be redis://, rediss:// or unix://, got {parts.scheme or 'none'!r}"
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise SettingsError(f"{name}: a unix:// URL needs a socket path: unix:///path")
    elif not parts.hostname:
        raise SettingsError(f"{name}: the URL has no host; expected redis://host:port/db")
    path = parts.path.strip("/")
    if parts.scheme != "unix" and path and not path.isdigit():
        raise SettingsError(f"{name}: the database path must be a number from 0 to 15")
    query = parse_qs(parts.query)
    for key in query:
        if key in _QUERY_REFUSED:
            raise SettingsError(
                f"{name}: query parameter {key!r} is not accepted; retries follow "
                "REDIS_RETRY_ATTEMPTS and REDIS_BACKOFF_*_SECONDS"
            )
        if (
            key not in _QUERY_PASSTHROUGH
            and key not in _QUERY_TO_FIELD
            and key
            not in {
                "db",
                "password",
                "username",
            }
        ):
            raise SettingsError(
                f"{name}: unknown query parameter {key!r}; accepted: db, password, username, "
                + ", ".join(sorted({*_QUERY_PASSTHROUGH, *_QUERY_TO_FIELD}))
            )
    try:
        kwargs: dict[str, Any] = parse_url(text)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        # redis-py names the parameter it could not convert, never its value.
        raise SettingsError(f"{name}: {exc}") from None
    fields: dict[str, Any] = {"tls": parts.scheme == "rediss"}
    if parts.scheme == "unix":
        fields["unix_socket_path"] = kwargs.pop("path")
    else:
        fields["host"] = kwargs.pop("host")
    if port is not None:
        fields["port"] = kwargs.pop("port", port)
    if "db" in kwargs:
        fields["db"] = kwargs.pop("db")
    for secret in ("username", "password"):
        if secret in kwargs:
            fields[secret] = kwargs.pop(secret)
    kwargs.pop("connection_class", None)
    for key, field in _QUERY_TO_FIELD.items():
        if key in kwargs:
            fields[field] = kwargs.pop(key)
    if kwargs:
        fields["url_options"] = kwargs
    return fields


def _name_url_sources(
    var: str, url_fields: dict[str, Any], sources: dict[str, str], shown: dict[str, str]
) -> None:
    # Errors about a value from the URL's query name the parameter, and may show its value
    # (these three are never secrets).
    sources.update(dict.fromkeys(url_fields, var))
    for key, field in _QUERY_TO_FIELD.items():
        if field in url_fields:
            sources[field] = f"{var} query parameter {key}"
            shown[field] = str(url_fields[field])


def _describe_url_error(exc: ValueError) -> str:
    # urllib's messages quote the part it could not read, and with an unencoded password
    # ("redis://:p@ss:word@host") that part is a piece of the password: never echo it.
    if str(exc).startswith("Port"):
        return (
            "the port is not a number from 1 to 65535; a password with reserved characters "
            "(@ : / # ?) must be percent-encoded"
        )
    return "malformed"


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    env_file: str | Path | None = ".env",
) -> RedisSettings:
    """Read and validate settings from ``environ`` (default ``os.environ``) and ``env_file``.

    Variables already in ``environ`` win over ``.env``. Raises :class:`SettingsError`.
    """
    merged: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        merged.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    merged.update(os.environ if environ is None else environ)

    environment = merged.get("REDIS_ENV", "development").strip().lower() or "development"
    if environment not in _ENV_PREFIX:
        raise SettingsError(
            f"REDIS_ENV: expected development or production, got {merged['REDIS_ENV']!r}"
        )
    prefix = _ENV_PREFIX[environment]

    def lookup(suffix: str) -> tuple[str, str] | None:
        for var in (f"REDIS_{suffix}", f"{prefix}{suffix}"):
            if var in merged and merged[var].strip() != "":
                return var, merged[var]
        return None

    fields: dict[str, Any] = {"environment": environment}
    sources: dict[str, str] = {}
    shown: dict[str, str] = {}  # raw values that are safe to echo in an error
    url = lookup("URL")
    if url is not None:
        url_fields = _parse_url(*url)
        fields.update(url_fields)
        _name_url_sources(url[0], url_fields, sources, shown)
    elif environment == "production" and lookup("HOST") is None:
        raise SettingsError(
            "REDIS_URL: production needs an endpoint; set REDIS_URL or REDIS_HOST "
            "(or REDIS_PROD_URL / REDIS_PROD_HOST)"
        )

    for field, (suffix, _accepted) in _VARIABLES.items():
        if field == "url":
            continue
        found = lookup(suffix)
        if found is None:
            continue
        var, raw = found
        if field in fields and field in {"host", "port", "db", "tls", "unix_socket_path"}:
            # The URL already says where to connect; a second, separate answer would be
            # ambiguous, so the URL wins and the separate variable must agree or be absent.
            continue
        if field in {"username", "password"} and field in fields:
            continue  # credentials in the URL win over separate ones
        if field in {"tls", "tls_insecure_skip_verify"}:
            fields[field] = _parse_bool(var, raw)
        else:
            fields[field] = raw.strip() if field not in _SECRET_FIELDS else raw
        sources[field] = var
        if field not in _SECRET_FIELDS and field != "tls_ca_cert":
            shown[field] = raw

    try:
        settings = RedisSettings(**fields)
    except ValidationError as exc:
        raise SettingsError(_explain(exc, sources, shown, prefix)) from None
    if settings.password_file is not None:
        try:
            settings.read_password()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise SettingsError(
                f"{sources['password_file']}: cannot read the password file "
                f"{settings.password_file!r} ({reason}); expected the path of a readable "
                "file, such as a mounted Secret key"
            ) from None
    return settings


def _explain(
    exc: ValidationError, sources: dict[str, str], shown: dict[str, str], prefix: str
) -> str:
    messages = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = error["loc"]
        field = str(loc[0]) if loc else "backoff_cap_seconds"
        suffix, accepted = _VARIABLES.get(field, (field.upper(), "a valid value"))
        var = sources.get(field, f"REDIS_{suffix} (or {prefix}{suffix})")
        got = f", got {shown[field]!r}" if field in shown else ""
        messages.append(f"{var}: expected {accepted}{got}")
    return "; ".join(messages)
