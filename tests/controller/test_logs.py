"""Log formats: text for people, JSON for pipelines; lines about a RedisQueue name it."""

from __future__ import annotations

import json
import logging
import socket
import sys

import aiohttp
import kopf
import pytest
from kopf._cogs.clients import api as kopf_api
from kopf._cogs.clients import auth as kopf_auth

from redisqueue.controller.telemetry.logs import JsonFormatter, TextFormatter, about, configure


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("redisqueue.operator", logging.INFO, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


KOPF_REF = {"apiVersion": "redisqueue.dev/v1alpha1", "kind": "RedisQueue"}


def test_json_line_of_our_own_names_the_redisqueue() -> None:
    record = _record("%s/%s: cleaned up", "shop", "jobs", **about("shop", "jobs"))
    line = json.loads(JsonFormatter().format(record))
    assert line["namespace"] == "shop" and line["name"] == "jobs"
    assert line["message"] == "shop/jobs: cleaned up"
    assert line["level"] == "INFO" and line["logger"] == "redisqueue.operator"
    assert line["time"].endswith("+00:00")


def test_json_line_of_kopf_names_the_object_from_its_reference() -> None:
    record = _record(
        "Handler 'reconcile' succeeded.",
        k8s_ref={**KOPF_REF, "namespace": "shop", "name": "jobs", "uid": "u1"},
    )
    record.name = "kopf.objects"
    line = json.loads(JsonFormatter().format(record))
    assert (line["namespace"], line["name"]) == ("shop", "jobs")
    assert line["message"] == "Handler 'reconcile' succeeded."


def test_json_line_about_nothing_in_particular_has_no_object_fields() -> None:
    line = json.loads(JsonFormatter().format(_record("watching %d namespaces", 3)))
    assert "namespace" not in line and "name" not in line
    assert line["message"] == "watching 3 namespaces"


def test_json_line_carries_the_exception_as_one_field() -> None:
    try:
        raise ValueError("bad thing")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), None)
        record.exc_info = sys.exc_info()
    text = JsonFormatter().format(record)
    assert "\n" not in text  # one line, whatever the traceback
    assert "ValueError: bad thing" in json.loads(text)["exception"]


def test_text_line_of_kopf_gets_the_namespace_name_prefix_ours_already_have() -> None:
    formatter = TextFormatter()
    kopf = _record(
        "Handler 'reconcile' succeeded.", k8s_ref={**KOPF_REF, "namespace": "shop", "name": "jobs"}
    )
    assert formatter.format(kopf).endswith(": shop/jobs: Handler 'reconcile' succeeded.")
    ours = _record("%s/%s: cleaned up", "shop", "jobs", **about("shop", "jobs"))
    assert formatter.format(ours).endswith(": shop/jobs: cleaned up")  # not twice


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_configure_replaces_the_root_handlers(fmt: str) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure("WARNING", fmt)  # type: ignore[arg-type]
        (handler,) = root.handlers
        assert isinstance(handler.formatter, JsonFormatter if fmt == "json" else TextFormatter)
        assert root.level == logging.WARNING
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


async def test_a_request_kopf_retries_is_a_warning_and_the_one_it_gives_up_on_an_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # kopf's own request routine against a loopback port nothing listens on: one retry, then
    # it gives up. Both attempts fail for real (connection refused).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure("INFO", "json")
    context = kopf_auth.APIContext(kopf.ConnectionInfo(server=f"https://127.0.0.1:{port}"))
    try:
        with pytest.raises(aiohttp.ClientConnectionError):
            await kopf_api.request(
                "get",
                "/api",
                settings=kopf.OperatorSettings(),
                backoffs=[0],
                context=context,
                logger=logging.getLogger("kopf._cogs.clients.api"),
            )
    finally:
        await context.session.close()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    attempts = [
        (line["level"], line["message"]) for line in lines if "Request attempt" in line["message"]
    ]
    assert len(attempts) == 2, lines
    assert attempts[0][0] == "WARNING" and "; will retry:" in attempts[0][1]
    assert attempts[1][0] == "ERROR" and "; escalating:" in attempts[1][1]
