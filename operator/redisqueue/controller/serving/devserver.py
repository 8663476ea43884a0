"""Dev mode: the health/metrics server against a local Redis, with nothing to set up.

If no endpoint is configured (no ``REDIS_URL`` / ``REDIS_HOST`` or their ``REDIS_DEV_*``
forms), or the configured one is on this machine (localhost, 127.0.0.1, ::1, as
``.env.example``'s development block may say), and nothing answers there, a throwaway
``redis-server`` is started on that port with the configured password
(installed from Debian packages first when it is missing and we are root) and stopped again
on exit. The server's config, password included, is passed on stdin, never in arguments.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from dotenv import dotenv_values

from redisqueue.backoff import ContractBackoff
from redisqueue.settings import RedisSettings

from ..probing.probe import Probe
from ..resource.spec import DEFAULT_HEALTH_INTERVAL_SECONDS, DEFAULT_HEALTH_TIMEOUT_SECONDS
from .health import ProbeList, create_app

log = logging.getLogger("redisqueue.dev")

ENDPOINT_VARIABLES = (
    "REDIS_URL",
    "REDIS_HOST",
    "REDIS_DEV_URL",
    "REDIS_DEV_HOST",
    "REDIS_PROD_URL",
    "REDIS_PROD_HOST",
)


class DevError(RuntimeError):
    """Dev mode cannot start; the message tells the user what to do."""


@dataclass
class LocalRedis:
    """A redis-server child process started for dev mode."""

    process: subprocess.Popen[bytes]
    workdir: tempfile.TemporaryDirectory[str]

    def stop(self) -> None:
        terminate(self.process)
        self.workdir.cleanup()


def terminate(process: subprocess.Popen[bytes], grace: float = 10) -> None:
    """Stop a child process: SIGTERM, then SIGKILL when it has not exited within ``grace`` s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def endpoint_configured(environ: Mapping[str, str]) -> bool:
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def endpoint_is_local(settings: RedisSettings) -> bool:
    """A plain-TCP endpoint on this machine: dev mode may start Redis there itself."""
    return settings.host in LOOPBACK_HOSTS and not settings.tls and not settings.unix_socket_path


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def find_redis_server() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    for candidate in ("/usr/bin/redis-server", "/usr/sbin/redis-server"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


INSTALL_HINT = (
    "no Redis is reachable on localhost:6379 and redis-server is not installed.\n"
    "  Debian/Ubuntu:  sudo apt-get install -y redis-server\n"
    "  macOS:          brew install redis\n"
    "  Docker:         docker compose up -d redis   (then set REDIS_URL, see .env.example)\n"
    "  Existing Redis: export REDIS_URL=redis://host:6379/0"
)


def install_redis_server() -> str:
    """Install redis-server from Debian packages (root only), or explain how to get it."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise DevError(INSTALL_HINT)
    log.info("installing redis-server from Debian packages (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "redis-server"],
    ):
        result = subprocess.run(command, env=env, check=False, capture_output=True, text=True)
        if result.returncode != 0:
            tail = result.stderr.strip().splitlines()[-1:] or ["no output"]
            raise DevError(f"{' '.join(command)} failed: {tail[0]}\n{INSTALL_HINT}")
    found = find_redis_server()
    if found is None:
        raise DevError(INSTALL_HINT)
    return found


def start_local_redis(settings: RedisSettings, *, wait_seconds: float = 10.0) -> LocalRedis:
    """Start redis-server on settings.host:settings.port with config from stdin."""
    binary = find_redis_server() or install_redis_server()
    workdir = tempfile.TemporaryDirectory(prefix="redisqueue-dev-")
    lines = [
        f"port {settings.port}",
        "bind 127.0.0.1 -::1",
        f'dir "{workdir.name}"',
        'save ""',
        "appendonly no",
        "daemonize no",
        "loglevel warning",
    ]
    if settings.password:
        lines.append('requirepass "' + settings.password.replace('"', '\\"') + '"')
    process = subprocess.Popen(
        [binary, "-"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True
    )
    assert process.stdin is not None
    process.stdin.write(("\n".join(lines) + "\n").encode())
    process.stdin.close()
    local = LocalRedis(process, workdir)
    deadline = time.monotonic() + wait_seconds
    while not port_open("127.0.0.1", settings.port):
        if process.poll() is not None or time.monotonic() > deadline:
            local.stop()
            raise DevError(f"redis-server did not start on 127.0.0.1:{settings.port}")
        time.sleep(0.05)
    log.info("started redis-server %s on 127.0.0.1:%d (stopped on exit)", binary, settings.port)
    return local


async def _probe_loop(probe: Probe, interval: float, settings: RedisSettings) -> None:
    """Probe on a schedule; while Redis is down, retry on the contract's backoff."""
    backoff = ContractBackoff(settings.backoff_base_seconds, settings.backoff_cap_seconds)
    failures = 0
    while True:
        result = await probe.check()
        if result.ok:
            failures = 0
            await probe.collect_details()
            delay = interval
        else:
            failures += 1
            delay = min(interval, backoff.compute(failures))
            log.info("redis %s: retrying in %.1f s", probe.endpoint, delay)
        await asyncio.sleep(delay)


async def serve(
    settings: RedisSettings,
    *,
    host: str,
    port: int,
    interval: float,
    ping_timeout: float,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve health and metrics for one Redis until ``stop`` is set (or SIGINT/SIGTERM)."""
    probe = Probe(settings.to_contract(), namespace="local", name="dev", timeout=ping_timeout)
    app = create_app(ProbeList(probe))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info(
        "serving http://%s:%d/api/health/redis and /metrics for redis %s",
        "localhost" if host in {"127.0.0.1", "0.0.0.0", "::"} else host,  # noqa: S104
        port,
        settings.endpoint,
    )
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    prober = asyncio.create_task(_probe_loop(probe, interval, settings))
    try:
        await stop.wait()
    finally:
        prober.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await prober
        await runner.cleanup()
        await probe.close()


def run(
    settings: RedisSettings,
    environ: Mapping[str, str],
    *,
    host: str = "127.0.0.1",
    port: int = 3000,
    interval: float = DEFAULT_HEALTH_INTERVAL_SECONDS,
    timeout: float = DEFAULT_HEALTH_TIMEOUT_SECONDS,
    start_redis: bool = True,
    env_file: str | Path | None = ".env",
) -> int:
    """The ``redisqueue dev`` command. Returns the process exit code."""
    local: LocalRedis | None = None
    try:
        from_file: Mapping[str, str | None] = (
            dotenv_values(env_file) if env_file is not None and Path(env_file).is_file() else {}
        )
        configured = endpoint_configured(environ) or endpoint_configured(
            {k: v or "" for k, v in from_file.items()}
        )
        startable = not configured or endpoint_is_local(settings)
        if start_redis and startable and not port_open("127.0.0.1", settings.port):
            local = start_local_redis(settings)
        asyncio.run(serve(settings, host=host, port=port, interval=interval, ping_timeout=timeout))
    except DevError as exc:
        print(f"redisqueue dev: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"redisqueue dev: cannot serve on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        if local is not None:
            local.stop()
    return 0
