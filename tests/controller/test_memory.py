"""The operator gives freed heap pages back (``telemetry/memory.py``), on this machine's glibc."""

from __future__ import annotations

import os
import sys

import pytest

from redisqueue.controller.telemetry import memory


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_freed_pages_in_the_middle_of_the_heap_go_back_to_the_system() -> None:
    # 4 KiB blocks come from malloc's heap (not Python's own arenas, not mmap): keep one in
    # eight, so the free ones sit between live ones and a plain free() cannot return them.
    blocks = [bytearray(4096) for _ in range(40_000)]
    kept = blocks[::8]
    del blocks
    before = rss_bytes()
    assert memory.trim()
    after = rss_bytes()
    assert before - after > 64 * 1024 * 1024, (before, after)  # of about 140 MiB freed
    assert len(kept) == 5000  # still alive, still readable
    assert all(block[0] == 0 for block in kept)
