"""The client library against a real redis-server: pool cap, retries, reconnects, metrics."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import REGISTRY
from redis.exceptions import AuthenticationError

from harness.library import pool_settings, retrying_settings, sample, settings_for
from harness.redis_server import RedisServer, TLSFiles
from redisqueue.client import create_async_client, create_client
from redisqueue.settings import load_settings


async def test_500_tasks_never_open_more_than_the_cap_and_all_complete(
    redis_server: RedisServer,
) -> None:
    settings = pool_settings(redis_server, max_connections=50, timeout=30)
    client = create_async_client(settings, name="cap-test")
    await client.client_setname("cap-test")
    peak = 0
    stop = asyncio.Event()

    async def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            # every connection on this fresh server is ours, but for redis-cli's own
            mine = [
                c
                for c in await asyncio.to_thread(redis_server.client_list)
                if c.get("cmd") != "client|list"
            ]
            peak = max(peak, len(mine))
            await asyncio.sleep(0.01)

    async def job(i: int) -> int:
        # BLPOP with a short block holds a connection long enough to force waiting
        await client.blpop([f"nothing:{i}"], timeout=0.05)
        await client.incr("done")
        return i

    watcher = asyncio.create_task(watch())
    results = await asyncio.gather(*(job(i) for i in range(500)))
    stop.set()
    await watcher
    assert sorted(results) == list(range(500))
    assert int(await client.get("done")) == 500
    assert 25 <= peak <= 50, peak  # the pool really filled up, and never went past the cap
    assert sample("redisqueue_client_connections_max", client="cap-test") == 50
    await client.aclose()


def test_sync_pool_cap_with_threads(redis_server: RedisServer) -> None:
    settings = pool_settings(redis_server, max_connections=5, timeout=30)
    client = create_client(settings, name="sync-cap")
    errors: list[BaseException] = []

    def work() -> None:
        try:
            client.blpop(["never"], timeout=0.05)
            client.incr("n")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert int(client.get("n")) == 40
    pool = client.connection_pool
    assert len(pool._connections) <= 5  # type: ignore[attr-defined]
    client.close()


def test_pool_timeout_fails_clearly_when_every_connection_is_busy(
    redis_server: RedisServer,
) -> None:
    settings = pool_settings(redis_server, max_connections=1, timeout=0.2)
    client = create_client(settings, name="timeout-test")
    holder = threading.Thread(target=lambda: client.blpop(["never"], timeout=1))
    holder.start()
    time.sleep(0.1)
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError, match="No connection available"):
        client.ping()
    assert time.monotonic() - started < 0.9
    holder.join()
    client.close()


async def test_commands_during_a_restart_succeed_once_redis_is_back(
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="redisqueue.client")
    settings = retrying_settings(redis_server, base=0.1, cap=0.5, attempts=20)
    client = create_async_client(settings, name="restart-test")
    await client.set("k", "v")
    retries_before = sample("redisqueue_client_retries_total", client="restart-test")
    # Stopped while the app's loop runs (as in production), so the client sees its idle
    # connection closed before it writes the next command, which then waits for the restart.
    await asyncio.to_thread(redis_server.stop)
    restarter = asyncio.get_running_loop().run_in_executor(
        None, lambda: (time.sleep(1.0), redis_server.start())
    )
    started = time.monotonic()
    value = await client.incr("counter")  # issued while Redis is down
    await restarter
    assert value == 1  # the restarted server has no data: the command ran on the new one
    assert time.monotonic() - started < 10
    assert sample("redisqueue_client_retries_total", client="restart-test") > retries_before
    assert sample("redisqueue_client_reconnects_total", client="restart-test") >= 1
    text = caplog.text
    assert "retrying in" in text and "recovered after" in text
    assert redis_server.password not in text
    await client.aclose()


def test_startup_against_a_redis_that_comes_up_late(tmp_path) -> None:  # type: ignore[no-untyped-def]
    late = RedisServer(tmp_path / "late", password="late-pw")
    settings = load_settings(
        {
            "REDIS_URL": f"redis://{late.endpoint}/0",
            "REDIS_PASSWORD": "late-pw",
            "REDIS_BACKOFF_BASE_SECONDS": "0.1",
            "REDIS_BACKOFF_CAP_SECONDS": "0.4",
            "REDIS_RETRY_ATTEMPTS": "30",
        },
        env_file=None,
    )
    client = create_client(settings, name="late-start")
    timer = threading.Timer(1.0, late.start)
    timer.start()
    try:
        assert client.ping() is True
    finally:
        timer.join()
        late.stop()
        client.close()


def test_wrong_password_fails_fast_without_retries(redis_server: RedisServer) -> None:
    settings = settings_for(redis_server, REDIS_PASSWORD="wrong-password-123")
    client = create_client(settings, name="wrong-pw")
    started = time.monotonic()
    with pytest.raises(AuthenticationError) as caught:
        client.ping()
    assert time.monotonic() - started < 0.9  # a 1 s backoff would have shown
    assert "wrong-password-123" not in str(caught.value)
    assert sample("redisqueue_client_retries_total", client="wrong-pw") == 0
    client.close()


async def test_wrong_password_fails_fast_without_retries_on_the_async_client(
    redis_server: RedisServer,
) -> None:
    settings = settings_for(redis_server, REDIS_PASSWORD="wrong-password-456")
    client = create_async_client(settings, name="wrong-pw-async")
    started = time.monotonic()
    with pytest.raises(AuthenticationError) as caught:
        await asyncio.wait_for(client.ping(), timeout=20)
    assert time.monotonic() - started < 0.9  # a 1 s backoff would have shown
    assert "wrong-password-456" not in str(caught.value)
    assert sample("redisqueue_client_retries_total", client="wrong-pw-async") == 0
    await client.aclose()


async def test_tls_client_verifies_the_server_certificate(
    tls_redis_server: RedisServer, tls_files: TLSFiles
) -> None:
    base = {
        "REDIS_URL": f"rediss://localhost:{tls_redis_server.port}/0",
        "REDIS_PASSWORD": tls_redis_server.password or "",
        "REDIS_RETRY_ATTEMPTS": "0",
    }
    good = create_async_client(
        load_settings({**base, "REDIS_TLS_CA_CERT": tls_files.ca_pem}, env_file=None),
        name="tls-good",
    )
    assert await good.ping() is True
    await good.aclose()
    untrusted = create_async_client(load_settings(base, env_file=None), name="tls-bad")
    with pytest.raises(redis.ConnectionError, match=r"(?i)certificate verify failed"):
        await untrusted.ping()
    await untrusted.aclose()


async def test_metrics_after_traffic(redis_server: RedisServer) -> None:
    client = create_async_client(settings_for(redis_server), name="metrics-test")
    for i in range(20):
        await client.set(f"k{i}", i)
        await client.get(f"k{i}")
    with pytest.raises(redis.ResponseError):
        await client.execute_command("NOSUCHCOMMAND")
    assert (
        sample(
            "redisqueue_client_commands_total", client="metrics-test", command="SET", outcome="ok"
        )
        == 20
    )
    assert (
        sample(
            "redisqueue_client_commands_total",
            client="metrics-test",
            command="NOSUCHCOMMAND",
            outcome="error",
        )
        == 1
    )
    assert (
        sample(
            "redisqueue_client_command_duration_seconds_count", client="metrics-test", command="GET"
        )
        == 20
    )
    buckets = {
        le: REGISTRY.get_sample_value(
            "redisqueue_client_command_duration_seconds_bucket",
            {"client": "metrics-test", "command": "GET", "le": le},
        )
        for le in ("0.0001", "0.00025", "0.0005", "0.001", "+Inf")
    }
    # sub-millisecond buckets are exposed, cumulative, and +Inf counts every GET
    assert None not in buckets.values(), buckets
    counts = [buckets[le] for le in ("0.0001", "0.00025", "0.0005", "0.001", "+Inf")]
    assert counts == sorted(counts) and buckets["+Inf"] == 20
    assert sample("redisqueue_client_connections", client="metrics-test", state="idle") >= 1
    assert sample("redisqueue_client_connections_opened_total", client="metrics-test") >= 1
    await client.aclose()


def test_redis_py_keyword_arguments_pass_through(redis_server: RedisServer) -> None:
    client = create_client(
        settings_for(redis_server),
        name="kwargs",
        decode_responses=True,
        client_name="analysis-worker-7",
        health_check_interval=3,
        socket_timeout=2.5,
    )
    client.set("greeting", "hello")
    assert client.get("greeting") == "hello"  # str, not bytes
    names = {c.get("name") for c in redis_server.client_list()}
    assert "analysis-worker-7" in names
    conn = client.connection_pool.get_connection()
    try:
        assert (conn.health_check_interval, conn.socket_timeout) == (3, 2.5)
    finally:
        client.connection_pool.release(conn)
    # the contract's pool is still the one in charge
    assert client.connection_pool.max_connections == 50
    client.close()


@pytest.mark.parametrize(
    ("kwarg", "variable"),
    [
        ("max_connections", "REDIS_POOL_MAX_CONNECTIONS"),
        ("retry", "REDIS_RETRY_ATTEMPTS"),
        ("password", "REDIS_PASSWORD"),
        ("connection_pool", "REDIS_POOL_MAX_CONNECTIONS"),
    ],
)
def test_keyword_arguments_the_contract_owns_are_refused(
    redis_server: RedisServer, kwarg: str, variable: str
) -> None:
    with pytest.raises(TypeError, match=variable):
        create_client(settings_for(redis_server), **{kwarg: object()})


def test_a_misspelt_keyword_argument_fails_at_creation(redis_server: RedisServer) -> None:
    with pytest.raises(TypeError, match="decode_responsez"):
        create_async_client(settings_for(redis_server), decode_responsez=True)


def test_url_query_parameters_are_honoured(redis_server: RedisServer) -> None:
    settings = load_settings(
        {
            "REDIS_URL": f"redis://{redis_server.endpoint}/3?client_name=from-url"
            "&health_check_interval=7&socket_timeout=2.5&max_connections=9",
            "REDIS_PASSWORD": redis_server.password or "",
        },
        env_file=None,
    )
    assert (settings.db, settings.socket_timeout_seconds, settings.pool_max_connections) == (
        3,
        2.5,
        9,
    )
    client = create_client(settings, name="url-query")
    client.set("k", "v")
    assert {c.get("name"): c.get("db") for c in redis_server.client_list()}.get("from-url") == "3"
    assert client.connection_pool.connection_kwargs["health_check_interval"] == 7
    assert client.connection_pool.max_connections == 9
    client.close()


async def test_unix_socket_url_connects(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sock = tmp_path / "redis.sock"
    server = RedisServer(tmp_path / "unix", password="unix-pw", unix_socket=sock).start()
    try:
        settings = load_settings(
            {"REDIS_URL": f"unix://{sock}?db=2", "REDIS_PASSWORD": "unix-pw"}, env_file=None
        )
        assert settings.endpoint == f"unix:{sock}"
        client = create_async_client(settings, name="unix")
        await client.set("over", "unix")
        assert await client.get("over") == b"unix"
        info = await client.client_info()
        assert int(info["db"]) == 2
        assert str(sock) in str(info.get("laddr", "")) + str(info.get("addr", "")), info
        await client.aclose()
    finally:
        server.stop()


def test_a_rotated_password_file_is_used_without_a_restart(
    redis_server: RedisServer, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "secret" / "REDIS_PASSWORD"
    secret.parent.mkdir()
    secret.write_text(redis_server.password or "")
    settings = load_settings(
        {
            "REDIS_URL": f"redis://{redis_server.endpoint}/0",
            "REDIS_PASSWORD_FILE": str(secret),
            "REDIS_BACKOFF_BASE_SECONDS": "0.1",
            "REDIS_BACKOFF_CAP_SECONDS": "0.3",
            "REDIS_RETRY_ATTEMPTS": "30",
        },
        env_file=None,
    )
    client = create_client(settings, name="rotation")
    assert client.ping() is True
    admin = redis_server.admin()
    new_password = "rotated-" + (redis_server.password or "")[-8:]
    # The server changes first and drops every connection; the Secret's file follows later,
    # as a kubelet refresh does.
    admin.config_set("requirepass", new_password)
    admin.client_kill_filter(_type="normal", skipme=True)
    timer = threading.Timer(0.8, lambda: secret.write_text(new_password + "\n"))
    timer.start()
    try:
        assert client.incr("after-rotation") == 1  # failed AUTH, re-read the file, succeeded
    finally:
        timer.join()
    assert sample("redisqueue_client_retries_total", client="rotation") >= 1
    admin.close()
    client.close()


def test_a_missing_password_file_is_a_clear_settings_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from redisqueue.settings import SettingsError

    with pytest.raises(SettingsError, match=r"^REDIS_PASSWORD_FILE: cannot read"):
        load_settings({"REDIS_PASSWORD_FILE": str(tmp_path / "absent")}, env_file=None)


def test_the_documented_idempotent_enqueue_pushes_a_job_once(redis_server: RedisServer) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "client.md").read_text()
    section = doc.split("**Enqueue so that a repeat does no harm.**", 1)[1]
    recipe = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert recipe is not None
    client = create_client(settings_for(redis_server), name="enqueue-once")
    namespace: dict[str, Any] = {"redis": client}
    exec(recipe.group(1), namespace)  # noqa: S102 - the documented recipe, run as written
    job_id = namespace["job_id"]
    # The repeat a producer sends after CommandMayHaveRun: nothing is pushed twice.
    again = client.eval(
        namespace["ENQUEUE_ONCE"], 2, f"phase1:seen:{job_id}", "phase1:jobs", job_id, 86400
    )
    assert again == 0
    assert client.lrange("phase1:jobs", 0, -1) == [job_id.encode()]
    client.close()
