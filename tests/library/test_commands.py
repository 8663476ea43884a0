"""Which commands the client sends again after a lost reply, checked against a real server's
own flags (``COMMAND``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from harness.redis_server import RedisServer
from redisqueue.commands import (
    CONNECTION_STATE,
    READS,
    REPEATABLE,
    REPORTS,
    SAFE_BLOCKING,
    batch_repeatable,
    blocking,
    command_name,
    repeatable,
)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("GET", "k"), True),
        ((b"get", b"k"), True),
        (("XINFO STREAM", "s"), True),
        ((b"OBJECT", b"ENCODING", b"k"), True),
        (("EVAL_RO", "return 1", 0), True),
        (("PING",), True),
        (("CLIENT SETNAME", "worker"), True),
        (("BLMOVE", "q", "p", "RIGHT", "LEFT", 0), True),
        (("XREADGROUP", "GROUP", "g", "c", "COUNT", 1, "STREAMS", "s", ">"), True),
        (("XREADGROUP", "GROUP", "g", "c", "BLOCK", 0, "STREAMS", "s", ">"), True),
        (("XREADGROUP", "GROUP", "g", "c", "NOACK", "STREAMS", "s", ">"), False),
        (("RPUSH", "q", "job"), False),
        (("SET", "k", "v", "NX"), False),
        (("EVAL", "return 1", 0), False),
        (("EVALSHA", "abc", 0), False),
        (("LPOP", "q"), False),
        (("BLPOP", "q", 0), False),
        (("CLIENT", "KILL", "ID", 1), False),
        (("CONFIG", "SET", "x", "y"), False),
        (("XADD", "s", "*", "f", "v"), False),
        (("MULTI",), False),
    ],
)
def test_only_commands_safe_to_repeat_are_repeatable(args: tuple[Any, ...], expected: bool) -> None:
    assert repeatable(args) is expected


def test_a_batch_is_repeatable_only_if_every_command_in_it_is() -> None:
    assert batch_repeatable([("MULTI",), ("GET", "a"), ("LLEN", "q"), ("EXEC",)])
    assert batch_repeatable([("GET", "a"), ("XPENDING", "s", "g")])
    assert not batch_repeatable([("MULTI",), ("GET", "a"), ("RPUSH", "q", "j"), ("EXEC",)])
    assert not batch_repeatable([("INCR", "n")])


def test_command_names_follow_redis_spelling_of_subcommands() -> None:
    assert command_name(("XINFO STREAM", "s")) == "XINFO|STREAM"
    assert command_name((b"client", b"list")) == "CLIENT|LIST"
    assert command_name(("COMMAND",)) == "COMMAND"
    assert command_name(("rpush", "q", "x")) == "RPUSH"


@pytest.fixture
def server_commands(redis_server: RedisServer) -> Iterator[dict[str, set[str]]]:
    """Every command and subcommand of the real server with its flags, from ``COMMAND``."""
    client = redis_server.admin()
    conn = client.connection_pool.get_connection()
    conn.send_command("COMMAND")
    table: dict[str, set[str]] = {}

    def walk(entries: list[Any]) -> None:
        for entry in entries:
            table[entry[0].decode().upper()] = {flag.decode() for flag in entry[2]}
            if len(entry) > 9 and entry[9]:
                walk(entry[9])

    walk(conn.read_response())
    client.connection_pool.release(conn)
    yield table
    client.close()


# Listed commands newer than some servers, with the Redis version that brought them.
NEWER = {"CLIENT|SETINFO": (7, 2), "WAITAOF": (7, 2)}


def test_the_lists_agree_with_the_servers_own_flags(
    redis_server: RedisServer, server_commands: dict[str, set[str]]
) -> None:
    admin = redis_server.admin()
    version = tuple(int(part) for part in str(admin.info("server")["redis_version"]).split(".")[:2])
    admin.close()
    unknown = sorted(
        name
        for name in REPEATABLE - server_commands.keys()
        if name not in NEWER or version >= NEWER[name]
    )
    assert not unknown, f"not commands of Redis {version}: {unknown}"
    not_readonly = sorted(
        name for name in READS if "readonly" not in server_commands.get(name, {"readonly"})
    )
    assert not not_readonly, f"listed as reads but not flagged readonly: {not_readonly}"
    writes = sorted(
        name for name in REPORTS | CONNECTION_STATE if "write" in server_commands.get(name, ())
    )
    assert not writes, f"listed as reports or connection state but flagged write: {writes}"
    for name in SAFE_BLOCKING:
        found = blocking((name, *(["0"] * 5)))
        assert found is not None and found.retry_safe, name


def test_no_command_the_server_flags_write_is_repeated(
    server_commands: dict[str, set[str]],
) -> None:
    written = {name for name, flags in server_commands.items() if "write" in flags}
    # The blocking moves write, and are repeated on purpose (see redisqueue.commands).
    assert written & REPEATABLE == {"BLMOVE", "BRPOPLPUSH"}
    for name in written - {"BLMOVE", "BRPOPLPUSH", "XREADGROUP"}:
        args = (*name.split("|"), "k", "v")
        assert not repeatable(args), name
