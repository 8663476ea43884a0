"""bench/scale.py, run as docs/performance.md tells, at a small count: every phase runs, and
the figures its large runs are judged by are there and hold what they claim.

The bench starts its own control plane, redis-server and operator, as it does for 1000.
"""

from __future__ import annotations

import gzip
import re
import subprocess
from pathlib import Path

import pytest

from harness.benches import bench_report

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(900)]

#: The writes any controller must make for one RedisQueue (the floor), by verb and resource.
FIVE_WRITES = (
    "POST redisqueues 1.00",
    "PATCH redisqueues 1.00",
    "PATCH redisqueues/status 1.00",
    "APPLY secrets 1.00",
    "POST events 1.00",
)


def pprof_total(profile: Path) -> float:
    """Seconds of CPU sampled in ``profile``, as ``go tool pprof`` itself counts them."""
    top = subprocess.run(
        ["go", "tool", "pprof", "-top", str(profile)], capture_output=True, text=True, check=True
    ).stdout
    found = re.search(r"Total samples = ([\d.]+)(ms|s)\b", top)
    if found is None:  # a profile without a sample says so by leaving the figure out
        assert "Total samples" not in top, top
        return 0.0
    return float(found.group(1)) / (1000 if found.group(2) == "ms" else 1)


def line_of(report: str, start: str) -> str:
    lines = [line for line in report.splitlines() if line.startswith(start)]
    assert len(lines) == 1, f"no single line starting {start!r} in:\n{report}"
    return lines[0]


def test_the_scale_bench_runs_every_phase_and_reports_the_floor_in_rounds(
    tmp_path: Path,
) -> None:
    profiles = tmp_path / "profiles"
    report = bench_report(
        "scale.py",
        *("--count", "20", "--cycles", "1", "--rounds", "2"),
        *("--idle-seconds", "5", "--interval-wait", "2"),
        *("--apiserver-profile", str(profiles), "--apiserver-profile-seconds", "1"),
        timeout=840,
    )

    # The floor (as the operator's ServiceAccount), the kopf floor and the operator make the
    # same five writes: kopf adds none of its own. (The count is the API server's, for every
    # client: the controller-manager's requests may show beside them, so each write is
    # checked, not the sum.)
    for phase in ("floor", "kopf floor", "operator"):
        requests = line_of(report, f"API requests per RedisQueue during {phase}:")
        for write in FIVE_WRITES:
            assert re.search(rf"[ (]{re.escape(write)}[,)]", requests), requests
        listed = re.findall(r"([A-Z]+ [^ ,()]+) (\d+\.\d\d)", requests.split(":", 1)[1])
        per_queue = {f"{what} {value}" for what, value in listed if float(value) >= 0.5}
        assert per_queue == set(FIVE_WRITES), requests  # no sixth request per RedisQueue

    # Both rounds are listed with each ratio (the floor, the kopf floor and the operator
    # against each other), and each verdict is the median of the rounds' ratios.
    for pair in ("floor / operator", "floor / kopf floor", "kopf floor / operator"):
        rounds = line_of(report, f"{pair} over 2 round(s)")
        ratios = [float(r) for r in re.findall(r" s = (\d+\.\d\d)x", rounds)]
        assert len(ratios) == 2, rounds
        median = float(re.findall(r"median ratio (\d+\.\d\d)x", rounds)[0])
        assert median == pytest.approx(sum(ratios) / 2, abs=0.011), rounds
    # The kopf floor's own process made its writes without an error or a retry.
    assert line_of(report, "kopf floor (").endswith("its log: 0 errors or retries")
    for floor in ("floor (", "admin floor (", "watching floor ("):
        assert re.search(r"\): \d+\.\d s; ratio ", line_of(report, floor))
    # Each round's operator had finished its start before the creates began.
    settled = line_of(report, "each round's operator had settled after its start")
    assert len(re.findall(r"\d+", settled.split(":", 1)[1])) == 2, settled

    # The API server's CPU profile of each floor and each round of the operator's creates:
    # a pprof file (gzipped protocol buffers), one profile after the other.
    phases = {"floor", "admin_floor", "watching_floor", "kopf_floor", "operator"}
    phases |= {"floor_2", "kopf_floor_2", "operator_2"}
    assert {p.stem for p in profiles.glob("*.pprof")} == phases
    for profile in profiles.glob("*.pprof"):
        assert len(gzip.decompress(profile.read_bytes())) > 100, profile.name
    # Read by kind of work: every sample of each profile is read (the total is the one go
    # tool pprof reports for it), and the kinds tell some of them apart from "other".
    table = bench_report(
        "pprof_share.py", *sorted(str(p) for p in profiles.glob("*.pprof")), timeout=120
    )
    header, *rows = table.splitlines()
    assert header.split()[:2] == ["profile", "total"] and header.split()[-1] == "other", header
    assert sorted(row.split()[0] for row in rows) == sorted(phases)
    told_apart = 0.0
    for row in rows:
        name, total, *_, other = row.split()
        assert float(total) == pytest.approx(pprof_total(profiles / f"{name}.pprof"), abs=0.001)
        told_apart += float(total) - float(other)
    assert told_apart > 0, table

    # Every phase's CPU names the processes it metered.
    operator_cpu = line_of(report, "CPU during operator")
    for process in ("kube-apiserver", "etcd", "operator", "bench"):
        assert f"{process} " in operator_cpu, operator_cpu
    assert "operator " not in line_of(report, "CPU during floor").split(":", 1)[1]
    kopf_floor_cpu = line_of(report, "CPU during kopf floor").split(":", 1)[1]
    assert "kopf floor " in kopf_floor_cpu and "operator " not in kopf_floor_cpu, kopf_floor_cpu

    # The operator's cyclic garbage collections while creating, from its own metrics.
    collections = line_of(report, "operator's cyclic garbage collections while creating")
    counts = dict(re.findall(r"(\d) (\d+)", collections.split(":", 1)[1]))
    assert set(counts) == {"0", "1", "2"}, collections
    assert int(counts["0"]) > 0, collections

    # A restart posts no Event twice; deleting all leaves nothing behind; the log is clean.
    assert line_of(report, "restart with 20 existing").endswith("(0 new)")
    assert line_of(report, "delete all").endswith(
        "left behind: 0 Secrets with contract keys, 0 labelled Secrets, 0 metric series, "
        "0 Redis connections"
    )
    assert "contract Secrets and series left: 0" in line_of(report, "operator RSS over 1 more")
    assert (
        line_of(report, "operator log:") == "operator log: 0 errors, 0 warnings, 0 'Will escalate'"
    )
