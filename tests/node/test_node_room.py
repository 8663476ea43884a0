"""A node starts only with room for its work dir, and says so otherwise.

On a nearly full disk the kubelet would start, report DiskPressure, taint the node and
evict every pod: each test would then time out waiting for pods with no word of the disk.
These tests start no node: the check comes before any build, lock or work dir.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from harness import kube_node
from harness.kube_node import Node, NodeError, free_space_error, node_workdirs


def test_free_space_error_names_the_file_system_the_need_and_the_way_out(tmp_path: Path) -> None:
    stat = os.statvfs(tmp_path)
    available = stat.f_bavail * stat.f_frsize
    assert free_space_error(tmp_path, needed=1) is None
    message = free_space_error(tmp_path, needed=available + (1 << 40))
    assert message is not None
    assert str(tmp_path) in message
    assert "GiB are available" in message
    assert "TMPDIR" in message


@pytest.mark.skipif(os.geteuid() != 0, reason="a start as another user stops at its root check")
def test_a_start_without_room_stops_before_it_locks_or_leaves_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    monkeypatch.setattr(kube_node, "RUN_DIR", run_dir)
    monkeypatch.setattr(kube_node, "LOCK_FILE", run_dir / "lock")
    monkeypatch.setattr(kube_node, "STATE_FILE", run_dir / "state.json")
    # Work dirs go to a temporary folder of this test's own: the node tests, running beside
    # this one, make and remove theirs in the shared one meanwhile.
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    with pytest.raises(NodeError, match=f"file system of {temp}"):
        Node(min_free_bytes=1 << 60).start()
    assert not run_dir.exists()
    assert node_workdirs() == []
    assert list(temp.iterdir()) == []
