"""A real redis-server started by the operator's own start-up script, outside a cluster.

The script runs exactly as in the pod, with its paths moved under a temporary directory: the
Secret files the kubelet would mount (``auth/password`` and the keys of ``<name>-redis-acl``)
are written there first, and readiness is the pod's own readiness script.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from redisqueue.controller.objects.server import READINESS_SCRIPT, SECRETS_DIR, startup_script
from redisqueue.controller.resource.spec import RedisQueueSpec


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def secret_files(secret: Mapping[str, Any]) -> dict[str, bytes]:
    """A Secret's keys as the files of its mounted volume."""
    return {key: base64.b64decode(value) for key, value in (secret.get("data") or {}).items()}


class ProvisionedRedis:
    """redis-server as the pod runs it: users from Secret files under ``root``."""

    host = "127.0.0.1"

    def __init__(self, root: Path, spec: RedisQueueSpec) -> None:
        self.root = root
        self.spec = spec
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        (root / "run").mkdir(parents=True, exist_ok=True)
        (root / "data").mkdir(parents=True, exist_ok=True)

    def script(self, text: str) -> str:
        """``text`` (a script of the pod) with its paths and port moved here."""
        return (
            text.replace("/run/redis/", f"{self.root}/run/")
            .replace(SECRETS_DIR, str(self.root / "secrets"))
            .replace("dir /data", f"dir {self.root}/data")
            .replace("port 6379", f"port {self.port}")
            .replace("-p 6379", f"-p {self.port}")
        )

    def mount(self, password: bytes, acl: Mapping[str, bytes]) -> None:
        """Write the files the kubelet mounts: the apps' password and the operator's users."""
        auth_dir, acl_dir = self.root / "secrets" / "auth", self.root / "secrets" / "acl"
        auth_dir.mkdir(parents=True, exist_ok=True)
        acl_dir.mkdir(parents=True, exist_ok=True)
        (auth_dir / "password").write_bytes(password)
        for key, value in acl.items():
            (acl_dir / key).write_bytes(value)

    def start(self, timeout: float = 10.0) -> ProvisionedRedis:
        env = {"PATH": os.environ["PATH"]}
        self.proc = subprocess.Popen(
            ["sh", "-c", self.script(startup_script(self.spec))],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        ready = self.script(READINESS_SCRIPT)
        deadline = time.monotonic() + timeout
        while subprocess.run(
            ["sh", "-c", ready], env=env, capture_output=True, check=False
        ).returncode:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("redis never answered the probe user's PING")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def client(self, password: str, username: str | None = None) -> redis.Redis:
        """A client that tries once: redis-py's default retries an AUTH refusal (an
        AuthenticationError is a ConnectionError) three times with backoff, seconds per check."""
        return redis.Redis(
            host=self.host,
            port=self.port,
            username=username,
            password=password,
            decode_responses=True,
            socket_timeout=5,
            retry=Retry(NoBackoff(), 0),
        )

    def accepts(self, password: str, username: str | None = None) -> bool:
        """Whether a new connection authenticates with ``password``."""
        client = self.client(password, username)
        try:
            return bool(client.ping())
        except redis.AuthenticationError:
            return False
        finally:
            client.close()
