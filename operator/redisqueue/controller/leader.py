"""Leader election with a coordination.k8s.io/v1 Lease: one replica writes, the others stand by.

The algorithm is the one Kubernetes' own controllers use. The holder renews the Lease every
``retry_seconds``; a standby takes it over when the record (holder, renewTime,
resourceVersion) has not changed for ``lease_seconds`` *by its own clock* (no clock
comparison between machines), or at once when the holder released it. Every write carries
the resourceVersion it read, so two standbys racing for an expired Lease cannot both win: the
API server answers the second with 409.

A leader that cannot renew for ``lease_seconds`` counts itself as deposed (``lost`` is set)
before any standby may take over, because the standby waits at least as long.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from dataclasses import dataclass
from typing import Any, Final

from .kube import Kube, KubeError, object_path

log = logging.getLogger("redisqueue.leader")

LEASE_API: Final = "coordination.k8s.io/v1"


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    """Where the Lease lives, who this replica is, and the timing."""

    namespace: str
    name: str
    identity: str
    lease_seconds: float = 15.0
    retry_seconds: float = 2.0

    def __post_init__(self) -> None:
        if self.retry_seconds * 2 > self.lease_seconds:
            raise ValueError(
                f"lease duration ({self.lease_seconds:g} s) must be at least twice the "
                f"retry period ({self.retry_seconds:g} s)"
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
        self._renewed_at = 0.0

    @property
    def is_leader(self) -> bool:
        return self.leading.is_set() and not self.lost.is_set()

    async def run(self) -> None:
        """Campaign and renew until cancelled or deposed (then ``lost`` is set and it returns)."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self.try_acquire_or_renew()
            except KubeError as exc:
                log.warning("lease %s: %s", self.settings.name, exc.message)
            except (TimeoutError, OSError) as exc:
                log.warning("lease %s: API unreachable (%s)", self.settings.name, exc)
            if (
                self.leading.is_set()
                and loop.time() - self._renewed_at > self.settings.lease_seconds
            ):
                log.error(
                    "lease %s: not renewed for %.0f s; no longer the leader",
                    self.settings.name,
                    self.settings.lease_seconds,
                )
                self.lost.set()
                return
            await asyncio.sleep(self.settings.retry_seconds)

    async def try_acquire_or_renew(self) -> bool:
        """One round: True when this replica holds the Lease afterwards."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        me = self.settings.identity
        lease = await self.kube.get(self.path)
        if lease is None:
            try:
                await self.kube.create(
                    {
                        "apiVersion": LEASE_API,
                        "kind": "Lease",
                        "metadata": {
                            "name": self.settings.name,
                            "namespace": self.settings.namespace,
                        },
                        "spec": self._spec({}, acquire=True),
                    }
                )
            except KubeError as exc:
                if exc.conflict:  # another replica created it first
                    return False
                raise
            self._won(now, transitions=0)
            return True
        spec: dict[str, Any] = dict(lease.get("spec") or {})
        holder = spec.get("holderIdentity") or None
        record = (holder, spec.get("renewTime"), lease["metadata"].get("resourceVersion"))
        if record != self._record:
            self._record, self._record_seen_at = record, now
        if holder != me:
            duration = float(spec.get("leaseDurationSeconds") or self.settings.lease_seconds)
            if self.leading.is_set():  # someone else holds it now: we were deposed
                self.lost.set()
                return False
            if holder is not None and now - self._record_seen_at < duration:
                return False  # a live leader
        lease["spec"] = self._spec(spec, acquire=holder != me)
        try:
            await self.kube.replace(self.path, lease)
        except KubeError as exc:
            if exc.conflict:  # the Lease changed since we read it: someone else moved first
                return False
            raise
        if holder != me:
            self._won(now, transitions=int(lease["spec"].get("leaseTransitions") or 0))
        self._renewed_at = now
        return True

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

    def _won(self, now: float, *, transitions: int) -> None:
        self._renewed_at = now
        self.leading.set()
        log.info(
            "lease %s/%s: %s is the leader (transition %d)",
            self.settings.namespace,
            self.settings.name,
            self.settings.identity,
            transitions,
        )

    async def release(self) -> None:
        """Give the Lease up on a clean shutdown, so a standby takes over at once."""
        if not self.is_leader:
            return
        try:
            lease = await self.kube.get(self.path)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != (
                self.settings.identity
            ):
                return
            lease["spec"] = dict(lease["spec"], holderIdentity=None, leaseDurationSeconds=1)
            await self.kube.replace(self.path, lease)
            log.info("lease %s: released", self.settings.name)
        except (KubeError, OSError) as exc:
            log.warning("lease %s: not released (%s)", self.settings.name, exc)
