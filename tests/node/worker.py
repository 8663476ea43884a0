"""A queue app as a team would write it: configuration only from the injected Secret
(``envFrom``), Redis only through the project's client library.

    python worker.py produce   # enqueue JOBS jobs ("<run>-<n>"), RATE per second, or
                               # fewer: it stops early once the key STOP_KEY exists
    python worker.py consume   # take jobs reliably until stopped

With ``METRICS_PORT`` set, it serves the client library's metrics (``redisqueue_client_*``)
on that port at ``/metrics``, as an app scraped through a PodMonitor does.

Reliable consumption: BLMOVE moves a job from the queue to this consumer's own processing
list in one step, so a job is never only in the consumer's memory. After the work, one
MULTI removes it from the processing list and records it in the ``done`` set (the
acknowledgement). Between jobs a consumer holds nothing, so anything found in its
processing list then (a BLMOVE whose reply was lost when Redis died) goes back to the queue.
Semantics: at-least-once. A job is processed twice only when Redis died after the work
and before the acknowledgement was applied; the ``done`` set makes the result idempotent.
On SIGTERM (a rollout) a consumer finishes the job in hand, puts back anything left in its
processing list and exits, so a restart loses nothing. The producer logs every push that
took longer than ``SLOW_PUSH_SECONDS`` and, at the end, the longest one; then it idles until
stopped, so that its Deployment does not start it over.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
import uuid
from types import FrameType

import redis

from redisqueue.client import create_client

QUEUE = os.environ.get("QUEUE_KEY", "phase1:jobs")
DONE = f"{QUEUE}:done"
#: One member per processing attempt ("<job> <consumer> <time> <attempt id>"), so a
#: retried command never counts twice and a job processed twice shows as two members.
ATTEMPTS = f"{QUEUE}:attempts"
BLOCK_SECONDS = float(os.environ.get("BLOCK_SECONDS", "30"))
WORK_SECONDS = float(os.environ.get("WORK_SECONDS", "0.02"))
METRICS_PORT = os.environ.get("METRICS_PORT", "")
SLOW_PUSH_SECONDS = float(os.environ.get("SLOW_PUSH_SECONDS", "0.25"))


def log(message: str) -> None:
    print(f"{time.time():.3f} {message}", flush=True)


def produce(client: redis.Redis) -> None:
    jobs = int(os.environ["JOBS"])
    rate = float(os.environ.get("RATE", "50"))
    run = os.environ.get("RUN", "job")
    stop_key = os.environ.get("STOP_KEY", "")
    longest = 0.0
    pushed = 0
    for n in range(jobs):
        if stop_key and n % max(1, int(rate)) == 0 and _stopped(client, stop_key):
            break
        started = time.monotonic()
        while True:
            try:
                client.lpush(QUEUE, f"{run}-{n}")
                break
            except redis.RedisError as exc:
                # The client already retried with the contract's backoff; keep the job.
                log(f"redis error, retrying: {type(exc).__name__}: {exc}")
        took = time.monotonic() - started
        longest = max(longest, took)
        if took > SLOW_PUSH_SECONDS:
            log(f"slow push {took:.3f} s")
        pushed = n + 1
        time.sleep(max(0.0, 1 / rate - took))
    log(f"produced {pushed}, longest push {longest:.3f} s")
    # Stay until stopped: an exit would make the Deployment start it over, pushing every job
    # again.
    while True:
        time.sleep(3600)


def _stopped(client: redis.Redis, key: str) -> bool:
    """Whether ``key`` exists: asked about once a second; an error counts as "not yet"."""
    try:
        return bool(client.exists(key))
    except redis.RedisError:
        return False


class Stop(Exception):
    """SIGTERM arrived while the consumer waited for a job."""


def consume(client: redis.Redis) -> None:
    me = os.environ.get("HOSTNAME") or socket.gethostname()
    processing = f"{QUEUE}:processing:{me}"
    waiting = False
    stopping = False

    def on_term(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if waiting:  # nothing in hand: stop waiting at once
            raise Stop

    signal.signal(signal.SIGTERM, on_term)
    log(f"consuming {QUEUE} as {me}, blocking up to {BLOCK_SECONDS:g} s")
    while not stopping:
        try:
            # Orphans from a lost BLMOVE reply go back to the head of the queue.
            while client.lmove(processing, QUEUE, "RIGHT", "RIGHT") is not None:
                log("requeued an orphaned job")
            waiting = True
            try:
                job = client.blmove(QUEUE, processing, BLOCK_SECONDS, "RIGHT", "LEFT")
            finally:
                waiting = False
            if job is None:
                continue
            client.sadd(ATTEMPTS, f"{job.decode()} {me} {time.time():.3f} {uuid.uuid4().hex}")
            time.sleep(WORK_SECONDS)  # the work
            pipe = client.pipeline(transaction=True)
            pipe.lrem(processing, 1, job)
            pipe.sadd(DONE, job)
            pipe.execute()
        except Stop:
            # The connection may still owe the BLMOVE's reply: drop it, so the server ends
            # the wait (or has already moved a job, which the loop below hands back).
            client.connection_pool.disconnect()
            break
        except redis.RedisError as exc:
            # The client already retried with the contract's backoff; keep going.
            log(f"redis error, retrying: {type(exc).__name__}: {exc}")
            time.sleep(1)
    # A BLMOVE cut short may still have moved a job here: hand it back before leaving.
    while client.lmove(processing, QUEUE, "RIGHT", "RIGHT") is not None:
        log("requeued a job on shutdown")
    log("stopped")


def main() -> int:
    # The client library logs its retries and recoveries; show them with a timestamp.
    logging.basicConfig(level=logging.INFO, format="%(created).3f %(name)s %(message)s")
    if METRICS_PORT:
        from prometheus_client import start_http_server

        start_http_server(int(METRICS_PORT))
    client = create_client(name="worker")
    mode = sys.argv[1]
    if mode == "produce":
        produce(client)
    elif mode == "consume":
        consume(client)
    else:
        print(f"unknown mode {mode!r}: produce or consume", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
