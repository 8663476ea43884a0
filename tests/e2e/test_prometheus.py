"""Our metrics and alerts checked by the real Prometheus tools.

* ``promtool check metrics`` lints the exposition of the health/metrics server after real
  probe and client-library traffic against a real redis-server;
* a real Prometheus scrapes that server and answers PromQL about it, also after the
  redis-server is stopped;
* ``promtool check rules`` and ``promtool test rules`` on the alert rules the Helm chart
  renders.
"""

from __future__ import annotations

import math
import re
import secrets
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from redis.exceptions import ResponseError

from harness.kube_controlplane import ControlPlane
from harness.library import settings_for
from harness.prometheus_fixtures import (
    CHART_ALERTS,
    PrometheusServer,
    Promtool,
    StartPrometheus,
    value,
)
from harness.redis_server import RedisServer
from redisqueue.client import create_async_client
from redisqueue.controller.probing.probe import Probe
from redisqueue.controller.probing.result import QueueKey
from redisqueue.controller.serving.health import ProbeList, create_app
from redisqueue.controller.telemetry import metrics

CHART = Path(__file__).resolve().parents[2] / "charts" / "redisqueue-operator"
NAMESPACE = "local"  # what the dev server calls its one queue's namespace
RUNBOOKS = Path(__file__).resolve().parents[2] / "docs" / "runbooks"
RUNBOOK_BASE = "https://github.com/redisqueue/redisqueue-operator/blob/main/docs/runbooks/"


