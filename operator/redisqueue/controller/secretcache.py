"""The Secrets RedisQueues read, as last read or watched; never any other Secret.

A thousand RedisQueues sharing one password Secret read it once. The cache is fed by the
operator's Secret watch (see :meth:`Reconciler.secret_changed`) and pruned to what the
index of references (:class:`SecretReferences`) still names. Special Secret types
(service-account tokens and the like) are never kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from .credentials import SPECIAL_SECRET_TYPES
from .kube import Kube, KubeError, object_path
from .spec import JSON
from .state import SecretReferences


def _special(secret: Mapping[str, Any]) -> bool:
    return (secret.get("type") or "Opaque") in SPECIAL_SECRET_TYPES


class SecretCache:
    """Referenced Secrets by (namespace, name)."""

    def __init__(self, kube: Kube, references: SecretReferences) -> None:
        self.kube = kube
        self.references = references
        self._secrets: dict[tuple[str, str], JSON] = {}
        self._pending: dict[tuple[str, str], asyncio.Future[JSON | None]] = {}

    async def read(self, namespace: str, names: Iterable[str]) -> dict[str, JSON]:
        """The Secrets ``names`` of ``namespace`` that exist, from the cache, reading (and
        keeping) those not seen yet. Missing or special ones are left out: the contract's
        resolution reads them again and says what is wrong, by name."""
        found: dict[str, JSON] = {}
        for name in names:
            key = (namespace, name)
            secret = self._secrets.get(key)
            if secret is None:
                secret = await self._read_once(key)
            if secret is not None:
                found[name] = secret
        return found

    async def _read_once(self, key: tuple[str, str]) -> JSON | None:
        """GET one Secret; concurrent callers share one request (after a restart, a thousand
        RedisQueues sharing a password Secret all miss the cache at once)."""
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._get(key))
            self._pending[key] = pending
            pending.add_done_callback(lambda _: self._pending.pop(key, None))
        return await asyncio.shield(pending)

    async def _get(self, key: tuple[str, str]) -> JSON | None:
        try:
            secret = await self.kube.get(object_path("v1", "Secret", *key))
        except KubeError:
            return None
        if secret is None or _special(secret):
            return None
        return self._secrets.setdefault(key, secret)

    def update(self, namespace: str, name: str, secret: Mapping[str, Any] | None) -> None:
        """A watched change: keep the new Secret, or drop it (deleted, or now special)."""
        key = (namespace, name)
        if secret is None or _special(secret):
            self._secrets.pop(key, None)
        else:
            self._secrets[key] = dict(secret)

    def prune(self) -> None:
        """Forget Secrets no RedisQueue reads any more."""
        for key in [k for k in self._secrets if k not in self.references]:
            del self._secrets[key]

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._secrets

    def __len__(self) -> int:
        return len(self._secrets)
