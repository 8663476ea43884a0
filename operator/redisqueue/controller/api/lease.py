"""Leader election with a coordination.k8s.io/v1 Lease: one replica writes, the others stand by.

The algorithm and its margins are those of Kubernetes' own controllers (client-go's
``leaderelection``): the holder renews the Lease every ``retry_seconds``; a standby takes it
over when the record (holder, renewTime, resourceVersion) has not changed for
``lease_seconds`` *by its own clock* (no clock comparison between machines), or at once
when the holder released it. Every write carries the resourceVersion it read, so two
standbys racing for an expired Lease cannot both win: the API server answers the second
with 409.

The leader stops writing before anyone else may start:

* every Lease call has a timeout (``retry_seconds``), so a call hung on a half-open
  connection cannot hold the renewal up;
* writes are allowed only until ``renew_deadline_seconds`` after the start of the last
  successful renewal (:meth:`LeaderElector.may_write`, the process's write gate), and no
  write may still be under way ``lease_seconds`` after it (their timeouts end before);
* a leader that has not renewed by the renew deadline is deposed: ``lost`` is set and the
  runner stops kopf.

A standby waits at least ``lease_seconds`` from the moment *it* saw the last renewal, which
is after that renewal started, so the old leader's last write precedes the new leader's
first. A transition is logged, counted in ``redisqueue_operator_leader`` and, by the
replica that takes over (the only one that may write), posted as an Event on the Lease.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from dataclasses import dataclass
from typing import Any, Final

from ..resource.identity import MANAGED_BY
from ..telemetry import metrics
from .gate import WRITE_GATE, WriteFenced
from .kube import Kube, KubeError
from .paths import object_path

log = logging.getLogger("redisqueue.leader")

LEASE_API: Final = "coordination.k8s.io/v1"


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    """Where the Lease lives, who this replica is, and the timing (client-go's defaults)."""

    namespace: str
    name: str
    identity: str
    lease_seconds: float = 15.0
    #: Default: two thirds of the Lease duration (client-go's 10 s of 15 s).
    renew_deadline_seconds: float = 0.0
    retry_seconds: float = 2.0

    def __post_init__(self) -> None:
        if not self.renew_deadline_seconds:
            object.__setattr__(self, "renew_deadline_seconds", self.lease_seconds * 2 / 3)
        if self.retry_seconds * 2 > self.lease_seconds:
            raise ValueError(
                f"lease duration ({self.lease_seconds:g} s) must be at least twice the "
                f"retry period ({self.retry_seconds:g} s)"
            )
        if not self.retry_seconds < self.renew_deadline_seconds < self.lease_seconds:
            raise ValueError(
                f"renew deadline ({self.renew_deadline_seconds:g} s) must lie between the "
                f"retry period ({self.retry_seconds:g} s) and the lease duration "
                f"({self.lease_seconds:g} s)"
            )


def micro_time(moment: datetime.datetime | None = None) -> str:
    """The API's MicroTime format: ``2026-01-02T03:04:05.123456Z``."""
    moment = moment or datetime.datetime.now(datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Campaigns for the Lease; ``leading`` is set while this replica holds it."""

    def __init__(self, kube: Kube, settings: LeaseSettings) -> None:
        self.kube = kube
        self.settings = settings
        self.leading = asyncio.Event()
        self.lost = asyncio.Event()
        self.path = object_path(LEASE_API, "Lease", settings.namespace, settings.name)
        self._record: tuple[Any, ...] | None = None
        self._record_seen_at = 0.0
        self._renewed_at = 0.0  # loop time at which the last successful renewal started
        self._lease: dict[str, Any] | None = None  # as last written by this replica
        self._expires_at: float | None = None  # when another holder's Lease runs out
        metrics.LEADER.set(0)

    @property
    def is_leader(self) -> bool:
        return self.leading.is_set() and not self.lost.is_set()

    def may_write(self) -> bool:
        """Whether this replica may send a write now: it leads, and its last renewal is
        younger than the renew deadline (the runner installs this as the write gate)."""
        return self.is_leader and (
            asyncio.get_running_loop().time() - self._renewed_at
            < self.settings.renew_deadline_seconds
        )

    def write_deadline(self) -> float:
        """Loop time by which a write sent now must be over: the earliest moment a standby
        may take the Lease, less a second for the clocks' rates."""
        return self._renewed_at + self.settings.lease_seconds - 1.0

    async def run(self) -> None:
        """Campaign and renew until cancelled or deposed (then ``lost`` is set and it returns)."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                async with asyncio.timeout(self.settings.retry_seconds):
                    await self.try_acquire_or_renew()
            except KubeError as exc:
                log.warning("lease %s: %s", self.settings.name, exc.message)
            except (TimeoutError, OSError, WriteFenced) as exc:
                log.warning(
                    "lease %s: no answer within %g s (%s)",
                    self.settings.name,
                    self.settings.retry_seconds,
                    type(exc).__name__,
                )
            if (
                self.leading.is_set()
                and loop.time() - self._renewed_at >= self.settings.renew_deadline_seconds
            ):
                log.error(
                    "lease %s: not renewed within the %g s renew deadline; no longer the "
                    "leader (writes stopped)",
                    self.settings.name,
                    self.settings.renew_deadline_seconds,
                )
                self._depose()
                return
            if self.lost.is_set():
                return
            wait = self.settings.retry_seconds - (loop.time() - started)
            if not self.leading.is_set() and self._expires_at is not None:
                # A standby tries again the moment the holder's Lease runs out, not up to a
                # retry period later.
                wait = min(wait, self._expires_at - loop.time())
            await asyncio.sleep(max(0.0, wait))

    async def try_acquire_or_renew(self) -> bool:
        """One round: True when this replica holds the Lease afterwards."""
        now = asyncio.get_running_loop().time()
        if self.is_leader and self._lease is not None:
            # Renewing: PUT what we last wrote; a 409 means someone else wrote since.
            mine = self._lease
            mine["spec"] = self._spec(dict(mine.get("spec") or {}), acquire=False)
            try:
                self._lease = await self._replace(mine)
            except KubeError as exc:
                if not exc.conflict:
                    raise
                self._lease = None  # read it again next round
                return False
            self._renewed_at = now
            return True
        lease = await self.kube.get(self.path)
        if lease is None:
            return await self._create(now)
        spec: dict[str, Any] = dict(lease.get("spec") or {})
        holder = spec.get("holderIdentity") or None
        record = (holder, spec.get("renewTime"), lease["metadata"].get("resourceVersion"))
        if record != self._record:
            self._record, self._record_seen_at = record, now
        me = self.settings.identity
        if holder != me:
            if self.leading.is_set():  # someone else holds it now: we were deposed
                self._depose()
                return False
            duration = float(spec.get("leaseDurationSeconds") or self.settings.lease_seconds)
            self._expires_at = self._record_seen_at + duration if holder is not None else None
            if holder is not None and now - self._record_seen_at < duration:
                return False  # a live leader
        lease["spec"] = self._spec(spec, acquire=holder != me)
        try:
            self._lease = await self._replace(lease, gated=False)
        except KubeError as exc:
            if exc.conflict:  # the Lease changed since we read it: someone else moved first
                return False
            raise
        self._renewed_at = now
        if holder != me:
            await self._won(holder, int(lease["spec"].get("leaseTransitions") or 0))
        return True

    async def _create(self, now: float) -> bool:
        body = {
            "apiVersion": LEASE_API,
            "kind": "Lease",
            "metadata": {"name": self.settings.name, "namespace": self.settings.namespace},
            "spec": self._spec({}, acquire=True),
        }
        try:
            self._lease = await self.kube.create(body, gated=False)
        except KubeError as exc:
            if exc.conflict:  # another replica created it first
                return False
            raise
        self._renewed_at = now
        await self._won(None, 0)
        return True

    async def _replace(self, lease: dict[str, Any], *, gated: bool = True) -> dict[str, Any]:
        # Renewals go through the gate like every write: a leader past its deadline does
        # not renew either. Acquiring is the one write a standby makes.
        return await self.kube.replace(self.path, lease, gated=gated)

    def _spec(self, current: dict[str, Any], *, acquire: bool) -> dict[str, Any]:
        now = micro_time()
        spec = dict(current)
        spec.update(
            holderIdentity=self.settings.identity,
            leaseDurationSeconds=int(self.settings.lease_seconds),
            renewTime=now,
        )
        if acquire:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(current.get("leaseTransitions") or 0) + (
                1 if current else 0
            )
        return spec

    async def _won(self, previous: str | None, transitions: int) -> None:
        self.leading.set()
        metrics.LEADER.set(1)
        metrics.LEADER_TRANSITIONS.inc()
        after = f" after {previous}" if previous else ""
        log.info(
            "lease %s/%s: %s is the leader%s (transition %d)",
            self.settings.namespace,
            self.settings.name,
            self.settings.identity,
            after,
            transitions,
        )
        await self._event("LeaderElected", f"{self.settings.identity} became the leader{after}")

    def _depose(self) -> None:
        self.lost.set()
        metrics.LEADER.set(0)
        metrics.LEADER_TRANSITIONS.inc()
        WRITE_GATE.fence(lambda: False)

    async def _event(self, reason: str, message: str) -> None:
        """An Event on the Lease (only while this replica may write)."""
        now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "generateName": f"{self.settings.name}.",
                "namespace": self.settings.namespace,
            },
            "involvedObject": {
                "apiVersion": LEASE_API,
                "kind": "Lease",
                "name": self.settings.name,
                "namespace": self.settings.namespace,
                "uid": ((self._lease or {}).get("metadata") or {}).get("uid"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Normal",
            "source": {"component": MANAGED_BY},
            "reportingComponent": MANAGED_BY,
            "reportingInstance": self.settings.identity[:128],
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
            "action": "Elect",
            "count": 1,
        }
        try:
            await self.kube.create(event)
        except (KubeError, WriteFenced, OSError, TimeoutError) as exc:
            log.warning(
                "lease %s: could not post the %s event (%s)",
                self.settings.name,
                reason,
                getattr(exc, "message", type(exc).__name__),
            )

    async def release(self) -> None:
        """Give the Lease up on a clean shutdown, so a standby takes over at once."""
        if not self.may_write():
            return
        try:
            async with asyncio.timeout(self.settings.retry_seconds):
                lease = await self.kube.get(self.path)
                if lease is None or (lease.get("spec") or {}).get("holderIdentity") != (
                    self.settings.identity
                ):
                    return
                lease["spec"] = dict(lease["spec"], holderIdentity=None, leaseDurationSeconds=1)
                await self.kube.replace(self.path, lease)
            log.info("lease %s: released", self.settings.name)
        except (KubeError, OSError, TimeoutError, WriteFenced) as exc:
            log.warning("lease %s: not released (%s)", self.settings.name, type(exc).__name__)
        finally:
            self._depose()
