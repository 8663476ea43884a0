"""One probe connection pool per distinct Redis endpoint and credentials, shared by the
RedisQueues that point at it.

A thousand RedisQueues on one Redis with the same password need one small pool, not a
thousand: an :class:`Endpoint` owns the redis-py client (short timeouts, no backoff, replies
bounded by :mod:`.bounded`, at most ``MAX_IN_FLIGHT + 2`` sockets), coalesces PINGs, and
batches the detail reads (``INFO`` and queue depths) into one pipeline at a time: callers
that arrive while one is out share the next. At most ``MAX_IN_FLIGHT`` PINGs and one
pipeline use the pool at once, so however slow Redis is to answer, a PING never finds the
pool used up (which would report a healthy Redis as unreachable). A flood of health requests
shares PINGs instead of multiplying them: with one PING out at a time, however many requests
arrive, a Redis sees from the operator the load of one client PINGing in a loop, and each
answer still comes from a PING sent after its request arrived. Every connection resolves its
host, checks each address against the operator's policy and dials only a checked one
(:mod:`.dial`). The per-RedisQueue view (result, metrics, log lines) stays in :mod:`.probe`.

:class:`EndpointPool` hands out endpoints by key and closes one when its last user leaves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError

from redisqueue.contract import ConnectionContract, tls_options

from ..telemetry.metrics import ServerInfo
from .bounded import ReplyRejected, limit_replies
from .dial import DialCheck, check_every_dial
from .result import QueueKey

#: PINGs outstanding at once per endpoint; later callers share the one sent after them. One:
#: a busy health endpoint's requests then share PINGs in larger groups (a PING costs about
#: as much CPU as a dozen health answers), and a slow Redis is asked once, not twice.
MAX_IN_FLIGHT: Final = 1
#: INFO is read at most this often per endpoint; callers in between reuse the last answer.
INFO_MAX_AGE_SECONDS: Final = 1.0

#: What tells two endpoints apart: where, as whom, over what, and how long to wait.
EndpointKey = tuple[str, int, int, str | None, str | None, bool, str | None, bool, float]


def endpoint_key(contract: ConnectionContract, timeout: float) -> EndpointKey:
    """The sharing key of ``contract``: everything that changes the connection itself."""
    return (
        contract.host,
        contract.port,
        contract.db,
        contract.username,
        contract.password,
        contract.tls,
        contract.tls_ca_cert,
        contract.tls_insecure_skip_verify,
        timeout,
    )


@dataclass(frozen=True, slots=True)
class PingOutcome:
    """One PING's answer: the round trip, or the exception it failed with."""

    latency_seconds: float | None = None
    error: BaseException | None = None
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class QueueReading:
    """A queue's depth and, for a stream with a consumer group, its pending count."""

    depth: int
    pending: int | None = None


@dataclass(frozen=True, slots=True)
class Details:
    """What one detail read found: the server's INFO and the depth of each queue asked for."""

    info: ServerInfo | None
    queues: dict[QueueKey, QueueReading]


def _info_int(info: object, field: str) -> int:
    """A numeric field of a reply; 0 when it is not a mapping or the field is not a number."""
    value = info.get(field, 0) if isinstance(info, dict) else 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return int(value)


