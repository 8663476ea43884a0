"""The redisqueue command: bad input exits 2 cleanly; dev mode serves real answers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from harness.redis_server import RedisServer, free_port

CLI = [sys.executable, "-m", "redisqueue.controller"]


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"REDIS_POOL_MAX_CONNECTIONS": "-1"}, "REDIS_POOL_MAX_CONNECTIONS"),
        ({"REDIS_ENV": "qa"}, "REDIS_ENV"),
        ({"REDIS_URL": "mysql://x"}, "REDIS_URL"),
        (
            {"REDIS_BACKOFF_BASE_SECONDS": "5", "REDIS_BACKOFF_CAP_SECONDS": "1"},
            "REDIS_BACKOFF_CAP_SECONDS",
        ),
    ],
)
def test_invalid_setting_exits_2_without_a_traceback(
    env: dict[str, str], variable: str, tmp_path: Path
) -> None:
    for command in (["settings"], ["dev", "--no-start-redis"]):
        result = run_cli(*command, env=env, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert variable in result.stderr
        assert "Traceback" not in result.stderr


def test_bad_flag_exits_2_naming_the_flag(tmp_path: Path) -> None:
    result = run_cli("dev", "--port", "70000", cwd=tmp_path)
    assert result.returncode == 2
    assert "--port" in result.stderr and "1 to 65535" in result.stderr


def test_settings_prints_the_contract_without_secrets(tmp_path: Path) -> None:
    result = run_cli(
        "settings", env={"REDIS_URL": "redis://app:top-secret-pw@cache:6380/1"}, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "REDIS_HOST=cache" in result.stdout and "REDIS_PORT=6380" in result.stdout
    assert "top-secret-pw" not in result.stdout + result.stderr
    assert "REDIS_PASSWORD=***" in result.stdout


def test_settings_shows_a_unix_socket_url_and_its_redis_py_options(tmp_path: Path) -> None:
    result = run_cli(
        "settings",
        env={"REDIS_URL": "unix:///run/redis.sock?db=2&client_name=w1&password=top-secret-pw"},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "REDIS_URL=unix:///run/redis.sock?db=2&client_name=w1\n" in result.stdout
    assert "REDIS_HOST" not in result.stdout
    assert "top-secret-pw" not in result.stdout + result.stderr


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _wait_for(url: str, proc: subprocess.Popen[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            urllib.request.urlopen(url, timeout=1).close()  # noqa: S310 - loopback
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


def test_dev_starts_its_own_redis_serves_health_and_stops_it(tmp_path: Path) -> None:
    http_port, redis_port = free_port(), free_port()
    proc = subprocess.Popen(
        [*CLI, "dev", "--port", str(http_port)],
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("REDIS_")},
            "REDIS_PORT": str(redis_port),
        },
    )
    try:
        _wait_for(f"http://127.0.0.1:{http_port}/healthz", proc)
        status, body = _get(f"http://127.0.0.1:{http_port}/api/health/redis")
        assert status == 200, body
        assert body["status"] == "connected" and str(body["latency"]).endswith("ms")
        children = subprocess.run(
            ["pgrep", "-f", "-P", str(proc.pid), "redis-server"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        assert children, "dev mode should have started a redis-server child"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert "started redis-server" in stderr
    for pid in children:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        )


REPO = Path(__file__).resolve().parents[2]


def _start_dev(cwd: Path, http_port: int, env: dict[str, str]) -> subprocess.Popen[str]:
    """`redisqueue dev` in ``cwd``, probing often, with no REDIS_* variable but ``env``."""
    return subprocess.Popen(
        [*CLI, "dev", "--port", str(http_port), "--interval", "0.2"],
        cwd=cwd,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("REDIS_")}, **env},
    )


def _dev_answers_with_its_own_redis(cwd: Path, env: dict[str, str]) -> str:
    """Run `redisqueue dev` in ``cwd``; assert it started Redis and answers 200. Its stderr."""
    http_port = free_port()
    proc = _start_dev(cwd, http_port, env)
    try:
        _wait_for(f"http://127.0.0.1:{http_port}/healthz", proc)
        status, body = _get(f"http://127.0.0.1:{http_port}/api/health/redis")
        assert status == 200, body
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert "started redis-server" in stderr
    return stderr


def test_dev_works_with_the_env_example_as_shipped(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text((REPO / ".env.example").read_text())  # cp .env.example .env
    # REDIS_PORT only moves the default localhost:6379 to a free port for the test.
    stderr = _dev_answers_with_its_own_redis(tmp_path, {"REDIS_PORT": str(free_port())})
    assert "change-me-locally" not in stderr


def test_dev_starts_redis_on_a_configured_local_endpoint_that_is_down(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / ".env").write_text(
        f"REDIS_DEV_URL=redis://127.0.0.1:{port}/0\nREDIS_DEV_PASSWORD=local-dev-pw\n"
    )
    stderr = _dev_answers_with_its_own_redis(tmp_path, {})
    assert f"127.0.0.1:{port}" in stderr and "local-dev-pw" not in stderr


def test_dev_against_a_configured_redis_reports_outage_without_crashing(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    http_port = free_port()
    (tmp_path / ".env").write_text(
        f"REDIS_DEV_URL=redis://{redis_server.endpoint}/0\n"
        f"REDIS_DEV_PASSWORD={redis_server.password}\n"
    )
    proc = _start_dev(tmp_path, http_port, {})
    try:
        _wait_for(f"http://127.0.0.1:{http_port}/healthz", proc)
        assert _get(f"http://127.0.0.1:{http_port}/api/health/redis")[0] == 200
        redis_server.stop()
        status, body = _get(f"http://127.0.0.1:{http_port}/api/health/redis")
        assert status == 503 and redis_server.endpoint in str(body["error"])
        time.sleep(0.5)
        redis_server.start()
        deadline = time.monotonic() + 10
        while _get(f"http://127.0.0.1:{http_port}/api/health/redis")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert redis_server.password not in stderr
    assert "retrying in" in stderr and "recovered after" in stderr


# ----------------------------------------------------------------- global flags, no cluster


def test_global_flags_work_after_the_subcommand_too(tmp_path: Path) -> None:
    env = {"REDIS_URL": "redis://127.0.0.1:6390/0", "REDIS_ENV": "development"}
    before = run_cli("--log-level", "DEBUG", "settings", "--env-file", "/nonexistent", env=env)
    after = run_cli("settings", "--log-level", "DEBUG", "--env-file", "/nonexistent", env=env)
    assert before.returncode == after.returncode == 0, before.stderr + after.stderr
    assert before.stdout == after.stdout
    bad = run_cli("settings", "--log-format", "xml", env=env)
    assert bad.returncode == 2
    assert "--log-format: invalid choice: 'xml' (choose from 'text', 'json')" in bad.stderr


def test_log_format_from_the_environment_is_checked_naming_the_variable() -> None:
    proc = run_cli("settings", env={"LOG_FORMAT": "yaml"})
    assert proc.returncode == 2
    assert "LOG_FORMAT must be one of text, json, got 'yaml'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_version_is_a_global_flag() -> None:
    from redisqueue import __version__

    proc = run_cli("--version")
    assert (proc.returncode, proc.stdout) == (0, f"redisqueue {__version__}\n")


def _operator_without(kubeconfig: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env.update(KUBECONFIG=kubeconfig, HOME=str(tmp_path))
    return subprocess.run(
        [*CLI, "operator", "--log-format", "json", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        check=False,
    )


def test_operator_without_a_kubeconfig_says_so_in_one_line(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-kubeconfig")
    proc = _operator_without(missing, tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == (
        "redisqueue operator: no Kubernetes cluster configured: not running in a pod, "
        f"and no kubeconfig at {missing}\n"
    )


def test_operator_with_an_unreadable_kubeconfig_says_so_in_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text("clusters: [\n")
    proc = _operator_without(str(broken), tmp_path)
    assert proc.returncode == 1
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"redisqueue operator: the kubeconfig at {broken} is not usable: ")


def test_operator_whose_cluster_does_not_answer_says_so_in_one_line(tmp_path: Path) -> None:
    # A real kubeconfig whose API server address has nothing listening (a closed port).
    port = free_port()
    token = "not-a-real-token-" + os.urandom(4).hex()
    config = tmp_path / "kubeconfig"
    config.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    proc = _operator_without(str(config), tmp_path)
    assert proc.returncode == 1
    (line,) = proc.stderr.splitlines()
    assert line.startswith(
        f"redisqueue operator: the Kubernetes API at https://127.0.0.1:{port} does not answer: "
    )
    assert token not in proc.stderr


# Runs `python -m redisqueue.controller operator` (runpy, as -m does) with no cluster: the
# entry point imports the runner (kopf, the handlers) before it looks for one, then exits 1.
# At exit it reports what got loaded and its peak RSS. PRELOAD imports modules first.
_ENTRY_POINT_REPORT = """
import atexit, json, os, runpy, sys
for name in os.environ.get("PRELOAD", "").split():
    __import__(name)

