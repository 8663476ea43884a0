"""A TLS connection the operator closes early is closed for real, even when the peer never
answers the TLS shutdown.

The peer here is a small TLS server on loopback that answers one watch request with one
event and then stops reading: a fault the real API server produces only by chance (a watch
cut short while the server is busy), so it is made on purpose. The client side is the
operator's own :class:`Kube`, on an event loop of the test's own, so that what its pool
leaves open is seen when that loop closes.
"""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import ssl
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest

from harness.redis_server import make_tls_files
from redisqueue.controller.api.kube import Kube
from redisqueue.controller.api.paths import object_path


@pytest.fixture
def silent_after_one_event(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """(port, CA file) of a TLS server that sends one watch event, then never reads again:
    the client's TLS close is never answered."""
    tls = make_tls_files(tmp_path, hosts=("127.0.0.1",))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.server_cert, tls.server_key)
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()
    event = json.dumps({"type": "ADDED", "object": {"metadata": {"name": "a"}}}).encode() + b"\n"

    def serve() -> None:
        raw, _ = listener.accept()
        with context.wrap_socket(raw, server_side=True) as conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
                + f"{len(event):x}\r\n".encode()
                + event
                + b"\r\n"
            )
            done.wait(60)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], tls.ca_cert
    finally:
        done.set()
        thread.join(10)
        listener.close()


def test_a_watch_cut_short_leaves_no_socket_open_when_the_peer_never_answers_the_close(
    silent_after_one_event: tuple[int, Path],
) -> None:
    port, ca_crt = silent_after_one_event
    info = kopf.ConnectionInfo(server=f"https://127.0.0.1:{port}", ca_path=str(ca_crt))

    async def cut_a_watch_short() -> None:
        kube = Kube(info)
        events = kube.watch(object_path("v1", "ConfigMap", "shop"), "1")
        assert (await anext(events))[0] == "ADDED"
        await events.aclose()  # the operator stops reading: the connection is closed
        await kube.close()

    unraisable: list[str] = []

    def record(hook: Any) -> None:
        unraisable.append(f"{hook.exc_value!r} {hook.object!r}")

    saved = sys.unraisablehook
    sys.unraisablehook = record
    try:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(cut_a_watch_short())
        finally:
            loop.close()
        gc.collect()
    finally:
        sys.unraisablehook = saved
    to_server = f"raddr=('127.0.0.1', {port})"
    left_open = [text for text in unraisable if to_server in text or "unclosed transport" in text]
    assert left_open == [], left_open
