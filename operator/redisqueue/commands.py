"""Which commands block and for how long, and which the client sends again when their reply
did not arrive.

A command whose reply was lost (the connection dropped, or no reply came within the read
deadline) may have run on the server. Sending it again is only right when running it twice
changes nothing that running it once did not:

* reads: the commands Redis itself flags ``readonly`` (``COMMAND INFO``), such as GET,
  LRANGE, XRANGE, XPENDING, EVAL_RO;
* reports that touch no key: PING, ECHO, TIME, INFO, CLIENT LIST, CONFIG GET, ...;
* connection state, which a retry sets up again on its new connection anyway: AUTH, HELLO,
  SELECT, CLIENT SETNAME/SETINFO, WATCH, UNWATCH, the (un)subscribe commands;
* the blocking moves whose element, if the reply was lost, is not lost: BLMOVE and
  BRPOPLPUSH (it sits in the destination list), XREADGROUP without NOACK (it stays in the
  group's pending list), and WAIT/WAITAOF (they only count replicas).

Everything else (writes, scripts that may write, the pops) is not sent again; the caller
gets :class:`~redisqueue.connection.CommandMayHaveRun`. A pipeline or transaction is sent
again only if every command in it may be. ``tests/library/test_commands.py`` checks the names below
against a real server's ``COMMAND`` flags.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

#: Flagged ``readonly`` by Redis (7.0 and later). Subcommands are written ``CONTAINER|SUB``,
#: as ``COMMAND`` names them.
READS: Final = frozenset(
    {
        *("BITCOUNT", "BITFIELD_RO", "BITPOS", "DBSIZE", "DUMP", "EXISTS", "EXPIRETIME"),
        *("EVAL_RO", "EVALSHA_RO", "FCALL_RO", "KEYS", "LCS", "PEXPIRETIME", "PFCOUNT"),
        *("PTTL", "RANDOMKEY", "SCAN", "SORT_RO", "STRLEN", "SUBSTR", "TOUCH", "TTL", "TYPE"),
        *("GET", "GETBIT", "GETRANGE", "MGET"),
        *("GEODIST", "GEOHASH", "GEOPOS", "GEORADIUSBYMEMBER_RO", "GEORADIUS_RO", "GEOSEARCH"),
        *("HEXISTS", "HGET", "HGETALL", "HKEYS", "HLEN", "HMGET", "HRANDFIELD", "HSCAN"),
        *("HSTRLEN", "HVALS"),
        *("LINDEX", "LLEN", "LPOS", "LRANGE"),
        *("SCARD", "SDIFF", "SINTER", "SINTERCARD", "SISMEMBER", "SMEMBERS", "SMISMEMBER"),
        *("SRANDMEMBER", "SSCAN", "SUNION"),
        *("ZCARD", "ZCOUNT", "ZDIFF", "ZINTER", "ZINTERCARD", "ZLEXCOUNT", "ZMSCORE"),
        *("ZRANDMEMBER", "ZRANGE", "ZRANGEBYLEX", "ZRANGEBYSCORE", "ZRANK", "ZREVRANGE"),
        *("ZREVRANGEBYLEX", "ZREVRANGEBYSCORE", "ZREVRANK", "ZSCAN", "ZSCORE", "ZUNION"),
        *("XINFO|CONSUMERS", "XINFO|GROUPS", "XINFO|STREAM", "XLEN", "XPENDING", "XRANGE"),
        *("XREAD", "XREVRANGE"),
        *("MEMORY|USAGE", "OBJECT|ENCODING", "OBJECT|FREQ", "OBJECT|IDLETIME"),
        "OBJECT|REFCOUNT",
    }
)

#: Not flagged ``write`` by Redis, touch no key and change nothing a second run would see.
REPORTS: Final = frozenset(
    {
        *("PING", "ECHO", "TIME", "INFO", "LASTSAVE", "ROLE", "LOLWUT"),
        *("CLIENT|ID", "CLIENT|INFO", "CLIENT|LIST", "CLIENT|GETNAME", "CONFIG|GET"),
        *("COMMAND", "COMMAND|COUNT", "COMMAND|DOCS", "COMMAND|INFO", "COMMAND|LIST"),
        *("COMMAND|GETKEYS", "COMMAND|GETKEYSANDFLAGS", "MEMORY|STATS", "ACL|WHOAMI"),
        *("SLOWLOG|GET", "SLOWLOG|LEN", "LATENCY|LATEST", "LATENCY|HISTORY"),
        *("SCRIPT|EXISTS", "SCRIPT|LOAD", "FUNCTION|LIST", "FUNCTION|DUMP", "FUNCTION|STATS"),
        *("PUBSUB|CHANNELS", "PUBSUB|NUMPAT", "PUBSUB|NUMSUB", "PUBSUB|SHARDCHANNELS"),
        "PUBSUB|SHARDNUMSUB",
    }
)

#: State of the connection itself; a retry runs on a new connection that needs it anyway.
CONNECTION_STATE: Final = frozenset(
    {
        *("AUTH", "HELLO", "SELECT", "CLIENT|SETNAME", "CLIENT|SETINFO", "READONLY"),
        *("READWRITE", "WATCH", "UNWATCH", "SUBSCRIBE", "UNSUBSCRIBE", "PSUBSCRIBE"),
        *("PUNSUBSCRIBE", "SSUBSCRIBE", "SUNSUBSCRIBE"),
    }
)

#: Blocking commands that move or count rather than remove (see :mod:`redisqueue.connection`).
SAFE_BLOCKING: Final = frozenset({"BLMOVE", "BRPOPLPUSH", "WAIT", "WAITAOF"})

#: A transaction's brackets: the batch is as safe as the commands between them.
_BRACKETS: Final = frozenset({"MULTI", "EXEC", "DISCARD"})

REPEATABLE: Final = READS | REPORTS | CONNECTION_STATE | SAFE_BLOCKING
_CONTAINERS: Final = frozenset(name.split("|", 1)[0] for name in REPEATABLE if "|" in name)


def _word(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace").upper()
    return str(value).upper()


def command_name(args: Sequence[Any]) -> str:
    """The command's name as ``COMMAND`` spells it: ``GET``, ``XINFO|STREAM``, ``CLIENT|LIST``.

    redis-py may send a subcommand as one first argument (``"XINFO STREAM"``).
    """
    words = _word(args[0]).split()
    if not words:
        return ""
    name = words[0]
    if name in _CONTAINERS:
        if len(words) > 1:
            return f"{name}|{words[1]}"
        if len(args) > 1:
            return f"{name}|{_word(args[1])}"
    return name


def repeatable(args: Sequence[Any]) -> bool:
    """Whether ``args`` (a command as sent) may be sent again after its reply was lost.

    Called for every command: a plain read costs one set lookup.
    """
    first = args[0]
    if first in REPEATABLE:
        return True
    name = command_name(args)
    if name in REPEATABLE:
        return True
    if name == "XREADGROUP":
        # XREADGROUP GROUP g c [COUNT n] [BLOCK ms] [NOACK] STREAMS ...: without NOACK the
        # entries a lost reply carried stay pending for the consumer (XPENDING, XAUTOCLAIM).
        for word in args[4:]:
            text = _word(word)
            if text == "STREAMS":
                return True
            if text == "NOACK":
                return False
        return True
    return False


def batch_repeatable(commands: Iterable[Sequence[Any]]) -> bool:
    """Whether a pipeline or transaction may be sent again: only if all its commands may."""
    return all(command_name(args) in _BRACKETS or repeatable(args) for args in commands if args)


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
