"""The Grafana dashboard: every panel's PromQL answers with data from a real setup.

A real Prometheus scrapes the real operator (running with the install path's ServiceAccount,
serving a RedisQueue whose Redis is a real redis-server) and a small app process that uses the
client library against the same Redis. Each query of each panel, with the dashboard's variables
filled in for that RedisQueue and that app, must return at least one finite sample: no panel
that can only ever be empty. The chart test renders the same JSON into the sidecar ConfigMap.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.dashboard import fill, load_dashboard, panel_queries
from harness.kube_controlplane import ControlPlane, kill_process_group
from harness.operator_harness import (
    OperatorProcess,
    apply_secret,
    create_rq,
    rq_path,
    wait_for_ready,
)
from harness.prometheus_fixtures import PrometheusServer, StartPrometheus, value
from harness.redis_server import RedisServer, free_port
from redisqueue.controller.api.kube import Kube

pytestmark = pytest.mark.k8s

CHART = Path(__file__).resolve().parents[2] / "charts" / "redisqueue-operator"
APP_CLIENT = "dashboard-app"

#: A worker using the client library: serves /metrics and keeps a list and a stream busy.
APP = """
import sys, time
from prometheus_client import start_http_server
from redisqueue.client import create_client
from redisqueue.settings import load_settings

start_http_server(int(sys.argv[1]), addr="127.0.0.1")
client = create_client(load_settings(), name=sys.argv[2])
print("ready", flush=True)
while True:
    try:
        client.rpush("jobs:list", "job")
        client.lpop("jobs:list")
        client.xadd("jobs:stream", {"job": "1"}, maxlen=1000)
        client.get("missing")
    except Exception as exc:  # retries exhausted while Redis is away: keep going
        print("command failed:", type(exc).__name__, flush=True)
    time.sleep(0.05)
"""


# --------------------------------------------------------------------------- the file itself


def test_dashboard_has_the_panels_platform_engineers_look_for() -> None:
    dashboard = load_dashboard()
    titles = {title for title, _ in panel_queries(dashboard)}
    assert {
        "Up",
        "PING latency",
        "Queue depth",
        "Pending stream entries",
        "Server: connected clients",
        "Server: commands per second",
        "Server: memory used",
        "Reconciles by outcome",
        "Leader",
        "Pool connections",
        "Pool waits",
        "Commands per second",
        "Command latency",
        "Retries and reconnects",
    } <= titles
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"datasource", "cluster", "namespace", "name", "client"}
    # One Grafana over several clusters picks one; without a cluster label, All matches.
    assert variables["cluster"]["includeAll"] and variables["cluster"]["allValue"] == ".*"
    for title, expr in panel_queries(dashboard):
        assert 'cluster=~"$cluster"' in expr, f"{title} ignores the cluster variable: {expr}"
        if "redisqueue_" in expr and "redisqueue_client_" not in expr and "reconcile" not in expr:
            # every replica exports these: aggregated by RedisQueue, one line per queue
            assert "by (namespace, name" in expr or "redisqueue_operator_leader" in expr, title
    # Every query uses the data source variable, so the sidecar import works on any Grafana.
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "two panels share an id"


def test_every_metric_the_dashboard_reads_is_one_we_export() -> None:
    metrics_source = "\n".join(
        p.read_text() for p in (Path(__file__).resolve().parents[2] / "operator").rglob("*.py")
    )
    for title, expr in panel_queries(load_dashboard()):
        for metric in re.findall(r"\bredisqueue_[a-z_]+", expr):
            base = re.sub(r"_(total|bucket|count|sum)$", "", metric)
            assert f'"{base}"' in metrics_source, f"{title}: {metric} is not exported"


# --------------------------------------------------------------------------- against Prometheus


@pytest.fixture
def app_process(redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """The worker process; yields (metrics port, log file)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_")}
    env["REDIS_URL"] = f"redis://{redis_server.endpoint}/0"
    env["REDIS_PASSWORD"] = redis_server.password or ""
    # Short backoff so an outage of a few seconds shows as retries, then reconnects.
    env.update(REDIS_BACKOFF_BASE_SECONDS="0.05", REDIS_BACKOFF_CAP_SECONDS="0.5")
    env["REDIS_RETRY_ATTEMPTS"] = "20"
    log = tmp_path / "app.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", APP, str(port), APP_CLIENT],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        yield port, log
    finally:
        kill_process_group(proc.pid, timeout=10.0)
        proc.wait(timeout=10)


