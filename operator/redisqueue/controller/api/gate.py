"""The write gate: asked before every write this process sends.

The leader election installs what it asks (:meth:`WriteGate.fence`), so a replica that can
no longer be sure it leads refuses its own writes before they leave the process, whichever
client sends them: :class:`~.kube.Kube` checks it before each request, and kopf's session
through an aiohttp trace hook (:func:`~.login.login`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

import aiohttp

#: Methods that change something: refused while the write fence is closed.
WRITES: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class WriteFenced(Exception):
    """A write refused in this process before it was sent: this replica may no longer write
    (it is not, or no longer surely, the leader)."""


class WriteGate:
    """Asked before every write this process sends, by :class:`Kube` and by kopf's session.

    Open unless the leader election says otherwise (:meth:`fence`): a replica that can no
    longer be sure it leads refuses its own writes before they leave the process, so two
    replicas never both write.
    """

    def __init__(self) -> None:
        self._may_write: Callable[[], bool] | None = None
        self._deadline: Callable[[], float] | None = None

    def fence(
        self, may_write: Callable[[], bool] | None, deadline: Callable[[], float] | None = None
    ) -> None:
        """Let writes through only while ``may_write()`` is True (None: always), each over
        by ``deadline()`` (event-loop time) at the latest."""
        self._may_write = may_write
        self._deadline = deadline

    def check(self, method: str, what: object) -> None:
        """Raise :class:`WriteFenced` if the write may not be sent."""
        if self._may_write is not None and not self._may_write():
            raise WriteFenced(f"{method} {what}: this replica may not write now")

    def seconds_left(self) -> float | None:
        """How long a write sent now may take, or None when there is no deadline."""
        if self._deadline is None:
            return None
        return self._deadline() - asyncio.get_running_loop().time()

    async def on_request_start(
        self,
        session: aiohttp.ClientSession,
        context: object,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        """aiohttp's hook for kopf's session: the same check for kopf's writes."""
        if params.method in WRITES:
            self.check(params.method, params.url.path)


#: The one gate of this process.
WRITE_GATE: Final = WriteGate()
