"""A TLS proxy in front of the test API server that can black-hole chosen calls.

A real network fault for one client: requests whose path matches ``black_hole`` are taken
and never answered (as behind a half-open connection), every other request is passed on
unchanged, watches streamed. The client talks to the proxy through a kubeconfig that names
it (:meth:`ApiProxy.kubeconfig`), with the same credentials as before.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
import threading
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web

from harness.redis_server import TLSFiles, free_port

_PASSED = ("Authorization", "Accept", "Content-Type", "User-Agent")


class ApiProxy:
    """Serves on 127.0.0.1 with ``tls``'s certificate; forwards to the API server. Runs in
    a thread of its own, so a test that blocks (starting a process) does not stall it."""

    def __init__(self, upstream_kubeconfig: Path, tls: TLSFiles) -> None:
        self.upstream = yaml.safe_load(upstream_kubeconfig.read_text())
        cluster = self.upstream["clusters"][0]["cluster"]
        self.server = cluster["server"].rstrip("/")
        self._upstream_ssl = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
        )
        self.tls = tls
        self.port = free_port()
        #: Requests whose "METHOD path" matches are held without an answer.
        self.black_hole: re.Pattern[str] | None = None
        self.held = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._loop = asyncio.new_event_loop()
        self._release = asyncio.Event()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> ApiProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.tls.server_cert, self.tls.server_key)
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=context).start()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._upstream_ssl),
            timeout=aiohttp.ClientTimeout(total=None),
        )

    async def _close(self) -> None:
        self._release.set()
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()
        # Requests still held (or streaming) end with the proxy.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def kubeconfig(self, directory: Path) -> Path:
        """The upstream kubeconfig, pointed at this proxy (same user, same credentials)."""
        config = yaml.safe_load(yaml.safe_dump(self.upstream))
        cluster = config["clusters"][0]["cluster"]
        cluster["server"] = f"https://127.0.0.1:{self.port}"
        cluster["certificate-authority-data"] = base64.b64encode(
            self.tls.ca_cert.read_bytes()
        ).decode()
        path = directory / "through-proxy.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        if self.black_hole is not None and self.black_hole.search(
            f"{request.method} {request.path}"
        ):
            self.held += 1
            await self._release.wait()  # never answered while the test runs
            raise web.HTTPServiceUnavailable()
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k in _PASSED}
        async with self._session.request(
            request.method,
            self.server + request.path_qs,
            headers=headers,
            data=await request.read() if request.can_read_body else None,
        ) as upstream:
            response = web.StreamResponse(status=upstream.status)
            for key in ("Content-Type",):
                if key in upstream.headers:
                    response.headers[key] = upstream.headers[key]
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
