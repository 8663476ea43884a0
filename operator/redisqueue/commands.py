"""Which commands the client sends again when their reply did not arrive.

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
again only if every command in it may be. ``tests/test_commands.py`` checks the names below
against a real server's ``COMMAND`` flags.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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