class Endpoint:
    """A shared, bounded probe client for one Redis endpoint and credential."""

    def __init__(
        self,
        key: EndpointKey,
        contract: ConnectionContract,
        timeout: float,
        dial_check: DialCheck | None = None,
    ) -> None:
        self.key = key
        self.endpoint = contract.endpoint
        self.timeout = timeout
        self.users = 0
        ssl_kwargs = tls_options(
            contract.tls, contract.tls_ca_cert, contract.tls_insecure_skip_verify
        )
        if ssl_kwargs:
            ssl_kwargs["ssl"] = True
        self.client = redis.asyncio.Redis(
            host=contract.host,
            port=contract.port,
            db=contract.db,
            username=contract.username,
            password=contract.password,
            # Every call below runs under asyncio.timeout(self.timeout), which cancels it and
            # drops the connection; a read timeout of redis-py's own on top would wrap each
            # read in one more task and cost a PING about half its CPU again.
            socket_timeout=None,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
            max_connections=MAX_IN_FLIGHT + 2,
            protocol=2,  # the bounded reader below parses RESP2
            **ssl_kwargs,
        )
        limit_replies(self.client)  # a tenant's endpoint decides nothing about our memory
        if dial_check is not None:
            check_every_dial(self.client, dial_check)  # no name is dialled unchecked
        self._waiters: list[asyncio.Future[PingOutcome]] | None = None  # the next PING's
        self._launch_scheduled = False
        self._in_flight = 0
        # Detail reads waiting for the next pipeline, and the one pipeline under way.
        self._batch: list[tuple[tuple[QueueKey, ...], asyncio.Future[Details]]] = []
        self._details_task: asyncio.Task[None] | None = None
        self._info: ServerInfo | None = None
        self._info_at = -INFO_MAX_AGE_SECONDS

    # -- the coalesced PING -------------------------------------------------------------------
    async def ping(self) -> PingOutcome:
        """The outcome of a PING sent after this call began, shared with concurrent callers.

        Callers that arrive before the next PING is sent share it; it is sent on the next turn
        of the event loop. At most ``MAX_IN_FLIGHT`` PINGs are outstanding; beyond that the
        shared PING is sent as soon as one of them returns.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[PingOutcome] = loop.create_future()
        if self._waiters is None:
            self._waiters = []
            self._schedule()
        # Each caller waits on a future of its own: one that gives up (a cancelled health
        # request) takes nothing from the others, without a shield per caller.
        self._waiters.append(waiter)
        return await waiter

    def _schedule(self) -> None:
        if self._in_flight >= MAX_IN_FLIGHT or self._launch_scheduled:
            return
        self._launch_scheduled = True
        asyncio.get_running_loop().call_soon(self._launch)

    def _launch(self) -> None:
        self._launch_scheduled = False
        waiters, self._waiters = self._waiters, None
        if not waiters:
            return
        self._in_flight += 1
        task = asyncio.create_task(self._ping(), name=f"ping {self.endpoint}")

        def deliver(done: asyncio.Task[PingOutcome]) -> None:
            self._in_flight -= 1
            outcome = None if done.cancelled() else done.result()
            for waiter in waiters:
                if waiter.done():
                    continue
                if outcome is None:
                    waiter.cancel()
                else:
                    waiter.set_result(outcome)
            if self._waiters is not None:
                self._schedule()

        task.add_done_callback(deliver)

    async def _ping(self) -> PingOutcome:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                pong = await self.client.ping()
            if pong is not True:
                raise ReplyRejected("the answer to PING was not PONG")
        except Exception as exc:  # any fault is the status of the RedisQueues on this endpoint
            await self._reset_connections()
            return PingOutcome(error=exc)
        return PingOutcome(latency_seconds=time.perf_counter() - started)

    async def _reset_connections(self) -> None:
        # Drop pooled sockets after a failure so the next PING dials afresh.
        try:
            await self.client.connection_pool.disconnect()
        except Exception:  # noqa: S110 - the pool is rebuilt on the next PING anyway
            pass

    # -- batched detail reads -----------------------------------------------------------------
    async def details(self, queues: Sequence[QueueKey]) -> Details:
        """INFO and the depths of ``queues``, read in one pipeline with every other caller that
        arrives before it is sent; while one pipeline is out, later callers wait for the next.
        Raises the Redis error when the pipeline fails."""
        future: asyncio.Future[Details] = asyncio.get_running_loop().create_future()
        if not self._batch and self._details_task is None:
            asyncio.get_running_loop().call_soon(self._launch_details)
        self._batch.append((tuple(queues), future))
        return await asyncio.shield(future)

    def _launch_details(self) -> None:
        batch, self._batch = self._batch, []
        self._details_task = asyncio.create_task(
            self._read_details(batch), name=f"details {self.endpoint}"
        )

        def next_batch(_: asyncio.Task[None]) -> None:
            self._details_task = None
            if self._batch:  # callers that came while this pipeline was out
                self._launch_details()

        self._details_task.add_done_callback(next_batch)

    async def _read_details(
        self, batch: list[tuple[tuple[QueueKey, ...], asyncio.Future[Details]]]
    ) -> None:
        wanted = list(dict.fromkeys(q for queues, _ in batch for q in queues))
        try:
            info, readings = await self._pipeline(wanted)
        except Exception as exc:  # a hostile reply must not end anyone's probe loop
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        for queues, future in batch:
            if not future.done():
                future.set_result(Details(info, {q: readings[q] for q in queues if q in readings}))

    async def _pipeline(
        self, queues: list[QueueKey]
    ) -> tuple[ServerInfo | None, dict[QueueKey, QueueReading]]:
        now = time.monotonic()
        want_info = now - self._info_at >= INFO_MAX_AGE_SECONDS
        async with asyncio.timeout(self.timeout):
            async with self.client.pipeline(transaction=False) as pipe:
                if want_info:
                    pipe.info()
                for queue in queues:
                    if queue.type == "list":
                        pipe.llen(queue.key)
                    else:
                        pipe.xlen(queue.key)
                        if queue.group:
                            pipe.xpending(queue.key, queue.group)
                replies: list[Any] = await pipe.execute(raise_on_error=False)
        if want_info:
            info = replies.pop(0)
            if isinstance(info, BaseException):
                raise info
            self._info = ServerInfo(
                connected_clients=_info_int(info, "connected_clients"),
                commands_processed=_info_int(info, "total_commands_processed"),
                used_memory_bytes=_info_int(info, "used_memory"),
            )
            self._info_at = now
        readings: dict[QueueKey, QueueReading] = {}
        for queue in queues:
            depth = replies.pop(0)
            pending_reply: Any = replies.pop(0) if queue.type != "list" and queue.group else None
            if isinstance(depth, ResponseError):  # a key of another type: report nothing
                continue
            if isinstance(depth, BaseException):
                raise depth
            pending = None
            if queue.type != "list" and queue.group:
                # No such group (yet) answers with an error: nothing is pending in it.
                pending = (
                    0
                    if isinstance(pending_reply, BaseException)
                    else int(pending_reply.get("pending", 0))
                )
            if isinstance(depth, bool) or not isinstance(depth, int):
                continue  # not a count: a hostile or broken reply is reported as nothing
            readings[queue] = QueueReading(depth, pending)
        return self._info, readings

    async def close(self) -> None:
        await self.client.aclose()


class EndpointPool:
    """The endpoints in use, by key; an endpoint is closed when its last user releases it."""

    def __init__(self, dial_check: DialCheck | None = None) -> None:
        self._endpoints: dict[EndpointKey, Endpoint] = {}
        #: Checks every address each connection is about to dial (the operator's policy).
        self.dial_check = dial_check

    def acquire(self, contract: ConnectionContract, timeout: float) -> Endpoint:
        """The shared endpoint for ``contract`` (created on first use); pair with release."""
        key = endpoint_key(contract, timeout)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            endpoint = Endpoint(key, contract, timeout, self.dial_check)
            self._endpoints[key] = endpoint
        endpoint.users += 1
        return endpoint

    async def release(self, endpoint: Endpoint) -> None:
        """One user fewer; the last one out closes the endpoint's connections."""
        endpoint.users -= 1
        if endpoint.users <= 0 and self._endpoints.get(endpoint.key) is endpoint:
            del self._endpoints[endpoint.key]
            await endpoint.close()

    async def close(self) -> None:
        """Close every endpoint (shutdown)."""
        endpoints, self._endpoints = list(self._endpoints.values()), {}
        for endpoint in endpoints:
            await endpoint.close()

    def __len__(self) -> int:
        return len(self._endpoints)
