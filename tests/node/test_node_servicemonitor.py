"""The chart with prometheus-operator, as the chart README tells users to install it.

A prometheus-operator built from its Go module (``ecosystem_fixtures``) manages a Prometheus
that selects ServiceMonitors and PrometheusRules by kube-prometheus-stack's label. The chart
is installed with the README's own ``helm upgrade --install ... --set metrics.*`` command,
read from the README, so the documented command is the one proven. From that Prometheus:
both operator replicas are scraped through the ServiceMonitor, the rules are loaded, every
dashboard panel has data, the PodMonitor example picks up a worker's client families, and a
stopped Redis fires ``RedisQueueDown`` once for its RedisQueue, which resolves when Redis is
back.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
import time
from collections.abc import Iterator
from typing import Any

import pytest

from harness.dashboard import (
    fill,
    has_finite_data,
    load_dashboard,
    panel_queries,
    variables_for,
)
from harness.ecosystem_fixtures import (
    EVALUATION_SECONDS,
    QUEUE_NAME,
    REPO_ROOT,
    STREAM,
    PromStack,
    app_redis,
    deploy_worker,
    ensure_namespace,
    provision_queue,
    wait_until,
    worker_deployment,
)
from harness.kube_node import Node
from harness.node_fixtures import CHART, OPERATOR_NS, image_values

pytestmark = [pytest.mark.node, pytest.mark.timeout(900)]

RELEASE = "redisqueue-operator"
#: The scrape pool prometheus-operator makes of the chart's ServiceMonitor's one endpoint.
SCRAPE_POOL = f"serviceMonitor/{OPERATOR_NS}/{RELEASE}/0"
PODMONITOR = REPO_ROOT / "manifests" / "examples" / "podmonitor.yaml"
WORKER_LABELS = {"app.kubernetes.io/name": "analysis-worker"}
CLIENT = "worker"  # the client name tests/node/worker.py gives the library
CLIENT_FAMILIES = {
    "redisqueue_client_connections",
    "redisqueue_client_connections_max",
    "redisqueue_client_pool_waiters",
    "redisqueue_client_commands_total",
    "redisqueue_client_command_duration_seconds_bucket",
    "redisqueue_client_pool_wait_seconds_bucket",
    "redisqueue_client_retries_total",
    "redisqueue_client_reconnects_total",
    "redisqueue_client_connections_opened_total",
    "redisqueue_client_pool_exhausted_total",
}


def readme_monitoring_commands() -> list[list[str]]:
    """The commands of the chart README's prometheus-operator block, one argv each."""
    text = (CHART / "README.md").read_text()
    for block in re.findall(r"```sh\n(.*?)```", text, re.DOTALL):
        if "metrics.serviceMonitor.enabled=true" in block and "helm upgrade" in block:
            joined = block.replace("\\\n", " ")
            return [shlex.split(line) for line in joined.splitlines() if line.strip()]
    raise AssertionError("the chart README has no prometheus-operator install block")


def readme_helm_args(node: Node, argv: list[str]) -> list[str]:
    """The README's helm command for the chart of this checkout and the image built here:
    the published chart reference and its --version are the only parts replaced."""
    assert argv[:4] == ["helm", "upgrade", "--install", RELEASE], argv
    assert argv[4].startswith("oci://"), argv
    rest = argv[5:]
    at = rest.index("--version")
    del rest[at : at + 2]
    return ["upgrade", "--install", RELEASE, str(CHART), *rest, *image_values(node), "--wait"]


