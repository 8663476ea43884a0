"""Real redis-server processes for the tests (plain and TLS), on free loopback ports.

Config, password included, goes to redis-server on stdin (``redis-server -``), the same
way the dev command does it, so no secret is ever in a process argument.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis
import redis.asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from harness.pki import build_ca, certificate_builder, write_pair
from redisqueue.contract import ConnectionContract
from redisqueue.controller.serving.devserver import terminate


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if found is None:
        raise RuntimeError("redis-server is not installed; tests/run.sh installs it")
    return found


@dataclass(frozen=True)
class TLSFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path

    @property
    def ca_pem(self) -> str:
        return self.ca_cert.read_text()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_tls_files(
    directory: Path,
    *,
    hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
    ca_name: str = "redisqueue test CA",
) -> TLSFiles:
    """A throwaway CA and a server certificate for ``hosts``."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    not_before, not_after = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=2)
    ca, ca_key = build_ca(ca_name, not_before, not_after)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    cert = (
        certificate_builder(_name(hosts[0]), ca.subject, key, not_before, not_after)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TLSFiles(directory / "ca.crt", directory / "server.crt", directory / "server.key")
    files.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    write_pair(directory / "server", cert, key)
    return files


class RedisServer:
    """One redis-server process; stop() and start() keep the same port and password."""

    def __init__(
        self,
        workdir: Path,
        *,
        password: str | None = None,
        tls: TLSFiles | None = None,
        port: int | None = None,
        unix_socket: Path | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.workdir = workdir
        self.unix_socket = unix_socket
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.password = password
        self.tls = tls
        self.port = port or free_port()
        #: The loopback address it listens on (any of 127.0.0.0/8 works without setup).
        self.host = host
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        auth = f":{self.password}@" if self.password else ""
        return f"{scheme}://{auth}{self.host}:{self.port}/0"

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def _config(self) -> str:
        lines = [
            f"bind {self.host}",
            f'dir "{self.workdir}"',
            'save ""',
            "appendonly no",
            "daemonize no",
            "loglevel warning",
            f'logfile "{self.workdir / "redis.log"}"',
            "maxclients 2000",
        ]
        if self.tls:
            lines += [
                "port 0",
                f"tls-port {self.port}",
                f'tls-cert-file "{self.tls.server_cert}"',
                f'tls-key-file "{self.tls.server_key}"',
                f'tls-ca-cert-file "{self.tls.ca_cert}"',
                "tls-auth-clients no",
            ]
        else:
            lines.append(f"port {self.port}")
        if self.unix_socket:
            lines += [f'unixsocket "{self.unix_socket}"', "unixsocketperm 700"]
        if self.password:
            lines.append(f'requirepass "{self.password}"')
        return "\n".join(lines) + "\n"

    def start(self, *, wait: bool = True) -> RedisServer:
        if self.process is not None and self.process.poll() is None:
            return self
        self.process = subprocess.Popen(
            [redis_server_binary(), "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert self.process.stdin is not None
        self.process.stdin.write(self._config().encode())
        self.process.stdin.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                log = (
                    (self.workdir / "redis.log").read_text()
                    if (self.workdir / "redis.log").exists()
                    else ""
                )
                raise RuntimeError(f"redis-server exited: {log[-500:]}")
            if self._answers():
                return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on {self.endpoint} did not become ready")

    def _answers(self) -> bool:
        try:
            with contextlib.ExitStack() as stack:
                sock: socket.socket | ssl.SSLSocket = stack.enter_context(
                    socket.create_connection((self.host, self.port), timeout=0.5)
                )
                if self.tls:
                    ctx = ssl.create_default_context(cafile=str(self.tls.ca_cert))
                    # The TLS socket takes over the descriptor: it is the one to close.
                    sock = stack.enter_context(ctx.wrap_socket(sock, server_hostname="localhost"))
                sock.sendall(b"PING\r\n")
                reply = sock.recv(64)
                return reply.startswith((b"+PONG", b"-NOAUTH"))
        except (OSError, ssl.SSLError):
            return False

    def stop(self) -> None:
        if self.process is None:
            return
        terminate(self.process)
        self.process = None
        # wait until the port is really free so a restart can bind it again
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.2),
            ):
                time.sleep(0.02)
                continue
            break

    def kill(self) -> None:
        """SIGKILL, as an OOM kill or a crash: no shutdown, connections cut at once."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        self.process = None

    def freeze(self) -> None:
        """SIGSTOP: connections stay open but nothing answers, as over a half-open one."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.stop()
        self.start()

    def admin(self) -> redis.Redis:
        """A plain redis-py client of this (plaintext) server, to set up and to check."""
        return redis.Redis(host=self.host, port=self.port, password=self.password)

    def stock_async_client(self, max_connections: int, timeout: float) -> redis.asyncio.Redis:
        """redis-py's own asyncio client on its ``BlockingConnectionPool``: the baseline the
        contract's client and fair pool are measured against."""
        return redis.asyncio.Redis(
            connection_pool=redis.asyncio.BlockingConnectionPool(
                host=self.host,
                port=self.port,
                password=self.password,
                max_connections=max_connections,
                timeout=timeout,
            )
        )

    def contract(self) -> ConnectionContract:
        """The connection contract of this (plaintext) server."""
        return ConnectionContract(host=self.host, port=self.port, password=self.password)

    def client_list(self) -> list[dict[str, str]]:
        """CLIENT LIST as dicts, through redis-cli with the password in REDISCLI_AUTH."""
        import os

        env = {**os.environ}
        if self.password:
            env["REDISCLI_AUTH"] = self.password
        args = ["redis-cli", "-h", self.host, "-p", str(self.port), "--no-auth-warning"]
        if self.tls:
            args += ["--tls", "--cacert", str(self.tls.ca_cert)]
        out = subprocess.run(
            [*args, "CLIENT", "LIST"], env=env, capture_output=True, text=True, check=True
        ).stdout
        clients = []
        for line in out.splitlines():
            fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
            clients.append(fields)
        return clients
