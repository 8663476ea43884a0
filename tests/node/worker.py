"""A queue app as a team would write it: configuration only from the injected Secret
(``envFrom``), Redis only through the project's client library.

    python worker.py produce   # enqueue JOBS jobs ("<run>-<n>"), RATE per second
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
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
import uuid

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


def log(message: str) -> None:
    print(f"{time.time():.3f} {message}", flush=True)


def produce(client: redis.Redis) -> None:
    jobs = int(os.environ["JOBS"])
    rate = float(os.environ.get("RATE", "50"))
    run = os.environ.get("RUN", "job")
    for n in range(jobs):
        client.lpush(QUEUE, f"{run}-{n}")
        time.sleep(1 / rate)
    log(f"produced {jobs}")


def consume(client: redis.Redis) -> None:
    me = os.environ.get("HOSTNAME") or socket.gethostname()
    processing = f"{QUEUE}:processing:{me}"
    log(f"consuming {QUEUE} as {me}, blocking up to {BLOCK_SECONDS:g} s")
    while True:
        try:
            # Orphans from a lost BLMOVE reply go back to the head of the queue.
            while client.lmove(processing, QUEUE, "RIGHT", "RIGHT") is not None:
                log("requeued an orphaned job")
            job = client.blmove(QUEUE, processing, BLOCK_SECONDS, "RIGHT", "LEFT")
            if job is None:
                continue
            client.sadd(ATTEMPTS, f"{job.decode()} {me} {time.time():.3f} {uuid.uuid4().hex}")
            time.sleep(WORK_SECONDS)  # the work
            pipe = client.pipeline(transaction=True)
            pipe.lrem(processing, 1, job)
            pipe.sadd(DONE, job)
            pipe.execute()
        except redis.RedisError as exc:
            # The client already retried with the contract's backoff; keep going.
            log(f"redis error, retrying: {type(exc).__name__}: {exc}")
            time.sleep(1)


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
