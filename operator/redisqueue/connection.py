"""Connections that give every command its read deadline and decide what a lost reply allows.

Long on purpose: the read deadline and the rule on what may be sent again are one decision
per read, taken by the same mixins for the sync and the asyncio connection classes.

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

The same question holds for every command once it was sent: when its reply does not come
within the read deadline, or the connection drops before it, the command may have run. Only
commands that are safe to repeat (:mod:`redisqueue.commands`: reads, reports, connection
state, and the blocking moves above) are sent again; for the others, a pipeline or a
transaction that holds any of them included, the caller gets :class:`CommandMayHaveRun`.
:func:`reply_timeout` gives the calls made inside it a longer read deadline, for scripts and
other commands that take longer than ``REDIS_SOCKET_TIMEOUT_SECONDS``.

Only the read after the command was sent is in question: a command that could not be sent
(Redis down, connection refused, the handshake of a new connection) is retried on the
contract's backoff like any other.
"""

from __future__ import annotations

import asyncio
import builtins
import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Final

import redis
import redis.asyncio
from redis.credentials import CredentialProvider
from redis.exceptions import AuthenticationError, ConnectionError, TimeoutError

from .commands import Blocking, batch_repeatable, blocking, command_name, repeatable
from .settings import RedisSettings

_SENTINEL: Final[Any] = getattr(redis.connection, "SENTINEL", object())


class CommandMayHaveRun(ConnectionError):
    """A command that is not safe to repeat was sent, and its reply did not arrive.

    The server may have run it (a write, a script, a transaction), so it is not sent again:
    the caller decides, for example by checking the key it wrote. ``command`` names the
    command (or ``MULTI/EXEC``, ``PIPELINE``); its arguments never appear in the message.
    """

    def __init__(self, message: str, command: str = "") -> None:
        super().__init__(message)
        self.command = command


class BlockingCommandInterrupted(CommandMayHaveRun):
    """A blocking command that removes elements lost its connection after it was sent.

    It is not retried: the server may have removed an element whose reply was lost.
    BLMOVE into a processing list is the pattern that survives this (see the README).
    """


_REPLY_TIMEOUT: ContextVar[float | None] = ContextVar("redisqueue_reply_timeout", default=None)


@contextmanager
def reply_timeout(seconds: float) -> Iterator[None]:
    """Wait up to ``seconds`` for each reply of the commands sent inside this block.

    For scripts and other commands known to take longer than
    ``REDIS_SOCKET_TIMEOUT_SECONDS``; it applies to the current thread or asyncio task
    only. Blocking commands wait their block time plus ``seconds``. ::

        with reply_timeout(30):
            redis.eval(LONG_SCRIPT, 1, "phase1:jobs")
    """
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or seconds <= 0
    ):
        raise ValueError(
            f"reply_timeout: seconds must be a finite number of seconds above 0, got {seconds!r}"
        )
    token = _REPLY_TIMEOUT.set(float(seconds))
    try:
        yield
    finally:
        _REPLY_TIMEOUT.reset(token)


def _lost(exc: BaseException) -> bool:
    # redis-py reports a dropped or silent connection as these two classes exactly; their
    # subclasses (AuthenticationError, BusyLoadingError, ...) are replies: the server answered.
    return type(exc) in (ConnectionError, TimeoutError)


def _interrupted(command: Blocking, exc: BaseException, where: str) -> BlockingCommandInterrupted:
    what = "stopped answering" if isinstance(exc, TimeoutError) else "was lost"
    return BlockingCommandInterrupted(
        f"{command.command} to {where}: the connection {what} while the command was "
        "blocked; not retried, because the server may already have removed an element whose "
        "reply never arrived (BLMOVE into a processing list is retried safely)",
        command.command,
    )


def _may_have_run(
    command: str, exc: BaseException, where: str, deadline: float | None
) -> CommandMayHaveRun:
    if isinstance(exc, TimeoutError):
        waited = f" within {deadline:g} s" if deadline is not None else ""
        what = f"no reply came{waited}"
    else:
        what = "the connection was lost before the reply came"
    return CommandMayHaveRun(
        f"{command} to {where}: {what}; not sent again, because it may have run. Check its "
        "effect before repeating it. For commands that take longer, wrap the call in "
        "redisqueue.client.reply_timeout(seconds), or raise REDIS_SOCKET_TIMEOUT_SECONDS",
        command,
    )


class _Pending:
    """What the connection sent last and whether a lost reply allows sending it again."""

    __slots__ = ("block", "label", "repeatable")

    def __init__(self, label: str, repeatable: bool, block: Blocking | None) -> None:
        self.label = label
        self.repeatable = repeatable
        self.block = block


_NOTHING: Final = _Pending("", True, None)


def _pending_for(args: tuple[Any, ...], handshake: bool) -> _Pending:
    block = blocking(args)
    if handshake or repeatable(args):
        return _Pending("", True, block) if block is not None else _NOTHING
    return _Pending(command_name(args), False, block)


def _batch_label(commands: Sequence[Sequence[Any]]) -> _Pending:
    if batch_repeatable(commands):
        return _NOTHING
    first = command_name(commands[0]) if commands and commands[0] else ""
    return _Pending("MULTI/EXEC" if first == "MULTI" else "PIPELINE", False, None)


_UNKNOWN_BATCH: Final = _Pending("PIPELINE", False, None)


def _deadline(conn: object, pending: _Pending) -> float | None:
    """Seconds to wait for the reply, or None for redis-py's own socket timeout."""
    override = _REPLY_TIMEOUT.get()
    if pending.block is not None:
        base = override if override is not None else getattr(conn, "socket_timeout", None)
        return pending.block.deadline(base)
    return override


