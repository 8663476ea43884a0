"""A RESP reader that refuses oversized or malformed replies before buffering them.

The probe talks to endpoints a tenant chose. redis-py's own parser trusts the server: a
``$160000000`` header makes it wait for, and keep, 160 MB, and a malformed line surfaces as a
``ValueError`` (or an ``InvalidResponse`` quoting the raw bytes). Every tenant shares one
operator process, so one endpoint's answer must not decide how much memory it uses.

:class:`BoundedRESP2Parser` checks each length header against :data:`MAX_BULK_BYTES` and the
running size of a reply against :data:`MAX_REPLY_BYTES` *before* reading the payload, and
turns every protocol fault into :class:`ReplyRejected`, whose message names the limit or the
fault and never carries reply bytes. Lines (status, error and length headers) are read through
the connection's stream reader, whose buffer limit (64 KiB) already bounds them; overrunning it
is reported the same way.

Pure plumbing over redis-py: no Kubernetes, no metrics.
"""

from __future__ import annotations

from typing import Any, Final

import redis.asyncio
from redis._parsers.resp2 import _AsyncRESP2Parser
from redis.exceptions import InvalidResponse
from redis.maint_notifications import MaintNotificationsConfig

#: Longest single bulk string the probe accepts. PING, INFO, LLEN, XLEN and XPENDING answer in
#: a few KiB; INFO of a busy server stays well under this.
MAX_BULK_BYTES: Final = 32 * 1024
#: Most bytes one reply (with nested arrays) may take on the wire.
MAX_REPLY_BYTES: Final = 64 * 1024


class ReplyRejected(InvalidResponse):
    """A reply the probe refused to read; the message says why, never what the reply held."""


class BoundedRESP2Parser(_AsyncRESP2Parser):
    """:class:`_AsyncRESP2Parser` with limits on bulk length and on total reply size."""

    max_bulk_bytes: int = MAX_BULK_BYTES
    max_reply_bytes: int = MAX_REPLY_BYTES

    def __init__(self, socket_read_size: int) -> None:
        super().__init__(socket_read_size)
        self._reply_bytes = 0

    async def read_response(self, disable_decoding: bool = False) -> Any:
        self._reply_bytes = 0
        try:
            return await super().read_response(disable_decoding=disable_decoding)
        except (ValueError, UnicodeDecodeError, IndexError) as exc:
            # int() of a garbage length, a non-UTF-8 status line, and the stream reader's
            # line-limit overrun all arrive here; none of their text is kept.
            self._discard()
            raise ReplyRejected(f"malformed reply ({type(exc).__name__})") from None

    def _discard(self) -> None:
        # What _clear() does (redis-py leaves it untyped): drop what was read of this reply.
        self._buffer = b""
        self._chunks.clear()

    def _count(self, size: int) -> None:
        self._reply_bytes += size
        if self._reply_bytes > self.max_reply_bytes:
            self._discard()
            raise ReplyRejected(f"reply larger than {self.max_reply_bytes} bytes")

    async def _read(self, length: int) -> bytes:
        if length < 0:
            raise ReplyRejected("negative bulk length")
        if length > self.max_bulk_bytes:
            self._discard()
            raise ReplyRejected(
                f"bulk reply of {length} bytes exceeds the limit of {self.max_bulk_bytes}"
            )
        self._count(length + 2)
        data: bytes = await super()._read(length)
        return data

    async def _readline(self) -> bytes:
        line: bytes = await super()._readline()
        self._count(len(line) + 2)
        return line


def limit_replies(client: redis.asyncio.Redis) -> redis.asyncio.Redis:
    """Make every connection ``client``'s pool opens from now on read through the bounded parser.

    Call it right after creating the client, before its first command. Works for plain and TLS
    connections alike (both take ``parser_class``). The client must speak RESP2
    (``protocol=2``): with RESP3 redis-py swaps in its own parser after ``HELLO``.
    """
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("protocol") not in (2, "2"):
        raise ValueError("limit_replies needs a client created with protocol=2")
    kwargs["parser_class"] = BoundedRESP2Parser
    # Maintenance notifications need a RESP3 or hiredis parser; the probe speaks RESP2.
    kwargs["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
    return client


__all__ = [
    "MAX_BULK_BYTES",
    "MAX_REPLY_BYTES",
    "BoundedRESP2Parser",
    "ReplyRejected",
    "limit_replies",
]
