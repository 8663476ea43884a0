"""Connections that give every blocking command the read deadline Redis defines for it.

A plain command's reply must come within ``REDIS_SOCKET_TIMEOUT_SECONDS``, so a half-open
connection fails fast. A blocking command (the B*POP family, BLMOVE, BRPOPLPUSH, BLMPOP,
BZMPOP, XREAD/XREADGROUP with BLOCK, WAIT, WAITAOF) waits on the server for its own block
time, so its reply may come only then: its deadline is its block time plus the socket
timeout, and a block time of 0 waits for ever (TCP keepalive still notices a dead peer).
An empty result (nil) is the command's normal answer and comes back as such.

When the connection is lost while a blocking command waits, whether sending it again is
safe depends on the command:

* retried (nothing can be lost or duplicated): BLMOVE and BRPOPLPUSH (an element whose reply
  was lost sits in the destination list, the processing list of the reliable-queue
  pattern), XREAD (reads only), XREADGROUP without NOACK (delivered entries stay in the
  group's pending list, where XAUTOCLAIM finds them), WAIT and WAITAOF (they only count);
* not retried: BLPOP, BRPOP, BZPOPMIN, BZPOPMAX, BLMPOP, BZMPOP and XREADGROUP with NOACK.
  The server may have removed an element whose reply never arrived; sending the command
  again would hide that. They raise :class:`BlockingCommandInterrupted` (a redis-py
  ``ConnectionError``) and the caller decides.

Only the read after the command was sent is in question: a command that could not be sent
(Redis down, connection refused) is retried on the contract's backoff like any other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import redis
import redis.asyncio
from redis.credentials import CredentialProvider
from redis.exceptions import AuthenticationError, ConnectionError, TimeoutError

from .settings import RedisSettings

_SENTINEL: Final[Any] = getattr(redis.connection, "SENTINEL", object())


class BlockingCommandInterrupted(ConnectionError):
    """A blocking command that removes elements lost its connection after it was sent.

    It is not retried: the server may have removed an element whose reply was lost.
    BLMOVE into a processing list is the pattern that survives this (see the README).
    """


@dataclass(frozen=True, slots=True)
class Blocking:
    """What a blocking command asked for: its name, block time and whether resending is safe."""

    command: str
    seconds: float  # 0: wait for ever
    retry_safe: bool

    def deadline(self, socket_timeout: float | None) -> float:
        """Seconds to wait for the reply: the block time plus the socket timeout; inf for 0."""
        if self.seconds <= 0:
            return math.inf
        return self.seconds + (socket_timeout or 0.0)


# command -> (position of the timeout argument, its unit in seconds, retry-safe)
_TIMEOUT_AT: Final[dict[str, tuple[int, float, bool]]] = {
    "BLPOP": (-1, 1.0, False),
    "BRPOP": (-1, 1.0, False),
    "BZPOPMIN": (-1, 1.0, False),
    "BZPOPMAX": (-1, 1.0, False),
    "BLMPOP": (1, 1.0, False),
    "BZMPOP": (1, 1.0, False),
    "BRPOPLPUSH": (-1, 1.0, True),
    "BLMOVE": (-1, 1.0, True),
    "WAIT": (2, 0.001, True),
    "WAITAOF": (3, 0.001, True),
}
_STREAM_READS: Final = frozenset({"XREAD", "XREADGROUP"})
_OPTIONS_WITH_VALUE: Final = frozenset({"COUNT", "BLOCK", "CLAIM"})
_KNOWN: Final = frozenset({*_TIMEOUT_AT, *_STREAM_READS})


def _word(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace").upper()
    return str(value).upper()


def blocking(args: tuple[Any, ...]) -> Blocking | None:
    """The blocking part of a command as sent (``("BLPOP", "q", 5)``), or None.

    Called for every command: a non-blocking one costs one set lookup.
    """
    name = args[0]
    if name not in _KNOWN:
        if not isinstance(name, str | bytes) or (isinstance(name, str) and name.isupper()):
            return None
        name = _word(name)
        if name not in _KNOWN:
            return None
    try:
        if name in _STREAM_READS:
            return _stream_read(name, args)
        position, unit, retry_safe = _TIMEOUT_AT[name]
        return Blocking(name, float(_word(args[position])) * unit, retry_safe)
    except (IndexError, ValueError):
        return None  # malformed: Redis answers with an error at once


def _stream_read(name: str, args: tuple[Any, ...]) -> Blocking | None:
    # XREAD [COUNT n] [BLOCK ms] STREAMS ...; XREADGROUP GROUP g c [COUNT n] [BLOCK ms] [NOACK]
    # [CLAIM ms] STREAMS ...: only words before STREAMS are options.
    i = 4 if name == "XREADGROUP" else 1
    block_ms: float | None = None
    noack = False
    while i < len(args):
        word = _word(args[i])
        if word == "STREAMS":
            break
        if word == "BLOCK":
            block_ms = float(_word(args[i + 1]))
        elif word == "NOACK":
            noack = True
        i += 2 if word in _OPTIONS_WITH_VALUE else 1
    if block_ms is None:
        return None
    return Blocking(name, block_ms / 1000.0, retry_safe=not noack)


def _interrupted(command: Blocking, exc: BaseException, where: str) -> BlockingCommandInterrupted:
    what = "stopped answering" if isinstance(exc, TimeoutError) else "was lost"
    return BlockingCommandInterrupted(
        f"{command.command} to {where}: the connection {what} while the command was "
        "blocked; not retried, because the server may already have removed an element whose "
        "reply never arrived (BLMOVE into a processing list is retried safely)"
    )


class _SyncDeadlines:
    """Mixed into redis-py's sync connection classes (plain TCP, TLS, unix socket)."""

    _pending_block: Blocking | None = None

    def send_command(self, *args: Any, **kwargs: Any) -> None:
        block = blocking(args)
        # Set after sending: a health-check PING sent first reads its own reply.
        super().send_command(*args, **kwargs)  # type: ignore[misc]
        self._pending_block = block

    def read_response(self, disable_decoding: bool = False, **kwargs: Any) -> Any:
        block, self._pending_block = self._pending_block, None
        if block is None or kwargs.get("timeout", _SENTINEL) is not _SENTINEL:
            return super().read_response(disable_decoding, **kwargs)  # type: ignore[misc]
        deadline = block.deadline(getattr(self, "socket_timeout", None))
        kwargs["timeout"] = None if math.isinf(deadline) else deadline
        try:
            return super().read_response(disable_decoding, **kwargs)  # type: ignore[misc]
        except (ConnectionError, TimeoutError) as exc:
            if block.retry_safe or isinstance(exc, BlockingCommandInterrupted):
                raise
            raise _interrupted(block, exc, _where(self)) from exc


