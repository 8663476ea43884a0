"""Benchmarks that print figures as ratios against a baseline measured in the same run.

(a) ``GET /api/health/redis`` against a trivial aiohttp JSON handler served by the same
    process, same load generator (wrk) and concurrency. Target: ratio >= 0.8.
(b) asyncio GET throughput through the instrumented pooled client against bare redis-py
    with the same BlockingConnectionPool size and concurrency, in many short alternating
    slices. Target: ratio >= 0.9.
(c) the pool under 20x oversubscription (1000 tasks on 50 connections) with short blocking
    pops in the mix: failures (goal 0), p50/p99 wait for a connection and total time, the
    client library's fair pool against redis-py's BlockingConnectionPool, same pool size,
    pool timeout and work, rounds alternating.

Both start their own redis-server on a free loopback port. Run: ``python bench/bench.py``
(installs nothing; needs redis-server and, for (a), wrk: ``apt-get install redis-server wrk``).
Rounds alternate between candidate and baseline so drift on a shared machine hits both.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "operator"))

import redis.asyncio  # noqa: E402
from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: E402

from harness.library import settings_for  # noqa: E402
from harness.redis_server import RedisServer, free_port  # noqa: E402
from redisqueue.client import create_async_client  # noqa: E402

SERVER_SCRIPT = textwrap.dedent(
    """
    import sys
    from aiohttp import web
    from redisqueue.contract import ConnectionContract
    from redisqueue.controller.serving.health import ProbeList, create_app
    from redisqueue.controller.probing.probe import Probe

    redis_port, http_port = int(sys.argv[1]), int(sys.argv[2])
    password = sys.stdin.readline().strip()
    probe = Probe(ConnectionContract(host="127.0.0.1", port=redis_port, password=password),
                  namespace="bench", name="q")
    app = create_app(ProbeList(probe))

    async def trivial(request):
        return web.json_response({"status": "ok"})

    app.router.add_get("/trivial", trivial)
    web.run_app(app, host="127.0.0.1", port=http_port, access_log=None, print=None)
    """
)


def wrk(url: str, seconds: int, connections: int) -> float:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if match is None or errors is not None:
        raise RuntimeError(f"wrk failed or saw errors:\n{out}")
    return float(match.group(1))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_health(server: RedisServer, rounds: int, seconds: int, connections: int) -> None:
    if shutil.which("wrk") is None:
        print("(a) skipped: wrk is not installed (apt-get install wrk)")
        return
    http_port = free_port()
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "operator")}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER_SCRIPT, str(server.port), str(http_port)],
        stdin=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdin is not None
    proc.stdin.write((server.password or "") + "\n")
    proc.stdin.close()
    base = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                wrk(base + "/trivial", 1, 1)
                break
            except (RuntimeError, subprocess.CalledProcessError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        wrk(base + "/api/health/redis", 2, connections)  # warm-up
        health, trivial = [], []
        cpu: dict[str, list[float]] = {"health": [], "trivial": []}
        pair = [("trivial", "/trivial"), ("health", "/api/health/redis")]
        for i in range(rounds):
            for kind, path in pair if i % 2 == 0 else pair[::-1]:
                used = _cpu_seconds(proc.pid)
                rate = wrk(base + path, seconds, connections)
                cpu[kind].append((_cpu_seconds(proc.pid) - used) / (rate * seconds) * 1e6)
                (trivial if kind == "trivial" else health).append(rate)
        ratios = [h / t for h, t in zip(health, trivial, strict=True)]
        print(
            f"(a) health endpoint: {statistics.median(health):,.0f} req/s, trivial JSON "
            f"handler: {statistics.median(trivial):,.0f} req/s, ratio "
            f"{statistics.median(ratios):.2f} (rounds {min(ratios):.2f}-{max(ratios):.2f}; "
            f"target >= 0.80; wrk -t1 -c{connections}, {rounds} x {seconds}s each); "
            f"server CPU per request {statistics.median(cpu['health']):.0f} us vs "
            f"{statistics.median(cpu['trivial']):.0f} us"
        )
    finally:
        proc.terminate()
        proc.wait()


async def _gets(client: redis.asyncio.Redis, concurrency: int, total: int) -> float:
    """Seconds for ``total`` GETs spread over ``concurrency`` tasks."""
    per_task = total // concurrency

    async def worker() -> None:
        for _ in range(per_task):
            await client.get("bench:key")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def bench_client(server: RedisServer, slices: int, total: int, concurrency: int) -> None:
    settings = settings_for(server, REDIS_POOL_MAX_CONNECTIONS="50")
    ours = create_async_client(settings, name="bench")
    bare = server.stock_async_client(max_connections=50, timeout=5)
    await bare.set("bench:key", "x" * 64)
    await _gets(ours, concurrency, total)  # warm both pools
    await _gets(bare, concurrency, total)
    # Many short alternating slices: the shared machine's speed drifts over seconds, and
    # fine interleaving makes both clients see the same drift.
    ours_time = bare_time = 0.0
    for i in range(slices):
        if i % 2:
            ours_time += await _gets(ours, concurrency, total)
            bare_time += await _gets(bare, concurrency, total)
        else:
            bare_time += await _gets(bare, concurrency, total)
            ours_time += await _gets(ours, concurrency, total)
    done = slices * (total // concurrency) * concurrency
    print(
        f"(b) instrumented client: {done / ours_time:,.0f} GET/s, bare redis-py: "
        f"{done / bare_time:,.0f} GET/s, ratio {bare_time / ours_time:.2f} (target >= 0.90; "
        f"pool 50, {concurrency} tasks, {slices} alternating slices of {total} GETs each)"
    )
    await ours.aclose()
    await bare.aclose()


class _Waits:
    """Records each wait for a pooled connection (the fair pool's observer hook)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def waited(self, seconds: float) -> None:
        self.seconds.append(seconds)

    def exhausted(self) -> None:
        pass

    def changed(self) -> None:
        pass


class _TimedStockPool(redis.asyncio.BlockingConnectionPool):
    """redis-py's pool, timed the same way: from asking for a connection to having one."""

    waits: _Waits

    async def get_connection(self, *args: object, **kwargs: object) -> object:
        started = time.monotonic()
        try:
            return await super().get_connection()
        finally:
            self.waits.waited(time.monotonic() - started)


async def _oversubscribed(
    client: redis.asyncio.Redis, tasks: int, rounds_per_task: int, pop_seconds: float
) -> tuple[int, float, int]:
    """``tasks`` tasks, each a loop of GET, a short BLPOP on an empty list and INCR.
    Returns (failed tasks, seconds for all, commands completed)."""
    completed = 0

    async def job(i: int) -> None:
        nonlocal completed
        for _ in range(rounds_per_task):
            await client.get("bench:key")
            await client.blpop([f"bench:empty:{i % 16}"], timeout=pop_seconds)
            await client.incr("bench:done")
            completed += 3

    started = time.perf_counter()
    results = await asyncio.gather(*(job(i) for i in range(tasks)), return_exceptions=True)
    elapsed = time.perf_counter() - started
    failed = sum(isinstance(r, RedisConnectionError) for r in results)
    others = [
        r
        for r in results
        if isinstance(r, BaseException) and not isinstance(r, RedisConnectionError)
    ]
    if others:
        raise others[0]
    return failed, elapsed, completed


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def bench_pool(
    server: RedisServer, rounds: int, tasks: int, cap: int, pool_timeout: float
) -> None:
    settings = settings_for(
        server,
        REDIS_POOL_MAX_CONNECTIONS=str(cap),
        REDIS_POOL_TIMEOUT_SECONDS=str(pool_timeout),
    )
    ours = create_async_client(settings, name="bench-pool")
    ours_waits = _Waits()
    ours.connection_pool.observer = ours_waits  # type: ignore[attr-defined]
    stock_pool = _TimedStockPool(
        host=server.host,
        port=server.port,
        password=server.password,
        max_connections=cap,
        timeout=pool_timeout,
    )
    stock_waits = _Waits()
    stock_pool.waits = stock_waits
    stock = redis.asyncio.Redis(connection_pool=stock_pool)
    figures: dict[str, list[tuple[int, float, int]]] = {"ours": [], "stock": []}
    order = [("ours", ours), ("stock", stock)]
    for i in range(rounds):
        for kind, client in order if i % 2 == 0 else order[::-1]:
            figures[kind].append(await _oversubscribed(client, tasks, 5, 0.02))

    def line(kind: str, waits: _Waits) -> tuple[str, float, float]:
        failed = sum(f for f, _, _ in figures[kind])
        total = statistics.median(t for _, t, _ in figures[kind])
        rate = sum(c for _, _, c in figures[kind]) / sum(t for _, t, _ in figures[kind])
        p50, p99 = _pct(waits.seconds, 0.5), _pct(waits.seconds, 0.99)
        return (
            f"{failed:4d} of {rounds * tasks} tasks failed, connection wait p50 "
            f"{p50 * 1000:6.1f} ms p99 {p99 * 1000:6.1f} ms, total {total:5.2f} s per round, "
            f"{rate:,.0f} commands/s completed",
            total,
            rate,
        )

    ours_line, ours_total, ours_rate = line("ours", ours_waits)
    stock_line, stock_total, stock_rate = line("stock", stock_waits)
    print(
        f"(c) pool: {tasks} tasks on {cap} connections, pool timeout {pool_timeout:g} s, each task "
        f"5 x (GET, BLPOP timeout 20 ms on an empty list, INCR), {rounds} rounds alternating\n"
        f"    fair pool:            {ours_line}\n"
        f"    redis-py's pool:      {stock_line}\n"
        f"    completed commands/s ratio ours/redis-py {ours_rate / stock_rate:.2f}, "
        f"total time ratio {ours_total / stock_total:.2f} (redis-py's total stops early "
        "for the tasks that failed)"
    )
    await ours.aclose()
    await stock.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=int, default=4, help="wrk duration per round")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections")
    parser.add_argument("--gets", type=int, default=1000, help="GETs per slice for (b)")
    parser.add_argument("--slices", type=int, default=200, help="alternating slices for (b)")
    parser.add_argument("--concurrency", type=int, default=50, help="client tasks")
    parser.add_argument("--pool-rounds", type=int, default=4, help="alternating rounds for (c)")
    parser.add_argument("--pool-tasks", type=int, default=1000, help="tasks for (c), 20x the pool")
    parser.add_argument(
        "--only", choices=["health", "client", "pool"], action="append", help="run only these"
    )
    args = parser.parse_args()
    only = set(args.only or ["health", "client", "pool"])
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp), password="bench-password").start()
        try:
            print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
            if "health" in only:
                bench_health(server, args.rounds, args.seconds, args.connections)
            if "client" in only:
                asyncio.run(bench_client(server, args.slices, args.gets, args.concurrency))
            if "pool" in only:
                asyncio.run(bench_pool(server, args.pool_rounds, args.pool_tasks, 50, 5.0))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