def closed_port() -> int:
    """A loopback port nothing listens on (bound and released at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- the server


@dataclass
class HealthSite:
    """The health/metrics app on a real loopback socket, as Prometheus sees it."""

    port: int
    names: list[str]
    http: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def get(self, path: str) -> tuple[int, str]:
        async with self.http.get(self.url + path) as response:
            return response.status, await response.text()


StartSite = Callable[..., Awaitable[HealthSite]]


@pytest.fixture
async def health_site() -> AsyncIterator[StartSite]:
    """Start ``create_app`` with the given probes on a free loopback port (TCPSite)."""
    runners: list[web.AppRunner] = []
    probes: list[Probe] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(*probe_list: Probe) -> HealthSite:
        probes.extend(probe_list)
        runner = web.AppRunner(create_app(ProbeList(*probe_list)), access_log=None)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = int(runner.addresses[0][1])  # the port the kernel chose for port 0
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        sessions.append(http)
        return HealthSite(port, [p.name for p in probe_list], http)

    try:
        yield start
    finally:
        for http in sessions:
            await http.close()
        for runner in runners:
            await runner.cleanup()
        for probe in probes:
            await probe.close()
            metrics.forget_queue(probe.namespace, probe.name)


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


# --------------------------------------------------------------------------- promtool check metrics


def _families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


async def test_metrics_pass_promtool_check_after_real_traffic(
    redis_server: RedisServer, health_site: StartSite, promtool: Promtool
) -> None:
    settings = settings_for(redis_server)
    name, client_name = unique("lint"), unique("lint-client")
    good = Probe(
        settings.to_contract(),
        namespace=NAMESPACE,
        name=name,
        timeout=5,
        queues=(QueueKey("jobs:list"), QueueKey("jobs:stream", "stream", group="workers")),
    )
    unreachable = Probe(
        settings_for(redis_server, REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0").to_contract(),
        namespace=NAMESPACE,
        name=name + "-unreachable",
        timeout=5,
    )
    wrong_password = Probe(
        settings_for(redis_server, REDIS_PASSWORD="not-the-password").to_contract(),
        namespace=NAMESPACE,
        name=name + "-auth",
        timeout=5,
    )
    site = await health_site(good, unreachable, wrong_password)

    # Client-library traffic: pool, commands ok and failed, latency histogram.
    client = create_async_client(settings, name=client_name)
    try:
        await client.set("greeting", "hello")
        assert await client.get("greeting") == b"hello"
        await client.rpush("jobs:list", "a", "b", "c")
        await client.xadd("jobs:stream", {"job": "1"})
        await client.xgroup_create("jobs:stream", "workers", id="0")
        await client.xreadgroup("workers", "w1", {"jobs:stream": ">"}, count=1)
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await client.lpush("greeting", "x")  # a command that fails: outcome="error"
    finally:
        await client.aclose()

    # Probe traffic: ok, unreachable and auth_failed outcomes, INFO and queue depths.
    for _ in range(3):
        status, body = await site.get("/api/health/redis")
        assert status == 503, body  # two of the three Redis endpoints are bad on purpose
    assert (await site.get(f"/api/health/redis/{NAMESPACE}/{name}"))[0] == 200
    await good.collect_details()

    status, text = await site.get("/metrics")
    assert status == 200
    families = _families(text)
    outcomes = {
        s.labels["outcome"]
        for s in families["redisqueue_probes"].samples
        if s.labels.get("name", "").startswith(name)
    }
    assert {"ok", "unreachable", "auth_failed"} <= outcomes, outcomes
    commands = {
        (s.labels["command"], s.labels["outcome"])
        for s in families["redisqueue_client_commands"].samples
        if s.labels.get("client") == client_name
    }
    assert {("SET", "ok"), ("GET", "ok"), ("LPUSH", "error")} <= commands, commands
    # Every family of ours has samples from this traffic, except the operator's reconciles.
    ours = {n for n in families if n.startswith("redisqueue_")}
    without_samples = {n for n in ours if not families[n].samples}
    assert without_samples <= {"redisqueue_reconcile", "redisqueue_reconcile_duration_seconds"}, (
        without_samples
    )

    checked = promtool.check_metrics(text)
    complaints = (checked.stderr + checked.stdout).strip()
    assert checked.returncode == 0, (
        f"promtool check metrics exited {checked.returncode}:\n{complaints}"
    )
    assert not complaints, complaints


# --------------------------------------------------------------------------- a real Prometheus


def _only_value(result: list[dict[str, Any]]) -> float | None:
    return value(result[0]) if len(result) == 1 else None


async def test_prometheus_scrapes_up_and_ping_latency_and_sees_redis_go_down(
    redis_server: RedisServer, health_site: StartSite, prometheus_server: StartPrometheus
) -> None:
    name = unique("scraped")
    probe = Probe(settings_for(redis_server).to_contract(), namespace=NAMESPACE, name=name)
    site = await health_site(probe)
    for _ in range(3):
        assert (await site.get("/api/health/redis"))[0] == 200

    prometheus: PrometheusServer = prometheus_server([site.target])

    async def probe_twice() -> None:
        for _ in range(2):
            await site.get("/api/health/redis")

    selector = f'namespace="{NAMESPACE}",name="{name}"'
    await prometheus.wait_for_async(
        f'up{{instance="{site.target}"}}', lambda r: _only_value(r) == 1.0, timeout=90
    )
    await prometheus.wait_for_async(
        f"redisqueue_up{{{selector}}}", lambda r: _only_value(r) == 1.0, timeout=60
    )

    # The PING histogram moves with the probes that health requests trigger, so its rate
    # over 30 s gives a p99 once two scrapes have seen different counts.
    def finite_quantile(result: list[dict[str, Any]]) -> bool:
        quantile = _only_value(result)
        return quantile is not None and math.isfinite(quantile)

    result = await prometheus.wait_for_async(
        "histogram_quantile(0.99, rate(redisqueue_ping_duration_seconds_bucket"
        f"{{{selector}}}[30s]))",
        finite_quantile,
        timeout=90,
        between=probe_twice,
    )
    p99 = value(result[0])
    assert 0 < p99 <= 5.0, p99  # within the histogram's buckets: a real loopback PING

    # Redis goes away: the next health request's PING fails, and Prometheus sees it.
    redis_server.stop()
    status, body = await site.get("/api/health/redis")
    assert status == 503, body
    await prometheus.wait_for_async(
        f"redisqueue_up{{{selector}}}",
        lambda r: _only_value(r) == 0.0,
        timeout=60,
        between=lambda: site.get("/api/health/redis"),
    )
    unreachable = await prometheus.wait_for_async(
        f'redisqueue_probes_total{{{selector},outcome="unreachable"}}',
        lambda r: (_only_value(r) or 0.0) >= 1.0,
        timeout=60,
    )
    assert value(unreachable[0]) >= 1.0
    # The scrape itself never failed: `up` is about the metrics endpoint, not about Redis.
    still_up = await prometheus.query_async(f'up{{instance="{site.target}"}}')
    assert _only_value(still_up) == 1.0


# --------------------------------------------------------------------------- the chart's alerts

MONITORING_API = "monitoring.coreos.com/v1"


@pytest.fixture(scope="module")
def chart_rules(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart's PrometheusRule ``spec`` (every optional alert on) as a rules file."""
    proc = control_plane.helm(
        "template",
        "redisqueue-operator",
        str(CHART),
        "--namespace",
        "redisqueue-system",
        "--api-versions",
        MONITORING_API,
        "--set",
        "metrics.prometheusRule.enabled=true,metrics.prometheusRule.depthGrowing.enabled=true",
        "--show-only",
        "templates/prometheusrule.yaml",
    )
    (rule,) = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert rule["kind"] == "PrometheusRule"
    path = tmp_path_factory.mktemp("rules") / "redisqueue-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


