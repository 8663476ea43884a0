"""Shared fixtures: real redis-server processes (plain and TLS) started by the tests."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness.redis_server import RedisServer, TLSFiles, make_tls_files

pytest_plugins = [
    "harness.kube_fixtures",
    "harness.node_fixtures",
    "harness.ecosystem_fixtures",
    "harness.operator_harness",
    "harness.prometheus_fixtures",
]


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def redis_password() -> str:
    # characters that need URL-encoding prove the contract encodes them
    return "p@ss:" + secrets.token_hex(8) + "/#"


@pytest.fixture
def redis_server(tmp_path: Path, redis_password: str) -> Iterator[RedisServer]:
    """A fresh password-protected redis-server for one test (tests may stop/start it)."""
    server = RedisServer(tmp_path / "redis", password=redis_password).start()
    yield server
    server.stop()


@pytest.fixture
def tls_redis_server(
    tmp_path: Path, redis_password: str, tls_files: TLSFiles
) -> Iterator[RedisServer]:
    """A fresh TLS-only redis-server whose certificate is signed by ``tls_files``' CA."""
    server = RedisServer(tmp_path / "redis-tls", password=redis_password, tls=tls_files).start()
    yield server
    server.stop()