async def test_every_panel_query_returns_data_from_a_real_operator_and_app(
    operator: OperatorProcess,
    kube: Kube,
    namespace: str,
    redis_server: RedisServer,
    app_process: tuple[int, Path],
    prometheus_server: StartPrometheus,
    control_plane: ControlPlane,
) -> None:
    assert redis_server.password
    app_port, app_log = app_process
    name = f"dash-{secrets.token_hex(2)}"

    # A stream with a consumer group and one delivered, unacknowledged entry: pending > 0.
    direct = redis_server.admin()
    try:
        direct.xadd("jobs:stream", {"job": "0"})
        direct.xgroup_create("jobs:stream", "workers", id="0")
        direct.xreadgroup("workers", "w1", {"jobs:stream": ">"}, count=1)
    finally:
        direct.close()

    await apply_secret(kube, namespace, "redis-auth", {"password": redis_server.password})
    spec = {
        "redis": {"external": {"host": redis_server.host, "port": redis_server.port}},
        "auth": {"secretRef": {"name": "redis-auth", "key": "password"}},
        "inject": [{"secretName": "app-redis"}],
        "healthCheck": {"intervalSeconds": 1, "timeoutSeconds": 0.5},
        "queues": [
            {"key": "jobs:list", "type": "list"},
            {"key": "jobs:stream", "type": "stream", "group": "workers"},
        ],
    }
    await create_rq(kube, namespace, name, spec)
    await wait_for_ready(kube, namespace, name)

    prometheus: PrometheusServer = prometheus_server(
        [f"127.0.0.1:{operator.port}", f"127.0.0.1:{app_port}"]
    )
    await prometheus.wait_for_async(
        "count(up == 1)", lambda r: bool(r) and value(r[0]) == 2, timeout=90
    )

    # Work the dashboard should show, after Prometheus has started scraping: a reconcile
    # (a spec change), and a Redis outage of a few seconds (probe failures, client retries
    # and reconnects).
    await kube.merge_patch(
        rq_path(namespace, name),
        {"spec": {"healthCheck": {"intervalSeconds": 2, "timeoutSeconds": 0.5}}},
    )
    await prometheus.wait_for_async(
        'sum(redisqueue_reconcile_total{outcome="success"})',
        lambda r: bool(r) and value(r[0]) >= 2,
        timeout=60,
    )
    redis_server.stop()
    await prometheus.wait_for_async(
        f'redisqueue_up{{namespace="{namespace}",name="{name}"}}',
        lambda r: bool(r) and value(r[0]) == 0,
        timeout=60,
    )
    redis_server.start()
    await wait_for_ready(kube, namespace, name)
    await prometheus.wait_for_async(
        f'redisqueue_client_reconnects_total{{client="{APP_CLIENT}"}}',
        lambda r: bool(r) and value(r[0]) >= 1,
        timeout=60,
    )

    variables = {
        "cluster": ".*",  # All: this Prometheus adds no cluster label
        "namespace": namespace,
        "name": name,
        "client": APP_CLIENT,
        # Wide enough to hold the work above, as a dashboard over the last hour would.
        "__rate_interval": "5m",
    }

    def has_finite_data(result: list[dict[str, Any]]) -> bool:
        return any(math.isfinite(value(sample)) for sample in result)

    empty: list[str] = []
    for title, expr in panel_queries(load_dashboard()):
        query = fill(expr, variables)
        try:
            await prometheus.wait_for_async(query, has_finite_data, timeout=30)
        except AssertionError:
            empty.append(f"{title}: {query}")
    assert empty == [], (
        "panels without data:\n"
        + "\n".join(empty)
        + (f"\napp log:\n{app_log.read_text(errors='replace')[-2000:]}")
    )

    # The variables' own queries list this RedisQueue and this app.
    for label, match, wanted in [
        ("namespace", "redisqueue_up", namespace),
        ("name", f'redisqueue_up{{namespace="{namespace}"}}', name),
        ("client", "redisqueue_client_connections_max", APP_CLIENT),
    ]:
        values = prometheus.api(f"label/{label}/values", **{"match[]": match})
        assert wanted in values, (label, values)

    # The outage reached the retry and reconnect panels with real counts, not just zeros.
    retries = await prometheus.query_async(
        f'sum(increase(redisqueue_client_retries_total{{client="{APP_CLIENT}"}}[5m]))'
    )
    assert retries and value(retries[0]) > 0, retries