def _alerts(rules_file: Path) -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(rules_file.read_text())["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def _expected_alert(
    rule: dict[str, Any],
    severity: str,
    summary: str | None = None,
    description: str | None = None,
    **labels: str,
) -> dict[str, Any]:
    """The alert of ``rule`` as a promtool unit test expects it firing: ``severity`` and
    ``labels``, its runbook, and ``summary`` and ``description`` (by default the rule's own)."""
    annotations = rule["annotations"]
    return {
        "exp_labels": {"severity": severity, **labels},
        "exp_annotations": {
            "summary": annotations["summary"] if summary is None else summary,
            "runbook_url": RUNBOOK_BASE + f"{rule['alert']}.md",
            "description": annotations["description"] if description is None else description,
        },
    }


def test_chart_alert_rules_pass_promtool_check_rules(chart_rules: Path, promtool: Promtool) -> None:
    alerts = _alerts(chart_rules)
    assert set(alerts) == CHART_ALERTS | {"RedisQueueDepthGrowing"}
    checked = promtool.run("check", "rules", "--lint=all", "--lint-fatal", str(chart_rules))
    output = (checked.stdout + checked.stderr).strip()
    assert checked.returncode == 0, output
    assert f"SUCCESS: {len(alerts)} rules found" in output, output


#: Two operator replicas ("a" and "b") probe every queue. (queue, replica) -> (up, time of
#: its last completed probe), one sample per 15 s from t=0. shop/jobs is down for both from
#: t=0; shop/fine is up; shop/flaky is down for 1m30s (less than the 2m ``for:``) and then up;
#: shop/split is down only as replica a sees it (replica b gets its answers); shop/stale is
#: down for replica a while replica b's probes stopped at t=0 with its last answer "up".
DOWN_SERIES = {
    ("jobs", "a"): ("0x40", "0+15x40"),
    ("jobs", "b"): ("0x40", "0+15x40"),
    ("fine", "a"): ("1x40", "0+15x40"),
    ("fine", "b"): ("1x40", "0+15x40"),
    ("flaky", "a"): ("0x6 1x33", "0+15x40"),
    ("flaky", "b"): ("0x6 1x33", "0+15x40"),
    ("split", "a"): ("0x40", "0+15x40"),
    ("split", "b"): ("1x40", "0+15x40"),
    ("stale", "a"): ("0x40", "0+15x40"),
    ("stale", "b"): ("1x40", "0x40"),
}


def _down_unit_test(
    rules_file: Path, description: str, expectations: list[tuple[str, list[str]]]
) -> str:
    """A promtool unit test over ``DOWN_SERIES``. ``expectations``: (eval_time, the queues of
    namespace shop for which RedisQueueDown fires then, once each); no other alert of that
    name may be firing."""
    series = []
    for (queue, replica), (up, probed) in DOWN_SERIES.items():
        labels = f'namespace="shop",name="{queue}",pod="redisqueue-operator-{replica}"'
        series.append({"series": f"redisqueue_up{{{labels}}}", "values": up})
        series.append(
            {"series": f"redisqueue_last_probe_timestamp_seconds{{{labels}}}", "values": probed}
        )

    rule = _alerts(rules_file)["RedisQueueDown"]

    def firing(queue: str) -> dict[str, Any]:
        return _expected_alert(
            rule,
            "critical",
            f"Redis of RedisQueue shop/{queue} does not answer PING",
            description.replace("QUEUE", queue),
            namespace="shop",
            name=queue,
        )

    test = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "15s",
        "tests": [
            {
                "name": "RedisQueueDown fires once per queue no replica can reach, after 2m",
                "interval": "15s",
                "input_series": series,
                "alert_rule_test": [
                    {
                        "eval_time": at,
                        "alertname": "RedisQueueDown",
                        "exp_alerts": [firing(queue) for queue in queues],
                    }
                    for at, queues in expectations
                ],
            }
        ],
    }
    return yaml.safe_dump(test, sort_keys=False)