@pytest.fixture(scope="module")
def monitored_chart(node: Node, prometheus_operator: PromStack) -> Iterator[PromStack]:
    helm_cmd, get_cmd = readme_monitoring_commands()
    # The README's monitoring flags: both objects carry the label the Prometheus selects.
    sets = [helm_cmd[i + 1] for i, arg in enumerate(helm_cmd) if arg == "--set"]
    assert "metrics.serviceMonitor.labels.release=kube-prometheus-stack" in sets, sets
    assert "metrics.prometheusRule.labels.release=kube-prometheus-stack" in sets, sets
    ensure_namespace(node, OPERATOR_NS)
    node.helm(*readme_helm_args(node, helm_cmd), "--timeout=180s", timeout=240)
    try:
        assert get_cmd[0] == "kubectl", get_cmd
        listed = node.kubectl(*get_cmd[1:]).stdout
        assert f"servicemonitor.monitoring.coreos.com/{RELEASE}" in listed, listed
        assert f"prometheusrule.monitoring.coreos.com/{RELEASE}" in listed, listed
        yield prometheus_operator
    finally:
        node.helm("uninstall", RELEASE, "--namespace", OPERATOR_NS, "--wait", check=False)


@pytest.fixture(scope="module")
def monitored_app(node: Node, monitored_chart: PromStack, toolbox: str) -> Iterator[str]:
    """A provisioned RedisQueue (a list and a stream with one pending entry), a worker
    serving its client metrics, and the PodMonitor example, in a namespace of their own."""
    namespace = f"n-servicemonitor-{secrets.token_hex(3)}"
    ensure_namespace(node, namespace)
    try:
        provision_queue(node, namespace)
        key, group = STREAM["key"], STREAM["group"]
        pending = app_redis(
            node,
            namespace,
            f"r.xgroup_create({key!r}, {group!r}, id='0', mkstream=True)\n"
            f"r.xadd({key!r}, {{'job': '1'}})\n"
            f"r.xreadgroup({group!r}, 'c1', {{{key!r}: '>'}}, count=1)\n"
            f"print(json.dumps(r.xpending({key!r}, {group!r})['pending']))",
        )
        assert pending == 1
        deploy_worker(
            node,
            namespace,
            worker_deployment(node, "analysis-worker", 1, {"BLOCK_SECONDS": "5"}, WORKER_LABELS),
        )
        node.kubectl(
            "rollout",
            "status",
            "-n",
            namespace,
            "deploy/analysis-worker",
            "--timeout=120s",
            timeout=150,
        )
        # The example, exactly as shipped.
        node.kubectl("apply", "-n", namespace, "-f", str(PODMONITOR))
        yield namespace
    finally:
        node.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def live_operator_pods(node: Node) -> set[str]:
    pods = json.loads(
        node.kubectl(
            "get",
            "pods",
            "-n",
            OPERATOR_NS,
            "-l",
            "app.kubernetes.io/name=redisqueue-operator",
            "-o",
            "json",
        ).stdout
    )["items"]
    return {
        p["metadata"]["name"]
        for p in pods
        if not p["metadata"].get("deletionTimestamp") and p["status"].get("phase") == "Running"
    }


def targets(prom: PromStack, pool: str) -> list[dict[str, Any]]:
    active = prom.api("targets", state="active")["activeTargets"]
    return [t for t in active if t["scrapePool"] == pool]


def test_servicemonitor_has_prometheus_scrape_every_operator_replica(
    node: Node, monitored_chart: PromStack
) -> None:
    prom = monitored_chart
    pods = live_operator_pods(node)
    assert len(pods) == 2, pods  # the chart's default: a leader and a standby

    def scraped() -> list[dict[str, Any]] | None:
        found = targets(prom, SCRAPE_POOL)
        healthy = [t for t in found if t["health"] == "up"]
        return healthy if len(healthy) == len(pods) == len(found) else None

    found = wait_until("both replicas scraped through the ServiceMonitor", scraped, timeout=180)
    assert {t["labels"]["pod"] for t in found} == pods
    assert {t["labels"]["job"] for t in found} == {RELEASE}
    # The series RedisQueueOperatorAbsent watches: one per replica, both up.
    up = prom.wait_for(
        f'up{{job="{RELEASE}",namespace="{OPERATOR_NS}"}}',
        lambda r: len(r) == 2 and all(float(s["value"][1]) == 1 for s in r),
        timeout=60,
    )
    assert {s["metric"]["pod"] for s in up} == pods
    # Every replica serves the operator's own families (the standby probes too).
    built = prom.query(f'redisqueue_build_info{{job="{RELEASE}"}}')
    assert {s["metric"]["pod"] for s in built} == pods


