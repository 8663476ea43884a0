"""An app installs the client library alone: no operator dependencies, no operator metrics.

A fresh virtualenv gets ``pip install <this repository>`` without extras, exactly as an app
would, then runs a command through the client against a real redis-server.
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from harness.redis_server import RedisServer

REPO = Path(__file__).resolve().parents[2]

APP = """
import importlib.util, json, os
from prometheus_client import generate_latest
from redisqueue.client import create_client

redis = create_client(name="app")
redis.set("install:probe", "1")
value = redis.get("install:probe")
exposition = generate_latest().decode()
families = sorted({line.split()[2] for line in exposition.splitlines()
                   if line.startswith("# TYPE redisqueue_")})
print(json.dumps({
    "value": value.decode(),
    "families": families,
    "missing": [m for m in ("kopf", "kubernetes_asyncio", "aiohttp", "yaml")
                if importlib.util.find_spec(m) is None],
}))
"""


@pytest.fixture(scope="module")
def library_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("app") / "venv"
    venv.create(target, with_pip=True)
    subprocess.run(
        [str(target / "bin" / "python"), "-m", "pip", "install", "--quiet", str(REPO)],
        check=True,
        timeout=600,
    )
    return target


def test_the_library_alone_runs_commands_and_exposes_only_client_families(
    library_venv: Path, redis_server: RedisServer
) -> None:
    env = {
        "REDIS_HOST": redis_server.host,
        "REDIS_PORT": str(redis_server.port),
        "REDIS_PASSWORD": redis_server.password or "",
        "PATH": "/usr/bin:/bin",
        "HOME": str(library_venv),
    }
    result = subprocess.run(
        [str(library_venv / "bin" / "python"), "-c", APP],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=library_venv,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["value"] == "1"
    assert set(report["missing"]) == {"kopf", "kubernetes_asyncio", "aiohttp", "yaml"}
    assert report["families"], "the client's own families must be exposed"
    assert all(f.startswith("redisqueue_client_") for f in report["families"]), report["families"]
    assert "redisqueue_client_commands_total" in report["families"]


def test_operator_subcommands_name_the_extra_when_it_is_missing(
    library_venv: Path,
) -> None:
    cli = str(library_venv / "bin" / "redisqueue")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(library_venv), "REDIS_HOST": "cache"}
    shown = subprocess.run(
        [cli, "settings"], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert shown.returncode == 0 and "REDIS_HOST=cache" in shown.stdout
    for command in ("dev", "crd"):
        result = subprocess.run(
            [cli, command], capture_output=True, text=True, timeout=60, env=env, check=False
        )
        assert result.returncode == 2, result.stderr
        assert 'pip install "redisqueue-operator[operator]"' in result.stderr
        assert "Traceback" not in result.stderr


def test_the_library_install_is_small(library_venv: Path) -> None:
    # What an app pays for the library, against what the operator extra would add.
    site = next((library_venv / "lib").glob("python3*/site-packages"))
    names = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}
    assert {"redis", "prometheus_client", "pydantic", "python_dotenv"} <= names
    assert not {"kopf", "aiohttp", "kubernetes_asyncio", "pyyaml"} & names
    size = sum(f.stat().st_size for f in site.rglob("*") if f.is_file())
    print(f"library install: {size / 2**20:.1f} MiB in site-packages", file=sys.stderr)