def test_redisqueue_down_fires_once_per_queue_that_no_replica_reaches_after_its_for_duration(
    chart_rules: Path, promtool: Promtool, tmp_path: Path
) -> None:
    down = _alerts(chart_rules)["RedisQueueDown"]
    assert " ".join(down["expr"].split()) == (
        "max by (namespace, name) ( redisqueue_up and "
        "(time() - redisqueue_last_probe_timestamp_seconds <= 300) ) == 0"
    )
    assert down["for"] == "2m"
    description = re.sub(
        r"\{\{ \$labels\.(namespace|name) \}\}",
        lambda m: {"namespace": "shop", "name": "QUEUE"}[m.group(1)],
        down["annotations"]["description"],
    )
    assert "{{" not in description, description

    passing = tmp_path / "redisqueue-down.test.yaml"
    passing.write_text(
        _down_unit_test(
            chart_rules,
            description,
            # shop/jobs: pending at 1m45s, firing from 2m on, once although both replicas
            # see it down. shop/split never: replica b reaches it. shop/stale: replica b's
            # stale "up" counts until its last probe is 300 s old (t=5m15s), then only
            # replica a is a witness: firing from 7m15s.
            [
                ("1m", []),
                ("1m45s", []),
                ("2m", ["jobs"]),
                ("7m", ["jobs"]),
                ("7m15s", ["jobs", "stale"]),
                ("9m", ["jobs", "stale"]),
            ],
        )
    )
    proc = promtool.run("test", "rules", str(passing))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout, proc.stdout + proc.stderr

    # Not vacuous: expecting it 15 s early, or for the queue one replica still reaches, or
    # once per replica, must each fail.
    for case, expectations in {
        "early": [("1m45s", ["jobs"])],
        "split": [("9m", ["jobs", "split", "stale"])],
        "per-replica": [("2m", ["jobs", "jobs"])],
    }.items():
        wrong = tmp_path / f"redisqueue-down-{case}.test.yaml"
        wrong.write_text(_down_unit_test(chart_rules, description, expectations))
        proc = promtool.run("test", "rules", str(wrong))
        assert proc.returncode != 0, (case, proc.stdout + proc.stderr)
        assert "RedisQueueDown" in proc.stdout + proc.stderr


# ------------------------------------------------------------- alerts that cannot go silent


def test_every_alert_links_a_runbook_that_exists_in_the_repo(chart_rules: Path) -> None:
    alerts = _alerts(chart_rules)
    index = (RUNBOOKS / "README.md").read_text()
    for name, rule in alerts.items():
        url = rule["annotations"]["runbook_url"]
        assert url == f"{RUNBOOK_BASE}{name}.md", url
        page = RUNBOOKS / f"{name}.md"
        assert page.is_file(), f"{name}: no runbook at {page}"
        text = page.read_text()
        assert text.startswith(f"# {name}\n"), f"{page} does not start with its alert's name"
        assert "**Meaning.**" in text and "**Resolve.**" in text, f"{page} lacks a section"
        assert f"({name}.md)" in index, f"docs/runbooks/README.md does not list {name}"
    pages = {p.stem for p in RUNBOOKS.glob("*.md")} - {"README"}
    assert pages == set(alerts), "a runbook for an alert the chart does not have"


def _alert_unit_test(
    rules_file: Path,
    name: str,
    alertname: str,
    series: list[tuple[str, str]],
    expectations: list[tuple[str, list[dict[str, Any]]]],
) -> str:
    """One promtool unit test: ``series`` as (selector, values), then, per eval time,
    exactly the alerts ``alertname`` must have firing (labels and annotations)."""
    test = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "15s",
        "tests": [
            {
                "name": name,
                "interval": "15s",
                "input_series": [{"series": s, "values": v} for s, v in series],
                "alert_rule_test": [
                    {"eval_time": at, "alertname": alertname, "exp_alerts": alerts}
                    for at, alerts in expectations
                ],
            }
        ],
    }
    return yaml.safe_dump(test, sort_keys=False)