def test_servicemonitor_chart_rules_are_loaded_and_healthy(monitored_chart: PromStack) -> None:
    prom = monitored_chart
    expected = {
        "RedisQueueDown",
        "RedisQueueSlowPing",
        "RedisQueueOperatorReconcileErrors",
        "RedisQueueProbesStopped",
        "RedisQueueOperatorAbsent",
        "RedisQueuePartiallyUnreachable",
        "RedisQueueOperatorNoLeader",
    }

    def loaded() -> list[dict[str, Any]]:
        groups = prom.api("rules", type="alert")["groups"]
        return [g for g in groups if g["name"] == "redisqueue"]

    (group,) = wait_until("the chart's rule group in Prometheus", loaded, timeout=180)
    # prometheus-operator writes each selected PrometheusRule to a file named after it.
    assert f"{OPERATOR_NS}-{RELEASE}" in group["file"], group["file"]
    rules = {r["name"]: r for r in group["rules"]}
    assert set(rules) == expected
    wait_until(
        "every rule evaluated without error",
        lambda: all(
            r["health"] == "ok" for g in loaded() for r in g["rules"] if r["name"] in expected
        ),
        timeout=60,
    )
    # The operator is scraped, so the alert that says it is not must go quiet and stay so.
    # Before the first scrape of both replicas ``absent()`` is true and the rule may be
    # pending (it needs 5m to fire); the first evaluation after the scrape must clear it, and
    # later ones must keep it clear.
    prom.wait_for(f'up{{job="{RELEASE}"}} == 1', lambda r: len(r) == 2, timeout=180)
    absent = 'ALERTS{alertname="RedisQueueOperatorAbsent"}'
    prom.wait_for(absent, lambda r: not r, timeout=30, interval=1.0)
    time.sleep(2 * EVALUATION_SECONDS + 2)  # two more evaluations
    assert prom.query(absent) == []
    (rule,) = [r for g in loaded() for r in g["rules"] if r["name"] == "RedisQueueOperatorAbsent"]
    assert rule["state"] == "inactive", rule


def test_servicemonitor_podmonitor_example_scrapes_a_workers_client_families(
    monitored_app: str, monitored_chart: PromStack
) -> None:
    prom = monitored_chart
    namespace = monitored_app
    pool = f"podMonitor/{namespace}/analysis-worker-redis-client/0"
    wait_until(
        "the worker scraped through the PodMonitor example",
        lambda: [t for t in targets(prom, pool) if t["health"] == "up"],
        timeout=180,
    )
    selector = f'{{__name__=~"redisqueue_client_.+",namespace="{namespace}",client="{CLIENT}"}}'
    result = prom.wait_for(
        f"count by (__name__) ({selector})",
        lambda r: {s["metric"]["__name__"] for s in r} >= CLIENT_FAMILIES,
        timeout=120,
    )
    assert {s["metric"]["__name__"] for s in result} >= CLIENT_FAMILIES