def peak_rss_kib():
    # VmHWM, not ru_maxrss: the latter keeps the forking parent's (pytest's) peak.
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

def report():
    loaded = sys.modules.get("kubernetes_asyncio") is not None
    print(json.dumps({"kopf": "kopf" in sys.modules, "kubernetes_asyncio": loaded,
                      "peak_rss_kib": peak_rss_kib()}),
          file=sys.stderr)

atexit.register(report)
sys.argv = ["redisqueue", "operator", "--port", os.environ["PORT"]]
runpy.run_module("redisqueue.controller", run_name="__main__", alter_sys=True)
"""


def _entry_point(tmp_path: Path, preload: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env.update(
        KUBECONFIG=str(tmp_path / "none"),
        HOME=str(tmp_path),
        PRELOAD=preload,
        PORT=str(free_port()),
    )
    proc = subprocess.run(
        [sys.executable, "-c", _ENTRY_POINT_REPORT],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "no Kubernetes cluster configured" in proc.stderr
    report: dict[str, object] = json.loads(proc.stderr.splitlines()[-1])
    return report


def test_the_operator_entry_point_leaves_kubernetes_asyncio_unloaded(tmp_path: Path) -> None:
    # kubernetes_asyncio is installed here (the tests use it), and kopf would import it.
    operator = _entry_point(tmp_path, preload="")
    assert operator["kopf"] is True
    assert operator["kubernetes_asyncio"] is False
    # The same entry point when kubernetes_asyncio is loaded first: what kopf would cost.
    with_client = _entry_point(tmp_path, preload="kubernetes_asyncio.client")
    assert with_client["kopf"] is True and with_client["kubernetes_asyncio"] is True
    saved_mib = (int(str(with_client["peak_rss_kib"])) - int(str(operator["peak_rss_kib"]))) / 1024
    print(
        f"operator entry point: {operator['peak_rss_kib']} KiB peak RSS (VmHWM), "
        f"{with_client['peak_rss_kib']} KiB with kubernetes_asyncio ({saved_mib:.0f} MiB more)"
    )
    assert saved_mib > 20, (operator, with_client)
