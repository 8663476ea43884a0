"""The running operator's logs and /metrics, as a log pipeline and Prometheus see them.

The operator runs with the install path's ServiceAccount and ``--log-format json`` given
after the subcommand. A RedisQueue goes through create, an outage of its Redis, recovery and
delete; every line the operator wrote must be one JSON object, every line about the
RedisQueue (the operator's and kopf's own) must name it in ``namespace``/``name``, and none
may hold the password.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.kube_controlplane import ControlPlane
from harness.operator_harness import (
    ExternalQueue,
    OperatorProcess,
    eventually,
    external_spec,
    installed_operator,
    rq_path,
    wait_for_ready,
)
from harness.redis_server import RedisServer
from redisqueue import __version__
from redisqueue.controller.api.kube import Kube

pytestmark = pytest.mark.k8s


@pytest.fixture(scope="module")
def json_operator(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    with installed_operator(
        control_plane,
        tmp_path_factory.mktemp("operator-json"),
        operator_args=("--log-format", "json", "--log-level", "DEBUG"),
    ) as process:
        yield process


def _lines(operator: OperatorProcess) -> list[dict[str, Any]]:
    parsed = []
    for number, raw in enumerate(operator.logs().splitlines(), 1):
        try:
            parsed.append(json.loads(raw))
        except json.JSONDecodeError:
            pytest.fail(f"operator log line {number} is not JSON: {raw!r}")
    return parsed


async def test_json_logs_name_the_redisqueue_on_every_line_about_it(
    json_operator: OperatorProcess,
    kube: Kube,
    namespace: str,
    redis_server: RedisServer,
    external_queue: ExternalQueue,
) -> None:
    assert redis_server.password
    name = "logged"
    await external_queue(name, external_spec(redis_server, inject=[{"secretName": "app-redis"}]))
    redis_server.stop()
    await wait_for_ready(kube, namespace, name, status="False")
    redis_server.start()
    await wait_for_ready(kube, namespace, name)
    await kube.delete(rq_path(namespace, name))

    async def gone() -> bool:
        return await kube.get(rq_path(namespace, name)) is None

    await eventually(gone, what="the RedisQueue to be finalized and deleted")

    async def cleaned_up() -> list[dict[str, Any]]:
        return [
            line
            for line in _lines(json_operator)
            if line.get("name") == name and "cleaned up" in line["message"]
        ]

    await eventually(cleaned_up, what="the operator's clean-up line")

    lines = _lines(json_operator)
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    about = [line for line in lines if f"{namespace}/{name}" in line["message"]]
    kopf = [
        line
        for line in lines
        if line["logger"].startswith("kopf.objects") and line.get("namespace") == namespace
    ]
    # kopf's own per-object lines (handler results, finalizer changes) name it ...
    assert kopf, "no kopf line about the RedisQueue"
    assert all(line["name"] == name for line in kopf), kopf
    # ... and so do the operator's: connected, lost, recovered, cleaned up.
    ours = [line for line in about if line["logger"].startswith("redisqueue")]
    messages = " | ".join(line["message"] for line in ours)
    for event in ("connected", "recovered after", "cleaned up"):
        assert event in messages, messages
    unnamed = [
        line for line in about if (line.get("namespace"), line.get("name")) != (namespace, name)
    ]
    assert unnamed == [], unnamed
    assert redis_server.password not in json_operator.logs()


def test_metrics_carry_build_info_and_no_created_series(json_operator: OperatorProcess) -> None:
    # Runs after the test above, so counters and histograms have children to report.
    status, text = json_operator.http("/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text)}
    (sample,) = [
        s for f in families.values() for s in f.samples if s.name.startswith("redisqueue_build")
    ]
    assert sample.name == "redisqueue_build_info" and sample.value == 1.0
    assert sample.labels["version"] == __version__
    assert re.fullmatch(r"3\.\d+\.\d+", sample.labels["python_version"])
    assert [s for s in families["redisqueue_reconcile"].samples if s.value > 0]
    created = [line for line in text.splitlines() if "_created" in line]
    assert created == [], created[:5]


CREATED_PROBE = """
from prometheus_client import generate_latest
from redisqueue.controller.telemetry import metrics
kept = metrics.configure_created_series()
metrics.RECONCILES.labels("success").inc()
print(kept)
print(generate_latest().decode())
"""


@pytest.mark.parametrize(("asked", "present"), [("", False), ("true", True)])
def test_created_series_only_when_asked(asked: str, present: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDISQUEUE_METRICS_CREATED_SERIES"}
    if asked:
        env["REDISQUEUE_METRICS_CREATED_SERIES"] = asked
    proc = subprocess.run(
        [sys.executable, "-c", CREATED_PROBE], capture_output=True, text=True, env=env, check=True
    )
    first, exposition = proc.stdout.split("\n", 1)
    assert first == str(present)
    assert ("redisqueue_reconcile_created{" in exposition) is present, exposition
    assert 'redisqueue_reconcile_total{outcome="success"} 1.0' in exposition
