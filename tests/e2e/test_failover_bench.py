"""bench/failover.py, run as docs/performance.md tells, at a small count and a short Lease: both
failovers complete, the standby answers health throughout, and a killed leader's Lease is
waited out before the standby writes.

The bench starts its own control plane, redis-server and two replicas with leader election.
How fast the new leader writes is the bench's figure, not this test's: only the order of
events is checked, which holds on any machine.
"""

from __future__ import annotations

import re

import pytest

from harness.benches import bench_report
from redisqueue.controller.api.lease import LeaseSettings

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(600)]

#: Long enough that a takeover after SIGTERM (the Lease released: about 6 s in the bench's
#: runs, whatever the Lease) stays well apart from one after SIGKILL (the Lease waited out).
LEASE_SECONDS = 12
#: How often a replica renews or looks at the Lease, as the bench's replicas run.
RETRY_SECONDS = LeaseSettings("", "", "", lease_seconds=LEASE_SECONDS).retry_seconds


def test_the_failover_bench_waits_out_a_killed_leader_and_keeps_the_standby_healthy() -> None:
    report = bench_report(
        "failover.py", "--count", "5", "--lease-seconds", str(LEASE_SECONDS), timeout=540
    )
    pattern = re.compile(
        r"^leader killed with (SIG[A-Z]+): new leader wrote status after (\d+\.\d) s "
        rf"\(lease duration {LEASE_SECONDS} s, ratio (\d+\.\d\d)\); "
        r"standby health: (\d+) answers, (\d+) not 200$",
        re.MULTILINE,
    )
    found = {m[1]: m for m in pattern.finditer(report)}
    assert set(found) == {"SIGKILL", "SIGTERM"}, report

    for how, m in found.items():
        seconds, ratio = float(m[2]), float(m[3])
        assert ratio == pytest.approx(seconds / LEASE_SECONDS, abs=0.011), m[0]
        # The standby answered its health endpoint the whole time, every time with 200.
        assert int(m[4]) > 0 and int(m[5]) == 0, (how, m[0])

    # SIGKILL leaves the Lease held: the standby may write only once it has seen no renewal
    # for a whole Lease duration, and it saw the last one at most one retry period after it.
    assert float(found["SIGKILL"][2]) >= LEASE_SECONDS - RETRY_SECONDS, report
    # SIGTERM releases it: no waiting out the Lease.
    assert float(found["SIGTERM"][2]) < float(found["SIGKILL"][2]), report

    errors = re.search(r"^replica logs: (\d+) errors", report, re.MULTILINE)
    assert errors is not None and errors[1] == "0", report
