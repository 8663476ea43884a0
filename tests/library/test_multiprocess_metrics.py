"""The client's metrics under prometheus-client's multiprocess mode: a real gunicorn with two
workers, each using the client against a real redis-server, scraped through the recipe of
docs/client.md."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.parser import text_string_to_metric_families
from test_metrics_recipe import recipes

from harness.redis_server import RedisServer, free_port

TESTS = Path(__file__).resolve().parents[1]
CLIENT = "multiprocess-app"
CAP = 7  # REDIS_POOL_MAX_CONNECTIONS of each worker

#: Every client family (counters by their name without ``_total``).
FAMILIES = {
    "redisqueue_client_connections",
    "redisqueue_client_connections_max",
    "redisqueue_client_pool_waiters",
    "redisqueue_client_pool_wait_seconds",
    "redisqueue_client_pool_exhausted",
    "redisqueue_client_commands",
    "redisqueue_client_command_duration_seconds",
    "redisqueue_client_retries",
    "redisqueue_client_reconnects",
    "redisqueue_client_connections_opened",
}


def client_samples(
    text_or_registry: str | CollectorRegistry,
) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """family -> [(sample name, labels, value)] of our client's samples."""
    if isinstance(text_or_registry, str):
        families = text_string_to_metric_families(text_or_registry)
    else:
        families = text_or_registry.collect()
    found: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for family in families:
        for sample in family.samples:
            if sample.labels.get("client") == CLIENT:
                found.setdefault(family.name, []).append(
                    (sample.name, dict(sample.labels), sample.value)
                )
    return found


def value(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(v for n, lab, v in samples if n == name and labels.items() <= lab.items())


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our own http URL
        return str(response.read().decode())


@pytest.fixture
def gunicorn(redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """gunicorn with two workers running tests/harness/multiprocess_app.py; yields its URL and the
    multiprocess directory."""
    config, metrics_view = recipes("## Metrics in a multi-process server (gunicorn)")
    recipe_dir = tmp_path / "recipes"
    recipe_dir.mkdir()
    (recipe_dir / "gunicorn.conf.py").write_text(config)
    (recipe_dir / "metrics_recipe.py").write_text(metrics_view)
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "REDIS_URL": f"redis://{redis_server.endpoint}/0",
        "REDIS_PASSWORD": redis_server.password or "",
        "REDIS_POOL_MAX_CONNECTIONS": str(CAP),
        "PYTHONPATH": os.pathsep.join([str(recipe_dir), str(TESTS)]),
    }
    log = (tmp_path / "gunicorn.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
            "--config",
            str(recipe_dir / "gunicorn.conf.py"),
            "--chdir",
            str(tmp_path),
            "harness.multiprocess_app:app",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                get(url + "/metrics")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((tmp_path / "gunicorn.log").read_text()[-2000:]) from None
                time.sleep(0.1)
        yield url, metrics_dir
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_every_client_family_is_served_with_every_workers_values(
    gunicorn: tuple[str, Path], redis_server: RedisServer, tmp_path: Path
) -> None:
    url, metrics_dir = gunicorn
    served: list[str] = []
    with ThreadPoolExecutor(max_workers=6) as pool:
        for _ in range(10):
            served += pool.map(lambda _i: get(url + "/"), range(6))
            if len({reply.split()[0] for reply in served}) >= 2:
                break
    pids = sorted({int(reply.split()[0]) for reply in served})
    assert len(pids) == 2, served

    text = get(url + "/metrics")
    assert redis_server.password not in text
    scraped = client_samples(text)
    assert scraped.keys() >= FAMILIES, sorted(FAMILIES - scraped.keys())

    # Each worker's own files, read alone: every family has values from both workers.
    per_worker = {}
    for pid in pids:
        alone = tmp_path / f"worker-{pid}"
        alone.mkdir()
        for file in metrics_dir.glob(f"*_{pid}.db"):
            shutil.copy(file, alone / file.name)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(alone))
        per_worker[pid] = client_samples(registry)
        assert per_worker[pid].keys() >= FAMILIES, (pid, sorted(FAMILIES - per_worker[pid].keys()))
        incr = value(
            per_worker[pid]["redisqueue_client_commands"],
            "redisqueue_client_commands_total",
            command="INCRBY",
            outcome="ok",
        )
        assert incr >= 1, pid  # this worker served requests

    # /metrics sums the workers: every request's INCRBY is counted once, the caps add up.
    commands = scraped["redisqueue_client_commands"]
    assert value(
        commands, "redisqueue_client_commands_total", command="INCRBY", outcome="ok"
    ) == len(served)
    durations = scraped["redisqueue_client_command_duration_seconds"]
    assert value(
        durations, "redisqueue_client_command_duration_seconds_count", command="INCRBY"
    ) == len(served)
    assert (
        value(scraped["redisqueue_client_connections_max"], "redisqueue_client_connections_max")
        == 2 * CAP
    )
    connections = scraped["redisqueue_client_connections"]
    assert value(connections, "redisqueue_client_connections", state="in_use") == 0
    idle = value(connections, "redisqueue_client_connections", state="idle")
    assert idle == sum(
        value(
            per_worker[pid]["redisqueue_client_connections"],
            "redisqueue_client_connections",
            state="idle",
        )
        for pid in pids
    )
    assert idle >= 2  # at least one pooled connection per worker
    waits = scraped["redisqueue_client_pool_wait_seconds"]
    assert value(waits, "redisqueue_client_pool_wait_seconds_count") >= len(served)
