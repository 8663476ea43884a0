"""A hostile "Redis" on loopback: answers PING or INFO with huge or malformed replies.

This is a fake on purpose: a real redis-server cannot be made to send a 160 MB answer to PING
or a string where INFO has a number, and those are exactly the answers a tenant's endpoint
may give. The server streams its huge replies in 64 KiB chunks and only as fast as the
client reads them, so the fake itself never holds them; ``sent`` counts what left it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

#: The size of the huge replies: what made the operator grow by 1.7 GB before replies were bounded.
HUGE = 160 * 1024 * 1024
CHUNK = b"x" * (64 * 1024)

#: What the fake answers, by name.
MODES = (
    "huge_bulk_ping",  # PING -> $167772160 and then that many bytes
    "huge_line_ping",  # PING -> +xxxx... with no line end for 160 MB
    "huge_error_ping",  # PING -> -ERR xxxx... 160 MB
    "huge_array_ping",  # PING -> *10000000 of small bulks
    "bad_length_ping",  # PING -> $abc
    "not_pong",  # PING -> +NOPE
    "garbage_info",  # PING -> +PONG; INFO -> numbers replaced by strings
    "huge_info",  # PING -> +PONG; INFO -> 160 MB bulk
    "bad_hello",  # HELLO/AUTH -> an unparseable line; PING -> +PONG
)

HANDSHAKE = ("HELLO", "AUTH", "CLIENT", "SELECT")
#: INFO's answer, in every mode but huge_info: numbers replaced by strings.
GARBAGE_INFO = b"connected_clients:many\r\ntotal_commands_processed:lots\r\nused_memory:?\r\n"
#: The answers where the mode does not change them; any other command gets :0.
REPLIES = {
    **dict.fromkeys(HANDSHAKE, b"+OK\r\n"),
    "PING": b"+PONG\r\n",
    "INFO": b"$%d\r\n%s\r\n" % (len(GARBAGE_INFO), GARBAGE_INFO),
}
#: The short answers a mode changes, by (mode, command).
ODD_REPLIES = {
    **{("bad_hello", command): b"%x-not-a-map\r\n" for command in HANDSHAKE},
    ("bad_length_ping", "PING"): b"$abc\r\n",
    ("not_pong", "PING"): b"+NOPE\r\n",
}
#: The huge answers, by (mode, command): this prefix, then HUGE bytes and a line end.
HUGE_REPLIES = {
    ("huge_bulk_ping", "PING"): b"$%d\r\n" % HUGE,
    ("huge_line_ping", "PING"): b"+",
    ("huge_error_ping", "PING"): b"-ERR ",
    ("huge_info", "INFO"): b"$%d\r\n" % HUGE,
}


@dataclass
class HostileRedis:
    """One fake endpoint in one mode; ``async with`` starts and stops it."""

    mode: str
    host: str = "127.0.0.1"
    port: int = 0
    sent: int = 0
    commands: list[str] = field(default_factory=list)
    _server: asyncio.Server | None = None

    async def __aenter__(self) -> HostileRedis:
        assert self.mode in MODES, self.mode
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        self.sent += len(data)
        await writer.drain()

    async def _stream(self, writer: asyncio.StreamWriter, prefix: bytes, total: int) -> None:
        await self._write(writer, prefix)
        left = total
        while left > 0:
            piece = CHUNK[: min(left, len(CHUNK))]
            await self._write(writer, piece)
            left -= len(piece)
        await self._write(writer, b"\r\n")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                command = await _read_command(reader)
                if command is None:
                    return
                self.commands.append(command)
                await self._answer(command, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            writer.close()

    async def _answer(self, command: str, writer: asyncio.StreamWriter) -> None:
        key = (self.mode, command)
        if key in HUGE_REPLIES:
            await self._stream(writer, HUGE_REPLIES[key], HUGE)
        elif key == ("huge_array_ping", "PING"):
            await self._write(writer, b"*10000000\r\n")
            for _ in range(10_000_000 // 1000):
                await self._write(writer, b"$1\r\nx\r\n" * 1000)
        else:
            await self._write(writer, ODD_REPLIES.get(key) or REPLIES.get(command, b":0\r\n"))


async def _read_command(reader: asyncio.StreamReader) -> str | None:
    """The command name of one RESP array request, or None at end of stream."""
    line = await reader.readline()
    if not line:
        return None
    if not line.startswith(b"*"):
        return line.strip().decode(errors="replace").upper()
    words: list[bytes] = []
    for _ in range(int(line[1:].strip())):
        size = int((await reader.readline())[1:].strip())
        words.append((await reader.readexactly(size + 2))[:-2])
    return words[0].decode(errors="replace").upper() if words else ""
