"""The users of a running provisioned Redis, changed as its ``redisqueue-admin``.

The start-up script makes the users from the mounted Secret files (:mod:`..objects.acl`);
from then on the operator changes them on the running Redis, with no restart: it adds the
apps' new password next to the old one, later removes the old one, and keeps the probe's
key rules equal to ``spec.queues``. Every change goes through ACL SETUSER with password
hashes, so no password travels in a command.

Only the leader does this. Errors become :class:`UsersUnavailable`, whose message names the
endpoint and the failure, never a password.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from redisqueue.contract import format_endpoint

from ..objects.acl import ADMIN_PASSWORD_KEY, ADMIN_USER, PROBE_USER
from ..probing.bounded import BoundedRESP2Parser, limit_replies
from ..readside.contracts import decode_secret_value
from ..resource.errors import SetupError
from ..resource.names import QueueNames
from ..resource.status import Reason

#: How long one admin command may take.
ADMIN_TIMEOUT_SECONDS: Final = 5.0


class UsersUnavailable(Exception):
    """The users of a Redis could not be read or changed (the message holds no secret)."""


class _AdminReplies(BoundedRESP2Parser):
    # CLIENT LIST of a busy Redis is one bulk string of a few hundred bytes per connection.
    max_bulk_bytes = 4 * 1024 * 1024
    max_reply_bytes = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class User:
    """What ACL GETUSER says of one user: its password hashes and key rules."""

    passwords: frozenset[str]
    keys: str


def admin_password(secret: Mapping[str, Any], names: QueueNames) -> str:
    """The admin password from the Secret ``<name>-redis-acl`` (a :class:`SetupError` when
    it holds none)."""
    password = decode_secret_value(secret, ADMIN_PASSWORD_KEY)
    if not password:
        raise SetupError(
            Reason.SECRET_KEY_NOT_FOUND,
            f"Secret {names.namespace}/{names.acl_secret} has no {ADMIN_PASSWORD_KEY!r}",
        )
    return password


class RedisUsers:
    """One short-lived admin connection to a provisioned Redis (close it after use)."""

    def __init__(self, host: str, port: int, password: str) -> None:
        self.endpoint = format_endpoint(host, port)
        self._client = redis.asyncio.Redis(
            host=host,
            port=port,
            username=ADMIN_USER,
            password=password,
            socket_timeout=ADMIN_TIMEOUT_SECONDS,
            socket_connect_timeout=ADMIN_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 0),
            max_connections=1,
            protocol=2,
            decode_responses=True,
        )
        limit_replies(self._client)
        self._client.connection_pool.connection_kwargs["parser_class"] = _AdminReplies

    async def close(self) -> None:
        """Close the connection."""
        await self._client.aclose()

    async def _call(self, *args: str) -> Any:
        try:
            return await self._client.execute_command(*args)  # type: ignore[no-untyped-call]
        except RedisError as exc:
            # redis-py's messages carry the server's words (NOPERM, WRONGPASS, ...) or a
            # socket error, never the password of the connection.
            raise UsersUnavailable(
                f"redis at {self.endpoint}: {args[0]} {args[1]} failed "
                f"({type(exc).__name__}: {str(exc)[:200]})"
            ) from None

    async def user(self, name: str) -> User:
        """The password hashes and key rules of user ``name``."""
        reply = await self._call("ACL", "GETUSER", name)
        if isinstance(reply, list):  # RESP2: field, value, field, value, ...
            reply = dict(zip(reply[::2], reply[1::2], strict=False))
        if not isinstance(reply, dict):
            raise UsersUnavailable(f"redis at {self.endpoint}: no user {name!r}")
        passwords = reply.get("passwords") or []
        keys = reply.get("keys") or ""
        return User(frozenset(str(p) for p in passwords), str(keys))

    async def add_password(self, name: str, digest: str) -> None:
        """Accept the password whose SHA-256 is ``digest`` for ``name`` (the others stay)."""
        await self._call("ACL", "SETUSER", name, f"#{digest}")

    async def remove_passwords(self, name: str, digests: Iterable[str]) -> None:
        """Stop accepting the passwords with these hashes for ``name``. Connections that
        authenticated with one stay authenticated; new ones are refused."""
        removals = [f"!{digest}" for digest in sorted(digests)]
        if removals:
            await self._call("ACL", "SETUSER", name, *removals)

    async def set_probe_keys(self, rules: Collection[str]) -> None:
        """The probe may read exactly the keys ``rules`` name (``%R~<pattern>``)."""
        await self._call("ACL", "SETUSER", PROBE_USER, "resetkeys", *rules)

    async def connections_older_than(self, name: str, seconds: float) -> int:
        """How many connections of user ``name`` have been open longer than ``seconds``."""
        reply = await self._call("CLIENT", "LIST")
        count = 0
        for line in str(reply).splitlines():
            fields = dict(part.split("=", 1) for part in line.split(" ") if "=" in part)
            if fields.get("user") != name:
                continue
            try:
                age = int(fields.get("age", "0"))
            except ValueError:
                continue
            if age > seconds:
                count += 1
        return count
