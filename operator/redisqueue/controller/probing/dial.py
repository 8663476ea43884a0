"""Dialling exactly the address that was checked.

A host name is only a promise: what it resolves to may change between the check at
reconcile and the connection made minutes later (DNS rebinding), and redis-py resolves the
name itself each time it opens a socket. The connection classes here take that step over:
on every dial they resolve the name once, check every address it resolves to against the
operator's policy, refuse the dial when any of them is denied, and then connect to one of
the checked addresses (never to the name), with TLS still verifying the certificate against
the name. So no role and no reconnect can reach an address the policy refuses, however the
name is re-pointed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Mapping
from typing import Any

import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError

from ..resource.policy import IPAddress

#: ``(host, address) -> why the operator may not connect to address for host, or None``.
DialCheck = Callable[[str, IPAddress], str | None]


class DialRefused(RedisConnectionError):
    """The host resolves (now) to an address the operator's policy refuses; nothing was
    dialled. The message is the policy's, naming the host, never an address it resolved to
    beyond what the policy says."""


async def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses ``host`` resolves to now, in the resolver's order, each once."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    found: list[IPAddress] = []
    for info in infos:
        raw = str(info[4][0]).split("%", 1)[0]  # an IPv6 scope id is not part of the address
        address = ipaddress.ip_address(raw)
        if address not in found:
            found.append(address)
    if not found:
        raise OSError(f"{host} resolves to no address")
    return found


class _CheckedDial:
    """Resolve, check, then dial the checked address (mixed into redis-py's connections)."""

    # Set by redis-py's Connection.__init__ (via the class this is mixed into).
    host: str
    port: int
    socket_connect_timeout: float | None

    def __init__(self, *, dial_check: DialCheck, **kwargs: Any) -> None:
        self._dial_check = dial_check
        self._dial_to: IPAddress | None = None
        super().__init__(**kwargs)

    async def _connect(self) -> None:
        async with asyncio.timeout(self.socket_connect_timeout):
            addresses = await resolve(self.host, self.port)
        for address in addresses:
            problem = self._dial_check(self.host, address)
            if problem is not None:
                raise DialRefused(problem)
        failure: OSError | None = None
        for address in addresses:
            self._dial_to = address
            try:
                await super()._connect()  # type: ignore[misc]
                return
            except OSError as exc:
                failure = exc
            finally:
                self._dial_to = None
        assert failure is not None
        raise failure

    def _connection_arguments(self) -> Mapping[str, Any]:
        arguments = dict(super()._connection_arguments())  # type: ignore[misc]
        if self._dial_to is not None:
            arguments["host"] = str(self._dial_to)
            if arguments.get("ssl") is not None:
                # The certificate is still checked against the name the RedisQueue gave.
                arguments["server_hostname"] = self.host
        return arguments


class CheckedConnection(_CheckedDial, redis.asyncio.Connection):
    """A plain TCP connection that dials only checked addresses."""


class CheckedSSLConnection(_CheckedDial, redis.asyncio.SSLConnection):
    """A TLS connection that dials only checked addresses and verifies the name."""


def check_every_dial(client: redis.asyncio.Redis, dial_check: DialCheck) -> redis.asyncio.Redis:
    """Make every connection ``client``'s pool opens from now on resolve, check and dial
    through :class:`CheckedConnection` (or :class:`CheckedSSLConnection`). Call it right after
    creating the client, before its first command."""
    pool = client.connection_pool
    tls = issubclass(pool.connection_class, redis.asyncio.SSLConnection)
    pool.connection_class = CheckedSSLConnection if tls else CheckedConnection
    pool.connection_kwargs["dial_check"] = dial_check
    return client


__all__ = [
    "CheckedConnection",
    "CheckedSSLConnection",
    "DialCheck",
    "DialRefused",
    "check_every_dial",
    "resolve",
]
