"""Fair connection pools: callers get a connection in the order they asked for one.

redis-py's ``BlockingConnectionPool`` lets a caller that has just released a connection
take it straight back, ahead of callers already waiting; under load the same callers win
again and again and the others time out although the pool serves everyone in time. These
subclasses hand a released connection directly to the longest-waiting caller (FIFO), so no
caller times out while the pool's whole queue of work fits within the pool timeout.

When a caller does wait longer than the pool timeout, :class:`PoolExhaustedError` says so,
naming the cap and the wait. It is a redis-py ``ConnectionError`` (code that catches those
keeps working) but the client never counts it as a lost connection. Each wait is reported
to ``observer`` (the client's pool-wait histogram and exhaustion counter).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from queue import Empty
from typing import Any, Protocol

import redis
import redis.asyncio
from redis.event import AsyncAfterConnectionReleasedEvent
from redis.exceptions import ConnectionError, TimeoutError


class PoolExhaustedError(ConnectionError):
    """Every connection of the pool stayed busy for the whole pool timeout."""

    def __init__(self, cap: int, timeout: float | None, endpoint: str, waiting: int) -> None:
        self.cap = cap
        self.timeout = timeout
        self.waiting = waiting
        super().__init__(
            f"No connection available: all {cap} connections of the pool for {endpoint} "
            f"stayed busy for {timeout:g} s, with {waiting} more callers waiting "
            "(raise REDIS_POOL_MAX_CONNECTIONS or REDIS_POOL_TIMEOUT_SECONDS, or hold "
            "connections for shorter)"
        )


class PoolObserver(Protocol):
    """What a pool reports: each wait for a connection, each caller that gave up, and each
    change of its connections (handed out, taken back)."""

    def waited(self, seconds: float) -> None: ...

    def exhausted(self) -> None: ...

    def changed(self) -> None: ...


class _Quiet:
    def waited(self, seconds: float) -> None:
        pass

    def exhausted(self) -> None:
        pass

    def changed(self) -> None:
        pass


def _endpoint(kwargs: dict[str, Any]) -> str:
    if kwargs.get("path"):
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


class _Waiter:
    __slots__ = ("event", "item", "served")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.item: Any = None
        self.served = False


class FairBlockingConnectionPool(redis.BlockingConnectionPool):
    """A thread-safe ``BlockingConnectionPool`` that serves waiting callers first come,
    first served."""

    observer: PoolObserver = _Quiet()

    def reset(self) -> None:
        self._fair_lock = threading.Lock()
        self._waiters: deque[_Waiter] = deque()
        super().reset()  # type: ignore[no-untyped-call]

    def get_connection(self, *_args: Any, **_options: Any) -> Any:
        started = time.monotonic()
        self._checkpid()
        waiter: _Waiter | None = None
        item: Any = None
        with self._fair_lock:
            if not self._waiters:
                try:
                    item = self.pool.get_nowait()  # a connection, or None: a free slot
                except Empty:
                    waiter = _Waiter()
            else:
                waiter = _Waiter()
            if waiter is not None:
                self._waiters.append(waiter)
        if waiter is not None:
            try:
                waiter.event.wait(self.timeout)
            except BaseException:  # interrupted (KeyboardInterrupt): leave the queue cleanly
                with self._fair_lock:
                    if not waiter.served:
                        self._waiters.remove(waiter)
                        raise
                if waiter.item is not None:
                    self.release(waiter.item)
                else:
                    self._free_slot()
                raise
            with self._fair_lock:
                if not waiter.served:
                    self._waiters.remove(waiter)
                    waiting = len(self._waiters)
                    self.observer.exhausted()
                    raise PoolExhaustedError(
                        self.max_connections,
                        self.timeout,
                        _endpoint(self.connection_kwargs),
                        waiting,
                    )
                item = waiter.item
        self.observer.waited(time.monotonic() - started)
        connection = item if item is not None else self.make_connection()  # type: ignore[no-untyped-call]
        try:
            connection.connect()
            # As redis-py's pool: a pooled connection must have nothing left to read; if it
            # has (the server closed it while idle), reconnect.
            try:
                if connection.can_read():
                    raise ConnectionError("Connection has data")
            except (ConnectionError, TimeoutError, OSError):
                connection.disconnect()
                connection.connect()
                if connection.can_read():
                    raise ConnectionError("Connection not ready") from None
        except BaseException:
            self.release(connection)
            raise
        self.observer.changed()
        return connection

    def release(self, connection: Any) -> None:
        self._checkpid()
        item: Any = connection
        if not self.owns_connection(connection):
            connection.disconnect()
            item = None  # a slot for a new connection
        elif connection.should_reconnect():
            connection.disconnect()
        with self._fair_lock:
            if self._waiters:
                waiter = self._waiters.popleft()
                waiter.item = item
                waiter.served = True
                waiter.event.set()
            else:
                self.pool.put_nowait(item)
        self.observer.changed()

    def _free_slot(self) -> None:
        # A slot handed to a caller that left: pass it on like a released connection.
        with self._fair_lock:
            if self._waiters:
                waiter = self._waiters.popleft()
                waiter.item, waiter.served = None, True
                waiter.event.set()
                return
            self.pool.put_nowait(None)

    def waiting(self) -> int:
        """Callers waiting for a connection now."""
        return len(self._waiters)


class AsyncFairBlockingConnectionPool(redis.asyncio.BlockingConnectionPool):
    """The asyncio twin of :class:`FairBlockingConnectionPool`, for one event loop."""

    observer: PoolObserver = _Quiet()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiters: deque[asyncio.Future[Any]] = deque()

    async def get_connection(self, *_args: Any, **_options: Any) -> Any:
        started = time.monotonic()
        if not self._waiters and self.can_get_connection():
            connection = self.get_available_connection()  # type: ignore[no-untyped-call]
        else:
            connection = await self._wait_turn()
        self.observer.waited(time.monotonic() - started)
        try:
            await self.ensure_connection(connection)
        except BaseException:
            await self.release(connection)
            raise
        self.observer.changed()
        return connection

    async def _wait_turn(self) -> Any:
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[Any] = loop.create_future()
        self._waiters.append(turn)
        timer = None
        if self.timeout is not None:
            timer = loop.call_later(self.timeout, self._expire, turn)
        try:
            return await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled() and turn.exception() is None:
                self._hand_over(turn.result())  # handed over as we were cancelled: pass it on
            elif turn in self._waiters:
                self._waiters.remove(turn)  # so that a free connection is not held for it
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _expire(self, turn: asyncio.Future[Any]) -> None:
        if turn.done():
            return
        self._waiters.remove(turn)
        self.observer.exhausted()
        turn.set_exception(
            PoolExhaustedError(
                self.max_connections,
                self.timeout,
                _endpoint(self.connection_kwargs),
                sum(1 for waiter in self._waiters if not waiter.done()),
            )
        )

    def _hand_over(self, connection: Any) -> None:
        # Synchronous, so nobody can take the connection between release and hand-over.
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(connection)  # it stays in use, now by the waiter
                return
        self._in_use_connections.remove(connection)
        self._available_connections.append(connection)

    async def release(self, connection: Any) -> None:
        if connection.should_reconnect():
            await connection.disconnect()
        self._hand_over(connection)
        self.observer.changed()
        # As redis-py's pool does: listeners (re-authentication with streaming credential
        # providers) hear about every released connection.
        dispatcher = self._event_dispatcher
        if dispatcher is not None:
            event = AsyncAfterConnectionReleasedEvent(connection)  # type: ignore[no-untyped-call]
            await dispatcher.dispatch_async(event)

    def waiting(self) -> int:
        """Callers waiting for a connection now."""
        return len(self._waiters)
