"""The health/metrics server against real redis-servers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families

from harness.redis_server import RedisServer, TLSFiles
from redisqueue.contract import ConnectionContract
from redisqueue.controller.probing.probe import Probe
from redisqueue.controller.serving.health import ProbeList, create_app

MakeClient = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    clients: list[TestClient] = []
    probes: list[Probe] = []

    async def make(
        *contracts: tuple[str, ConnectionContract], timeout: float = 1.0, liveness=None
    ) -> TestClient:  # type: ignore[no-untyped-def]
        made = [Probe(c, namespace="test", name=n, timeout=timeout) for n, c in contracts]
        probes.extend(made)
        registry = ProbeList(*made)
        kwargs = {"liveness": liveness} if liveness else {}
        client = TestClient(TestServer(create_app(registry, **kwargs)))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.close()
    for p in probes:
        await p.close()


def contract_for(server: RedisServer, **overrides: object) -> ConnectionContract:
    fields: dict[str, object] = {
        "host": server.host,
        "port": server.port,
        "password": server.password,
    }
    fields.update(overrides)
    return ConnectionContract(**fields)  # type: ignore[arg-type]


async def test_connected_with_latency_when_redis_answers(
    redis_server: RedisServer, make_client: MakeClient
) -> None:
    client = await make_client(("q", contract_for(redis_server)))
    response = await client.get("/api/health/redis")
    body = await response.json()
    assert response.status == 200
    assert body["status"] == "connected"
    assert body["latency"].endswith("ms") and float(body["latency"][:-2]) >= 0
    assert response.headers["Cache-Control"] == "no-store"


async def test_disconnected_when_stopped_and_connected_again_after_restart(
    redis_server: RedisServer, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client = await make_client(("q", contract_for(redis_server)))
    assert (await client.get("/api/health/redis")).status == 200
    redis_server.stop()
    response = await client.get("/api/health/redis")
    body = await response.json()
    assert response.status == 503
    assert body["status"] == "disconnected"
    assert redis_server.endpoint in body["error"] and "cannot connect" in body["error"]
    redis_server.start()
    response = await client.get("/api/health/redis")
    assert response.status == 200, await response.text()
    assert "recovered after" in caplog.text and "lost" in caplog.text


async def test_wrong_password_is_an_auth_error_without_the_password(
    redis_server: RedisServer, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-pw-0123456789"
    client = await make_client(("q", contract_for(redis_server, password=wrong)))
    response = await client.get("/api/health/redis")
    text = await response.text()
    assert response.status == 503
    assert "authentication failed" in text and redis_server.endpoint in text
    assert wrong not in text and wrong not in caplog.text
    assert redis_server.password not in text
    metrics = await (await client.get("/metrics")).text()
    assert wrong not in metrics and 'outcome="auth_failed"' in metrics


async def test_one_queue_down_makes_the_whole_answer_503_and_per_queue_detail_says_which(
    redis_server: RedisServer,
    tmp_path,
    make_client: MakeClient,  # type: ignore[no-untyped-def]
) -> None:
    other = RedisServer(tmp_path / "other").start()
    client = await make_client(("up", contract_for(redis_server)), ("down", contract_for(other)))
    other.stop()
    response = await client.get("/api/health/redis")
    body = await response.json()
    assert response.status == 503
    assert other.endpoint in body["error"] and redis_server.endpoint not in body["error"]
    assert body["failed"] == ["test/down"] and body["checked"] == 2
    assert (await client.get("/api/health/redis/test/up")).status == 200
    assert (await client.get("/api/health/redis/test/down")).status == 503
    missing = await client.get("/api/health/redis/test/nope")
    assert missing.status == 404 and "test/nope" in (await missing.json())["error"]


async def test_tls_probe_verifies_against_the_given_ca(
    tls_redis_server: RedisServer, tls_files: TLSFiles, make_client: MakeClient
) -> None:
    trusted = contract_for(
        tls_redis_server, host="localhost", tls=True, tls_ca_cert=tls_files.ca_pem
    )
    untrusted = contract_for(tls_redis_server, host="localhost", tls=True)
    plain = contract_for(tls_redis_server, host="localhost")
    client = await make_client(("trusted", trusted), ("untrusted", untrusted), ("plain", plain))
    assert (await client.get("/api/health/redis/test/trusted")).status == 200
    bad = await (await client.get("/api/health/redis/test/untrusted")).json()
    assert bad["reason"] == "tls_error" and "certificate verify failed" in bad["error"]
    no_tls = await (await client.get("/api/health/redis/test/plain")).json()
    assert no_tls["status"] == "disconnected"


async def _ping_calls(server: RedisServer) -> int:
    admin = redis.asyncio.Redis(host=server.host, port=server.port, password=server.password)
    stats = await admin.info("commandstats")
    await admin.aclose()
    return int(stats.get("cmdstat_ping", {}).get("calls", 0))


async def test_a_burst_shares_pings_but_each_answer_is_from_a_ping_sent_after_it_arrived(
    redis_server: RedisServer,
) -> None:
    probe = Probe(contract_for(redis_server), namespace="test", name="burst", timeout=5)
    await probe.check()  # warm the connection
    before = await _ping_calls(redis_server)
    # Hold the first PING in flight for real: the server stops answering for 300 ms.
    admin = redis.asyncio.Redis(
        host=redis_server.host, port=redis_server.port, password=redis_server.password
    )
    await admin.execute_command("CLIENT", "PAUSE", "300", "ALL")
    first = asyncio.create_task(probe.check())
    await asyncio.sleep(0.1)
    late_arrivals = [asyncio.create_task(probe.check()) for _ in range(50)]
    results = await asyncio.gather(first, *late_arrivals)
    await admin.aclose()
    assert all(r.ok for r in results)
    assert all(r is results[1] for r in results[1:])  # the 50 late ones share one PING
    assert results[1] is not results[0]  # ...and it is not the one already in flight
    assert results[1].at >= results[0].at
    assert await _ping_calls(redis_server) - before == 2
    await probe.close()


async def test_metrics_exposition_is_valid_and_has_the_families(
    redis_server: RedisServer, make_client: MakeClient
) -> None:
    client = await make_client(("q", contract_for(redis_server)))
    await client.get("/api/health/redis")
    text = await (await client.get("/metrics")).text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "redisqueue_up",
        "redisqueue_ping_duration_seconds",
        "redisqueue_probes",
        "redisqueue_client_commands",
        "redisqueue_client_command_duration_seconds",
        "redisqueue_client_retries",
        "redisqueue_client_reconnects",
        "redisqueue_client_connections",
        "redisqueue_client_connections_max",
    ):
        assert name in families, name
    up = [s for s in families["redisqueue_up"].samples if s.labels["name"] == "q"]
    assert up and up[0].value == 1.0
    om = await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert om.headers["Content-Type"].startswith("application/openmetrics-text")
    assert any(f.name == "redisqueue_up" for f in om_parse(await om.text()))


async def test_liveness_reports_the_callers_verdict(make_client: MakeClient) -> None:
    healthy = await make_client()
    assert (await healthy.get("/healthz")).status == 200
    stuck = await make_client(liveness=lambda: (False, "no event processed for 300 s"))
    response = await stuck.get("/healthz")
    assert response.status == 503 and "300 s" in (await response.json())["message"]


async def test_nothing_watched_yet_answers_200_with_checked_zero() -> None:
    client = TestClient(TestServer(create_app(ProbeList())))
    await client.start_server()
    try:
        for _ in range(2):  # the first answer and the cached one alike
            response = await client.get("/api/health/redis")
            assert response.status == 200
            body = await response.json()
            assert body["status"] == "connected" and body["checked"] == 0
    finally:
        await client.close()


async def test_a_scoped_answer_covers_and_names_only_its_scope(
    redis_server: RedisServer,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    other = RedisServer(tmp_path / "other").start()
    placed = [
        ("team-a", "jobs", contract_for(redis_server), {"team": "a", "tier": "web"}),
        ("team-b", "broken", contract_for(other), {"team": "b"}),
        ("team-b", "fine", contract_for(redis_server), {"team": "b", "tier": "batch"}),
    ]
    probes = [Probe(c, namespace=ns, name=n, timeout=1.0) for ns, n, c, _ in placed]
    registry = ProbeList(*probes, labels={(ns, n): labels for ns, n, _, labels in placed})
    other.stop()
    client = TestClient(TestServer(create_app(registry)))
    await client.start_server()
    try:
        everyone = await client.get("/api/health/redis")
        assert everyone.status == 503

        team_a = await client.get("/api/health/redis", params={"namespace": "team-a"})
        body = await team_a.json()
        assert team_a.status == 200 and body["checked"] == 1

        team_b = await client.get("/api/health/redis", params={"namespace": "team-b"})
        text = await team_b.text()
        body = await team_b.json()
        assert team_b.status == 503 and body["failed"] == ["team-b/broken"]
        assert "team-a" not in text and redis_server.endpoint not in text

        cases = {
            "tier": 2,
            "tier=batch": 1,
            "team!=b": 1,
            "!tier": 1,
            "team in (a, b),tier notin (web)": 2,
            "team=c": 0,
        }
        for selector, checked in cases.items():
            response = await client.get("/api/health/redis", params={"labelSelector": selector})
            assert (await response.json())["checked"] == checked, selector
        healthy = await client.get(
            "/api/health/redis", params={"namespace": "team-b", "labelSelector": "tier=batch"}
        )
        assert healthy.status == 200

        bad = await client.get("/api/health/redis", params={"labelSelector": "a=(b"})
        assert bad.status == 400
        assert "labelSelector" in (await bad.json())["error"]
    finally:
        await client.close()
        for probe in probes:
            await probe.close()