def _promtool_test(promtool: Promtool, path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path.write_text(text)
    return promtool.run("test", "rules", str(path))


def test_probes_stopped_fires_when_a_queue_is_no_longer_probed_and_not_before(
    chart_rules: Path, promtool: Promtool, tmp_path: Path
) -> None:
    rule = _alerts(chart_rules)["RedisQueueProbesStopped"]
    expr = " ".join(rule["expr"].split())
    assert expr == (
        "time() - max by (namespace, name) (redisqueue_last_probe_timestamp_seconds) > 300"
    ), expr
    assert rule["for"] == "2m"
    # shop/fresh is probed every 15 s (its timestamp follows the clock); shop/stuck's last
    # probe completed at t=120s and its timestamp stays there, as the operator keeps
    # exporting it. Its age passes 300 s at t=7m15s: pending, then firing 2m later.
    series = [
        ('redisqueue_last_probe_timestamp_seconds{namespace="shop",name="fresh"}', "0+15x60"),
        ('redisqueue_last_probe_timestamp_seconds{namespace="shop",name="stuck"}', "0+15x8 120x52"),
    ]

    def firing(age: str) -> list[dict[str, Any]]:
        return [
            _expected_alert(
                rule,
                "critical",
                f"No PING of RedisQueue shop/stuck for {age}",
                namespace="shop",
                name="stuck",
            )
        ]

    passing = _promtool_test(
        promtool,
        tmp_path / "probes-stopped.test.yaml",
        _alert_unit_test(
            chart_rules,
            "RedisQueueProbesStopped fires only for the queue whose probes stopped",
            "RedisQueueProbesStopped",
            series,
            [
                ("2m", []),
                ("7m", []),
                ("9m", []),
                ("10m", firing("8m 0s")),
                ("14m", firing("12m 0s")),
            ],
        ),
    )
    assert passing.returncode == 0, passing.stdout + passing.stderr

    # Expecting it while shop/stuck is merely pending must fail: the test is not vacuous.
    early = _promtool_test(
        promtool,
        tmp_path / "probes-stopped-early.test.yaml",
        _alert_unit_test(
            chart_rules, "early", "RedisQueueProbesStopped", series, [("9m", firing("7m 0s"))]
        ),
    )
    assert early.returncode != 0, early.stdout + early.stderr
    assert "RedisQueueProbesStopped" in early.stdout + early.stderr


def test_operator_absent_fires_when_its_target_is_down_or_gone_and_not_while_scraped(
    chart_rules: Path, promtool: Promtool, tmp_path: Path
) -> None:
    rule = _alerts(chart_rules)["RedisQueueOperatorAbsent"]
    expr = rule["expr"]
    assert expr == 'absent(up{job="redisqueue-operator", namespace="redisqueue-system"} == 1)'
    assert rule["for"] == "5m"
    target = 'up{job="redisqueue-operator",namespace="redisqueue-system",instance="a:8080"}'
    # Another job that is up does not hide the operator's absence.
    other = 'up{job="prometheus",namespace="monitoring",instance="b:9090"}'
    firing = [_expected_alert(rule, "critical")]
    cases = {
        # scraped fine for 5m, then every scrape fails (up == 0) from t=5m15s
        "down": [(target, "1x20 0x40"), (other, "1x60")],
        # scraped fine for 5m, then the target disappears (stale marker, no more samples)
        "gone": [(target, "1x20 stale"), (other, "1x60")],
    }
    for case, series in cases.items():
        proc = _promtool_test(
            promtool,
            tmp_path / f"operator-absent-{case}.test.yaml",
            _alert_unit_test(
                chart_rules,
                f"RedisQueueOperatorAbsent fires 5m after the operator's target is {case}",
                "RedisQueueOperatorAbsent",
                series,
                [("5m", []), ("10m", []), ("10m30s", firing), ("14m", firing)],
            ),
        )
        assert proc.returncode == 0, f"{case}: {proc.stdout}{proc.stderr}"

    healthy = _promtool_test(
        promtool,
        tmp_path / "operator-absent-healthy.test.yaml",
        _alert_unit_test(
            chart_rules,
            "RedisQueueOperatorAbsent stays quiet while the operator is scraped",
            "RedisQueueOperatorAbsent",
            [(target, "1x60"), (other, "1x60")],
            [("1m", []), ("6m", []), ("14m", [])],
        ),
    )
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr

    # Expecting it while only pending must fail: the tests above are not vacuous.
    early = _promtool_test(
        promtool,
        tmp_path / "operator-absent-early.test.yaml",
        _alert_unit_test(
            chart_rules, "early", "RedisQueueOperatorAbsent", cases["down"], [("10m", firing)]
        ),
    )
    assert early.returncode != 0, early.stdout + early.stderr


def test_a_one_sided_failure_is_only_a_warning_after_ten_minutes(
    chart_rules: Path, promtool: Promtool, tmp_path: Path
) -> None:
    """Each replica exports its own series (pod a, pod b). shop/split is reached by pod a
    only: RedisQueueDown stays quiet, and after 10 minutes one RedisQueuePartiallyUnreachable
    fires for it. A replica whose probes stopped is no witness either way."""
    rule = _alerts(chart_rules)["RedisQueuePartiallyUnreachable"]
    fresh = "0+15x60"  # probed every 15 s
    series = [
        ('redisqueue_up{namespace="shop",name="split",pod="a"}', "1x60"),
        ('redisqueue_up{namespace="shop",name="split",pod="b"}', "0x60"),
        ('redisqueue_last_probe_timestamp_seconds{namespace="shop",name="split",pod="a"}', fresh),
        ('redisqueue_last_probe_timestamp_seconds{namespace="shop",name="split",pod="b"}', fresh),
        # shop/stale: pod b's probes stopped long ago at up=0; pod a reaches Redis
        ('redisqueue_up{namespace="shop",name="stale",pod="a"}', "1x60"),
        ('redisqueue_up{namespace="shop",name="stale",pod="b"}', "0x60"),
        ('redisqueue_last_probe_timestamp_seconds{namespace="shop",name="stale",pod="a"}', fresh),
        ('redisqueue_last_probe_timestamp_seconds{namespace="shop",name="stale",pod="b"}', "0x60"),
    ]
    firing = [
        _expected_alert(
            rule,
            "warning",
            rule["annotations"]["summary"]
            .replace("{{ $labels.namespace }}", "shop")
            .replace("{{ $labels.name }}", "split"),
            namespace="shop",
            name="split",
        )
    ]
    for alertname, expectations in (
        ("RedisQueuePartiallyUnreachable", [("9m", []), ("11m", firing), ("14m", firing)]),
        ("RedisQueueDown", [("3m", []), ("14m", [])]),
    ):
        proc = _promtool_test(
            promtool,
            tmp_path / f"{alertname}.test.yaml",
            _alert_unit_test(chart_rules, alertname, alertname, series, expectations),
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_leader_fires_when_replicas_are_scraped_but_none_leads(
    chart_rules: Path, promtool: Promtool, tmp_path: Path
) -> None:
    rule = _alerts(chart_rules)["RedisQueueOperatorNoLeader"]
    assert rule["for"] == "2m"
    where = 'job="redisqueue-operator",namespace="redisqueue-system"'
    a = "redisqueue_operator_leader{" + where + ',pod="a"}'
    b = "redisqueue_operator_leader{" + where + ',pod="b"}'
    firing = [_expected_alert(rule, "critical")]
    # a leads for 5m, then loses the Lease and nobody takes over (say its RBAC broke);
    # b stands by throughout.
    series = [(a, "1x20 0x40"), (b, "0x60")]
    proc = _promtool_test(
        promtool,
        tmp_path / "no-leader.test.yaml",
        _alert_unit_test(
            chart_rules,
            "NoLeader fires 2m after the last leader is gone",
            "RedisQueueOperatorNoLeader",
            series,
            [("4m", []), ("6m", []), ("7m30s", firing)],
        ),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    handover = _promtool_test(
        promtool,
        tmp_path / "handover.test.yaml",
        _alert_unit_test(
            chart_rules,
            "a failover that completes within 2m is not an alert",
            "RedisQueueOperatorNoLeader",
            [(a, "1x20 0x40"), (b, "0x24 1x36")],
            [("6m", []), ("9m", [])],
        ),
    )
    assert handover.returncode == 0, handover.stdout + handover.stderr