class _AsyncDeadlines:
    """Mixed into redis-py's asyncio connection classes."""

    _pending_block: Blocking | None = None

    async def send_command(self, *args: Any, **kwargs: Any) -> None:
        block = blocking(args)
        await super().send_command(*args, **kwargs)  # type: ignore[misc]
        self._pending_block = block

    async def read_response(
        self,
        disable_decoding: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 - redis-py names it so
        **kwargs: Any,
    ) -> Any:
        block, self._pending_block = self._pending_block, None
        if block is None or timeout is not None:
            return await super().read_response(disable_decoding, timeout, **kwargs)  # type: ignore[misc]
        deadline = block.deadline(getattr(self, "socket_timeout", None))
        try:
            return await super().read_response(disable_decoding, deadline, **kwargs)  # type: ignore[misc]
        except (ConnectionError, TimeoutError) as exc:
            if block.retry_safe or isinstance(exc, BlockingCommandInterrupted):
                raise
            raise _interrupted(block, exc, _where(self)) from exc


class PasswordFileCredentials(CredentialProvider):
    """Credentials whose password is read from a file at every connect.

    A Kubernetes Secret mounted as a volume is updated in place when it changes, so a
    rotated password is used by the next connection without restarting the app.
    """

    def __init__(self, settings: RedisSettings) -> None:
        self._settings = settings

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        try:
            password = self._settings.read_password() or ""
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise AuthenticationError(
                f"REDIS_PASSWORD_FILE {self._settings.password_file!r}: cannot read ({reason})"
            ) from None
        username = self._settings.username
        return (username, password) if username else (password,)

    async def get_credentials_async(self) -> tuple[str] | tuple[str, str]:
        return self.get_credentials()


def _where(conn: object) -> str:
    path = getattr(conn, "path", None)
    if path:
        return f"unix:{path}"
    return f"{getattr(conn, 'host', '?')}:{getattr(conn, 'port', '?')}"


class Connection(_SyncDeadlines, redis.Connection):
    """redis-py's TCP connection with per-command read deadlines."""


class SSLConnection(_SyncDeadlines, redis.SSLConnection):
    """redis-py's TLS connection with per-command read deadlines."""


class UnixDomainSocketConnection(_SyncDeadlines, redis.UnixDomainSocketConnection):
    """redis-py's unix-socket connection with per-command read deadlines."""


class AsyncConnection(_AsyncDeadlines, redis.asyncio.Connection):
    """redis-py's asyncio TCP connection with per-command read deadlines."""


class AsyncSSLConnection(_AsyncDeadlines, redis.asyncio.SSLConnection):
    """redis-py's asyncio TLS connection with per-command read deadlines."""


class AsyncUnixDomainSocketConnection(_AsyncDeadlines, redis.asyncio.UnixDomainSocketConnection):
    """redis-py's asyncio unix-socket connection with per-command read deadlines."""
