"""bench/bench.py, run as docs/performance.md tells, at a small size: each part prints its
figures against the baseline of the same run, and the client library's pool lets no task
fail where it can serve them all within the pool timeout.

The figures themselves are the bench's, not this test's: only what holds on any machine is
checked (the ratios are those of the printed rates, the fair pool's tasks all complete).
"""

from __future__ import annotations

import re
import shutil

import pytest

from harness.benches import bench_report

pytestmark = pytest.mark.timeout(300)

RATE = r"([\d,]+)"


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def test_bench_prints_health_client_and_pool_figures_against_their_baselines() -> None:
    report = bench_report(
        "bench.py",
        *("--rounds", "2", "--seconds", "1"),
        *("--slices", "10", "--gets", "200"),
        # 8x oversubscription: the pool can serve every task well within its 5 s timeout.
        *("--pool-rounds", "2", "--pool-tasks", "400"),
        timeout=240,
    )

    health = re.search(
        rf"^\(a\) health endpoint: {RATE} req/s, trivial JSON handler: {RATE} req/s, ratio "
        r"(\d+\.\d\d) \(rounds (\d+\.\d\d)-(\d+\.\d\d); target >= 0\.80",
        report,
        re.MULTILINE,
    )
    if shutil.which("wrk") is None:
        assert "(a) skipped: wrk is not installed (apt-get install wrk)" in report, report
    else:
        # wrk saw only 200 answers: the bench exits non-zero on any other.
        assert health is not None, report
        assert _number(health[1]) > 0 and _number(health[2]) > 0
        assert float(health[4]) <= float(health[3]) <= float(health[5]), health[0]

    client = re.search(
        rf"^\(b\) instrumented client: {RATE} GET/s, bare redis-py: {RATE} GET/s, "
        r"ratio (\d+\.\d\d) \(target >= 0\.90",
        report,
        re.MULTILINE,
    )
    assert client is not None, report
    ours, bare = _number(client[1]), _number(client[2])
    assert ours > 0 and bare > 0
    assert float(client[3]) == pytest.approx(ours / bare, abs=0.011), client[0]

    pool = re.search(
        r"^\(c\) pool: 400 tasks on 50 connections, pool timeout 5 s.*\n"
        r"\s+fair pool:\s+(\d+) of 800 tasks failed.*\n"
        r"\s+redis-py's pool:\s+(\d+) of 800 tasks failed",
        report,
        re.MULTILINE,
    )
    assert pool is not None, report
    assert pool[1] == "0", pool[0]
