"""The documented ways an app exposes its client metrics, run as written in docs/client.md.

The recipes are taken from the document itself (only the worker's port is swapped for a
free one), so the page cannot drift from what works.
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from harness.redis_server import RedisServer, free_port
from redisqueue.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "client.md").read_text()


def recipes(heading: str = "## Exposing the client's metrics") -> list[str]:
    """The Python blocks of one section of docs/client.md."""
    section = DOC.split(heading + "\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def contract_env(server: RedisServer, monkeypatch: Any) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://{server.endpoint}/0")
    monkeypatch.setenv("REDIS_PASSWORD", server.password or "")
    load_settings(env_file=None)  # the recipe's client reads these


def test_a_worker_serves_its_client_metrics_on_a_port(
    redis_server: RedisServer, monkeypatch: Any, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    contract_env(redis_server, monkeypatch)
    worker, _ = recipes()
    port = free_port()
    namespace: dict[str, Any] = {}
    exec(  # noqa: S102 - the documented recipe, run as written
        worker.replace("start_http_server(9100)", f"start_http_server({port}, addr='127.0.0.1')"),
        namespace,
    )
    redis = namespace["redis"]
    redis.set("job", "1")
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert (
        'redisqueue_client_commands_total{client="analysis-worker",command="SET",outcome="ok"}'
        in text
    )
    assert 'redisqueue_client_pool_wait_seconds_count{client="analysis-worker"}' in text
    assert redis_server.password not in text
    redis.close()


async def test_a_web_app_serves_its_client_metrics_on_a_route(
    redis_server: RedisServer, monkeypatch: Any, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    contract_env(redis_server, monkeypatch)
    _, web_app = recipes()
    app = web.Application()
    exec(web_app, {"app": app})  # noqa: S102 - the documented recipe, run as written
    from redisqueue.client import create_async_client

    redis = create_async_client(name="web-app")
    await redis.get("anything")
    async with TestClient(TestServer(app, host="127.0.0.1")) as http:
        response = await http.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    assert 'redisqueue_client_commands_total{client="web-app",command="GET",outcome="ok"}' in text
    await redis.aclose()


def test_the_podmonitor_example_scrapes_the_documented_port() -> None:
    monitor = yaml.safe_load((REPO / "manifests" / "examples" / "podmonitor.yaml").read_text())
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    assert "Name the container port `metrics`" in DOC
    assert monitor["spec"]["selector"]["matchLabels"]
