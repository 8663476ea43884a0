"""One test node per machine: the lock that ``tests/harness/kube_node.py`` takes before a start.

The lock is a ``flock`` on a file that its holder removes when it is done, so that a host
is left as it was found. A run that opened the file before it was removed must not count a
lock on that removed file as the lock: the next run has already made and locked a new one.
``kube_node.py down`` takes the same lock. These tests use a lock file in a temporary folder;
they start no node and need no root.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from harness import kube_node
from harness.kube_node import Node, NodeError


@pytest.fixture
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    run_dir = tmp_path / "run"
    monkeypatch.setattr(kube_node, "RUN_DIR", run_dir)
    monkeypatch.setattr(kube_node, "LOCK_FILE", run_dir / "lock")
    monkeypatch.setattr(kube_node, "STATE_FILE", run_dir / "state.json")
    return run_dir


def test_a_run_waiting_on_a_removed_lock_file_does_not_run_beside_the_next(
    lock_dir: Path,
) -> None:
    first = Node(lock_timeout=5)
    first._lock()
    # A second run starts waiting while the first holds the lock.
    waiting = Node(lock_timeout=4)
    outcome: list[str] = []

    def wait_for_the_lock() -> None:
        try:
            waiting._lock()
            outcome.append("locked")
        except NodeError:
            outcome.append("timed out")

    waiter = threading.Thread(target=wait_for_the_lock)
    waiter.start()
    time.sleep(0.3)  # it has opened the lock file and found it taken
    first._unlock()
    # A third run starts at once and takes the lock: the waiting run must not get it too.
    third = Node(lock_timeout=1)
    third._lock()
    try:
        waiter.join(timeout=10)
        assert outcome == ["timed out"], "two runs held the node lock at the same time"
    finally:
        third._unlock()
        waiting._unlock()
    assert not lock_dir.exists(), "the lock's folder is removed with the last holder"


def test_a_released_lock_goes_to_the_next_run_and_leaves_nothing(lock_dir: Path) -> None:
    first = Node(lock_timeout=5)
    first._lock()
    assert (lock_dir / "lock").exists()
    second = Node(lock_timeout=0.5)
    with pytest.raises(NodeError, match="another test node holds"):
        second._lock()
    first._unlock()
    second._lock()
    second._unlock()
    assert not lock_dir.exists()


def test_down_leaves_a_node_whose_run_holds_the_lock_alone(
    lock_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    running = Node(lock_timeout=5)
    running._lock()
    (lock_dir / "state.json").write_text('{"owner": 1}')
    undone: list[object] = []
    # Records whether ``down`` would undo the node; this test starts no node to undo.
    monkeypatch.setattr(kube_node, "cleanup", undone.append)
    try:
        assert kube_node._cmd_down(lock_timeout=0.5) == 1
        assert "another test node holds" in capsys.readouterr().err
        assert undone == []
        assert (lock_dir / "state.json").exists()
    finally:
        running._unlock()


def test_down_after_a_killed_run_removes_its_lock_file_too(
    lock_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # What a killed holder leaves: the lock file, no longer locked by anyone.
    lock_dir.mkdir()
    (lock_dir / "lock").touch()
    assert kube_node._cmd_down(lock_timeout=0.5) == 0
    assert "no node recorded" in capsys.readouterr().err
    assert not lock_dir.exists()
