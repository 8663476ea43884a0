"""pytest plugin: the real Prometheus tools (promtool and the prometheus server).

Load it from the top-level conftest with ``pytest_plugins = [..., "prometheus_fixtures"]``.

Fixtures
--------
``prometheus_tools`` (session)
    The bin dir (Path) holding ``promtool`` and ``prometheus``, built from the pinned Go
    module in ``tests/tools/prometheus/`` by its ``build.sh``.
``promtool`` (session)
    A :class:`Promtool`: ``run(*args, input=None)`` and ``check_metrics(text)``, both
    returning ``CompletedProcess[str]`` without raising on a non-zero exit.
``prometheus_server`` (function)
    A factory: ``prometheus_server(["127.0.0.1:8080", ...])`` starts a real Prometheus on a
    free loopback port that scrapes those targets every second, waits until it is ready and
    returns a :class:`PrometheusServer` (``url``, ``query()``, ``targets()``, ``wait_for()``
    and their async forms). Every server is stopped (its process group) after the test.

Building
--------
When the selected tests use any of these fixtures, the binaries are built (or found in the
cache) once, right after collection, outside any per-test timeout, with the Go build's
progress shown on the terminal. A warm cache costs one run of ``build.sh`` that only checks
two files; a cold build takes a few minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.go_tools import refuse_go_builds, run_build_script
from harness.kube_controlplane import free_port, kill_process_group, log_tail
from harness.polling import poll
from harness.prebuild import PreBuild

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_DIR = REPO_ROOT / "tests" / "tools" / "prometheus"
BUILD_SCRIPT = TOOLS_DIR / "build.sh"
#: Set to a bin dir holding both binaries to skip build.sh entirely (tests/run.sh does).
BIN_ENV = "REDISQUEUE_PROMETHEUS_BIN"
BINARIES = ("promtool", "prometheus")

PROMETHEUS_FIXTURES = frozenset({"prometheus_tools", "promtool", "prometheus_server"})

#: The alerts of the chart's PrometheusRule with its defaults (RedisQueueDepthGrowing is off).
CHART_ALERTS = frozenset(
    {
        "RedisQueueDown",
        "RedisQueueSlowPing",
        "RedisQueueOperatorReconcileErrors",
        "RedisQueueProbesStopped",
        "RedisQueueOperatorAbsent",
        "RedisQueueOperatorNoLeader",
        "RedisQueuePartiallyUnreachable",
    }
)


class PrometheusToolsError(RuntimeError):
    """The Prometheus tools could not be built or a server did not come up."""


def binaries_present(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / name, os.X_OK) for name in BINARIES)


def ensure_prometheus_tools(*, stream_output: bool = True) -> Path:
    """Return the bin dir, running ``build.sh`` (a no-op on a warm cache) when needed."""
    refuse_go_builds("promtool/prometheus", "gotools", PrometheusToolsError)
    preset = os.environ.get(BIN_ENV)
    if preset and binaries_present(Path(preset)):
        return Path(preset)
    started = time.monotonic()
    built = run_build_script(BUILD_SCRIPT, PrometheusToolsError, stream_output=stream_output)
    if not binaries_present(built):
        raise PrometheusToolsError(f"{BUILD_SCRIPT} reported {built!s} but binaries are missing")
    elapsed = time.monotonic() - started
    if stream_output and elapsed > 5:
        print(f"prometheus tools ready in {elapsed:.0f} s: {built}", file=sys.stderr)
    return built


# --------------------------------------------------------------------------- promtool


@dataclass(frozen=True)
class Promtool:
    bin_dir: Path

    @property
    def path(self) -> Path:
        return self.bin_dir / "promtool"

    def run(
        self, *args: str, input: str | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.path), *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )

    def check_metrics(self, text: str) -> subprocess.CompletedProcess[str]:
        """``promtool check metrics`` on an exposition in the text format (read from stdin).

        Exit code 0: parses and lints clean; 3: lint problems (one per line on stderr,
        ``<metric> <complaint>``); 1: not parseable.
        """
        return self.run("check", "metrics", input=text)


def check_metrics(bin_dir: Path, text: str) -> subprocess.CompletedProcess[str]:
    """``promtool check metrics`` with the promtool in ``bin_dir``; see Promtool."""
    return Promtool(bin_dir).check_metrics(text)


# --------------------------------------------------------------------------- the server


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel SIGKILLs it when pytest dies."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def _config(targets: Sequence[str], job: str, rule_files: Sequence[Path]) -> str:
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": "1s",
            "scrape_timeout": "1s",
            "evaluation_interval": "1s",
        },
        "scrape_configs": [
            {
                "job_name": job,
                # Like the chart's ServiceMonitor (honorLabels): our metrics carry their
                # own `namespace` label, the RedisQueue's.
                "honor_labels": True,
                "static_configs": [{"targets": list(targets)}],
            }
        ],
    }
    if rule_files:
        config["rule_files"] = [str(p) for p in rule_files]
    return json.dumps(config, indent=2) + "\n"  # JSON is valid YAML


@dataclass
class PrometheusServer:
    """One prometheus process on a loopback port, with its own TSDB directory."""

    bin_dir: Path
    workdir: Path
    targets: Sequence[str]
    job: str = "redisqueue"
    rule_files: Sequence[Path] = ()
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "prometheus.log"

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def start(self, timeout: float = 60.0) -> PrometheusServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(_config(self.targets, self.job, self.rule_files))
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(self.bin_dir / "prometheus"),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1h",
                    "--log.level=info",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
                # Tied to the thread that starts it: fixtures run on pytest's main thread.
                preexec_fn=_die_with_parent,  # noqa: PLW1509
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrometheusToolsError(
                    f"prometheus exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                ready = f"{self.url}/-/ready"
                with urllib.request.urlopen(ready, timeout=5) as response:  # noqa: S310 - loopback
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.2)
        raise PrometheusToolsError(
            f"prometheus not ready on {self.url} after {timeout:.0f} s ({last}):\n{self.log_tail()}"
        )

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            # The child leads its own session, so its pid is the process group id.
            kill_process_group(self.process.pid, timeout=20.0)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)

    # -- HTTP API (blocking; the *_async forms run them in a thread so that a server under
    # test on the caller's event loop keeps answering scrapes meanwhile) --------------------
    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
            raise PrometheusToolsError(f"GET {url}: {exc.code} {body}") from exc
        if body.get("status") != "success":
            raise PrometheusToolsError(f"GET {url}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; the result vector (``[{"metric": {...}, "value": [t, "v"]}]``)."""
        data = self.api("query", query=expr)
        if data["resultType"] != "vector":
            raise PrometheusToolsError(f"{expr!r} gave a {data['resultType']}, not a vector")
        return list(data["result"])

    def active_targets(self) -> list[dict[str, Any]]:
        return list(self.api("targets", state="active")["activeTargets"])

    def wait_for(
        self,
        expr: str,
        check: Callable[[list[dict[str, Any]]], bool] = bool,
        *,
        timeout: float = 60.0,
        interval: float = 0.5,
    ) -> list[dict[str, Any]]:
        """Poll ``query(expr)`` until ``check(result)`` holds; the passing result."""

        def failure(result: list[dict[str, Any]]) -> str:
            return self._timeout_message(expr, result, timeout)

        return poll(lambda: self.query(expr), check, timeout, interval, failure)

    async def query_async(self, expr: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.query, expr)

    async def active_targets_async(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.active_targets)

    async def wait_for_async(
        self,
        expr: str,
        check: Callable[[list[dict[str, Any]]], bool] = bool,
        *,
        timeout: float = 60.0,
        interval: float = 0.5,
        between: Callable[[], Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Like wait_for, awaiting ``between()`` (if given) before each retry."""
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while True:
            result = await self.query_async(expr)
            if check(result):
                return result
            if time.monotonic() > deadline:
                targets = await self.active_targets_async()
                raise AssertionError(self._timeout_message(expr, result, timeout, targets))
            if between is not None:
                outcome = between()
                if asyncio.iscoroutine(outcome):
                    await outcome
            await asyncio.sleep(interval)

    def _timeout_message(
        self,
        expr: str,
        result: list[dict[str, Any]],
        timeout: float,
        targets: list[dict[str, Any]] | None = None,
    ) -> str:
        if targets is None:
            with contextlib.suppress(PrometheusToolsError, OSError):
                targets = self.active_targets()
        health = [(t.get("scrapeUrl"), t.get("health"), t.get("lastError")) for t in targets or []]
        return (
            f"{expr!r} did not reach the expected result within {timeout:.0f} s; "
            f"last result {result}; targets {health}\nprometheus log:\n{self.log_tail(20)}"
        )


def value(sample: dict[str, Any]) -> float:
    """The float value of one instant-vector sample."""
    return float(sample["value"][1])


StartPrometheus = Callable[..., PrometheusServer]


# --------------------------------------------------------------------------- hooks


def _needs_prometheus(item: pytest.Item) -> bool:
    return bool(set(getattr(item, "fixturenames", ())) & PROMETHEUS_FIXTURES)


# A test that uses these fixtures needs Go-built binaries, marked or not, so that
# `-m "not gotools"` (the fast path) really leaves it out.
_BUILD = PreBuild(_needs_prometheus, pytest.mark.gotools, PrometheusToolsError)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _BUILD.mark(items)


def pytest_collection_finish(session: pytest.Session) -> None:
    if _BUILD.needed(session):
        _BUILD.run(session, ensure_prometheus_tools)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def prometheus_tools(pytestconfig: pytest.Config) -> Path:
    _BUILD.raise_failure(pytestconfig)
    return ensure_prometheus_tools()


@pytest.fixture(scope="session")
def promtool(prometheus_tools: Path) -> Promtool:
    return Promtool(prometheus_tools)


@pytest.fixture
def prometheus_server(prometheus_tools: Path, tmp_path: Path) -> Iterator[StartPrometheus]:
    servers: list[PrometheusServer] = []

    def start(
        targets: Sequence[str],
        *,
        job: str = "redisqueue",
        rule_files: Sequence[Path] = (),
        timeout: float = 60.0,
    ) -> PrometheusServer:
        server = PrometheusServer(
            prometheus_tools,
            tmp_path / f"prometheus-{len(servers)}",
            targets,
            job=job,
            rule_files=rule_files,
        )
        servers.append(server)
        return server.start(timeout=timeout)

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
