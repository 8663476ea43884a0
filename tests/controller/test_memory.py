"""The operator gives freed heap pages back (``telemetry/memory.py``), on this machine's glibc."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import weakref

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


def test_the_startup_heap_is_frozen_out_of_later_collections() -> None:
    # In a process of its own: a frozen heap would outlive this test.
    code = (
        "import gc\n"
        "from redisqueue.controller import handlers, runner\n"
        "from redisqueue.controller.telemetry import memory\n"
        "assert gc.get_freeze_count() == 0\n"
        "memory.freeze_startup_heap()\n"
        "print(gc.get_freeze_count(), sum(gc.get_count()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    frozen, tracked = int(out[0]), int(out[1])
    # kopf, aiohttp, pydantic and the operator's own modules: tens of thousands of objects
    # that every full collection would otherwise walk again; none is left to walk.
    assert frozen > 20_000, frozen
    assert tracked < 100, tracked


async def test_a_reference_cycle_left_at_rest_is_collected_by_the_periodic_task() -> None:
    # At rest little is allocated and the collector may not run for a long time; garbage
    # it would free keeps its pages from the trim. The periodic task collects first.
    class Node:
        other: Node | None = None

    gc.disable()
    try:
        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        assert gone() is not None  # only the cyclic collector can free it
        task = asyncio.create_task(memory.return_freed_memory(interval=0.01))
        try:
            for _ in range(100):
                await asyncio.sleep(0.01)
                if gone() is None:
                    break
        finally:
            task.cancel()
        assert gone() is None
    finally:
        gc.enable()