def test_servicemonitor_every_dashboard_panel_has_data_from_that_prometheus(
    node: Node, monitored_app: str, monitored_chart: PromStack
) -> None:
    prom = monitored_chart
    namespace = monitored_app
    # A reconcile while Prometheus scrapes (a spec change), so the reconcile panels have a
    # rate to show. rate() sees an increase only between two samples of a series: first wait
    # until Prometheus holds the count of the reconcile at creation, which may have come
    # after the last scrape (the histogram's series begin with a reconcile).
    prom.wait_for(f'up{{job="{RELEASE}"}} == 1', lambda r: len(r) == 2, timeout=180)
    prom.wait_for(
        f'redisqueue_reconcile_duration_seconds_count{{job="{RELEASE}",outcome="success"}} >= 1',
        lambda r: len(r) >= 1,
        timeout=120,
    )
    node.kubectl(
        "patch",
        "redisqueue",
        "-n",
        namespace,
        QUEUE_NAME,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"healthCheck": {"intervalSeconds": 10, "timeoutSeconds": 3}}}),
    )
    variables = variables_for(namespace, QUEUE_NAME, CLIENT)
    # rate() needs two scrapes of each target (30 s apart) in the window: wait for the
    # slowest panel first, then every panel gets a short wait of its own.
    prom.wait_for(
        fill(
            "sum by (client) (rate(redisqueue_client_commands_total"
            '{client=~"$client"}[$__rate_interval]))',
            variables,
        ),
        has_finite_data,
        timeout=180,
    )
    empty = []
    for title, expr in panel_queries(load_dashboard()):
        query = fill(expr, variables)
        try:
            prom.wait_for(query, has_finite_data, timeout=60)
        except AssertionError:
            empty.append(f"{title}: {query}")
    assert empty == [], "panels without data:\n" + "\n".join(empty)
    # The dashboard's variables list this RedisQueue and this app.
    for label, match, wanted in [
        ("namespace", "redisqueue_up", namespace),
        ("name", f'redisqueue_up{{namespace="{namespace}"}}', QUEUE_NAME),
        ("client", "redisqueue_client_connections_max", CLIENT),
    ]:
        assert wanted in prom.api(f"label/{label}/values", **{"match[]": match}), label


def test_servicemonitor_redisqueue_down_fires_once_and_resolves_when_redis_is_back(
    node: Node, monitored_app: str, monitored_chart: PromStack
) -> None:
    prom = monitored_chart
    namespace = monitored_app
    queue = f'namespace="{namespace}",name="{QUEUE_NAME}"'
    alert = f'ALERTS{{alertname="RedisQueueDown",{queue}}}'
    # Both replicas probe this Redis and are scraped: two redisqueue_up series.
    prom.wait_for(f"redisqueue_up{{{queue}}} == 1", lambda r: len(r) == 2, timeout=180)
    assert prom.query(alert) == []

    stopped = time.monotonic()
    node.kubectl("scale", "statefulset", "-n", namespace, f"{QUEUE_NAME}-redis", "--replicas=0")
    # Every replica sees it down, and the alert that fires is one, for the RedisQueue.
    prom.wait_for(f"redisqueue_up{{{queue}}} == 0", lambda r: len(r) == 2, timeout=180)
    firing = prom.wait_for(
        f'ALERTS{{alertname="RedisQueueDown",alertstate="firing",{queue}}}',
        timeout=300,
    )
    fired_after = time.monotonic() - stopped
    assert len(firing) == 1, firing
    labels = firing[0]["metric"]
    assert labels["severity"] == "critical"
    assert "pod" not in labels and "instance" not in labels, labels
    active = [
        a
        for a in prom.api("alerts")["alerts"]
        if a["labels"]["alertname"] == "RedisQueueDown"
        and a["labels"].get("namespace") == namespace
    ]
    assert len(active) == 1 and active[0]["state"] == "firing", active
    assert QUEUE_NAME in active[0]["annotations"]["summary"]

    restored = time.monotonic()
    node.kubectl("scale", "statefulset", "-n", namespace, f"{QUEUE_NAME}-redis", "--replicas=1")
    prom.wait_for(f"redisqueue_up{{{queue}}} == 1", lambda r: len(r) == 2, timeout=240)
    prom.wait_for(alert, lambda r: r == [], timeout=120)
    resolved_after = time.monotonic() - restored
    # Over the whole outage, never more than one RedisQueueDown for this RedisQueue at once.
    most = prom.query(f'max_over_time(count(ALERTS{{alertname="RedisQueueDown",{queue}}})[15m:5s])')
    assert [float(s["value"][1]) for s in most] == [1.0], most
    print(
        f"RedisQueueDown fired {fired_after:.0f} s after Redis stopped (for: 2m, scrape 30s), "
        f"resolved {resolved_after:.0f} s after it was started again"
    )