class _Batches:
    """What the sync and the asyncio mixins share: the state of the command in flight, and
    the label of a pipeline's batch, taken when it is packed."""

    _pending: _Pending = _NOTHING
    _next_batch: _Pending = _UNKNOWN_BATCH
    _sending: int = 0
    _handshake: bool = False

    def pack_commands(self, commands: Iterable[Iterable[Any]]) -> list[bytes]:
        # A pipeline packs its commands just before sending them as one batch.
        batch = [tuple(args) for args in commands]
        self._next_batch = _batch_label(batch)
        return super().pack_commands(batch)  # type: ignore[misc,no-any-return]


class _SyncDeadlines(_Batches):
    """Mixed into redis-py's sync connection classes (plain TCP, TLS, unix socket)."""

    def on_connect_check_health(self, *args: Any, **kwargs: Any) -> None:
        # The handshake of a new connection (AUTH, HELLO, SELECT, ...) is part of connecting.
        self._handshake = True
        try:
            super().on_connect_check_health(*args, **kwargs)  # type: ignore[misc]
        finally:
            self._handshake = False

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if self._sending:
            super().send_packed_command(command, check_health)  # type: ignore[misc]
            return
        batch, self._next_batch = self._next_batch, _UNKNOWN_BATCH
        self._pending = _NOTHING  # until it is written, a failure only means "not sent"
        super().send_packed_command(command, check_health)  # type: ignore[misc]
        self._pending = batch

    def send_command(self, *args: Any, **kwargs: Any) -> None:
        pending = _pending_for(args, self._handshake)
        self._pending = _NOTHING
        self._sending += 1
        try:
            # A health-check PING sent first reads its own reply before this is set.
            super().send_command(*args, **kwargs)  # type: ignore[misc]
        finally:
            self._sending -= 1
        self._pending = pending

    def read_response(self, disable_decoding: bool = False, **kwargs: Any) -> Any:
        pending = self._pending
        if pending.block is not None:
            self._pending = _Pending(pending.label, pending.repeatable, None)
        deadline: float | None = None
        if kwargs.get("timeout", _SENTINEL) is _SENTINEL:
            deadline = _deadline(self, pending)
            if deadline is not None:
                kwargs["timeout"] = None if math.isinf(deadline) else deadline
        try:
            return super().read_response(disable_decoding, **kwargs)  # type: ignore[misc]
        except (ConnectionError, TimeoutError) as exc:
            replaced = _classified(self, pending, exc, deadline)
            if replaced is exc:
                raise
            raise replaced from exc


class _AsyncDeadlines(_Batches):
    """Mixed into redis-py's asyncio connection classes."""

    async def on_connect_check_health(self, *args: Any, **kwargs: Any) -> None:
        self._handshake = True
        try:
            await super().on_connect_check_health(*args, **kwargs)  # type: ignore[misc]
        finally:
            self._handshake = False

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if self._sending:
            await super().send_packed_command(command, check_health)  # type: ignore[misc]
            return
        batch, self._next_batch = self._next_batch, _UNKNOWN_BATCH
        self._pending = _NOTHING
        await super().send_packed_command(command, check_health)  # type: ignore[misc]
        self._pending = batch

    async def send_command(self, *args: Any, **kwargs: Any) -> None:
        pending = _pending_for(args, self._handshake)
        self._pending = _NOTHING
        self._sending += 1
        try:
            await super().send_command(*args, **kwargs)  # type: ignore[misc]
        finally:
            self._sending -= 1
        self._pending = pending

    async def read_response(
        self,
        disable_decoding: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 - redis-py names it so
        **kwargs: Any,
    ) -> Any:
        pending = self._pending
        if pending.block is not None:
            self._pending = _Pending(pending.label, pending.repeatable, None)
        deadline: float | None = None
        try:
            if timeout is not None:
                return await super().read_response(disable_decoding, timeout, **kwargs)  # type: ignore[misc]
            deadline = _deadline(self, pending)
            if deadline is None:
                return await super().read_response(disable_decoding, None, **kwargs)  # type: ignore[misc]
            if math.isinf(deadline):
                return await super().read_response(disable_decoding, math.inf, **kwargs)  # type: ignore[misc]
            # Not redis-py's own timeout argument: on expiry it returns None and keeps the
            # connection, whose late reply the next command would then read as its own.
            try:
                async with asyncio.timeout(deadline):
                    return await super().read_response(  # type: ignore[misc]
                        disable_decoding, math.inf, **kwargs
                    )
            except builtins.TimeoutError:  # the cancelled read closed the connection
                raise TimeoutError(f"Timeout reading from {_where(self)}") from None
        except (ConnectionError, TimeoutError) as exc:
            replaced = _classified(self, pending, exc, deadline)
            if replaced is exc:
                raise
            raise replaced from exc


def _classified(
    conn: object, pending: _Pending, exc: ConnectionError | TimeoutError, deadline: float | None
) -> ConnectionError | TimeoutError:
    """The error to raise for a failed read: as it is, unless the command may have run."""
    if not _lost(exc):
        return exc
    if pending.block is not None and not pending.block.retry_safe:
        return _interrupted(pending.block, exc, _where(conn))
    if not pending.repeatable:
        if deadline is None:
            deadline = getattr(conn, "socket_timeout", None)
        return _may_have_run(pending.label, exc, _where(conn), deadline)
    return exc


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
