"""The Secrets RedisQueues read, as last read; never any other Secret.

A thousand RedisQueues sharing one password Secret read it once: concurrent readers of a
Secret share one GET, and what was read is kept until no RedisQueue reads it any more. The
operator learns of changes from a metadata-only watch of Secrets (:mod:`.side`), so the data
of Secrets it does not read never reaches it; a referenced Secret whose resourceVersion moved
is read again with a GET. Special Secret types (service-account tokens and the like) are
never kept, and only what the contract needs of a Secret is: its identity, type and data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final

from ..api.kube import Kube, KubeError
from ..api.paths import object_path
from ..resource.errors import SetupError
from ..resource.identity import JSON
from ..resource.status import Reason
from .registry import Registry

Key = tuple[str, str]

#: Secret types that hold a credential of the cluster or of another system. The operator never
#: reads them for a RedisQueue and never writes into them, whoever asks.
SPECIAL_SECRET_TYPES: Final = frozenset(
    {
        "kubernetes.io/service-account-token",
        "kubernetes.io/tls",
        "kubernetes.io/dockercfg",
        "kubernetes.io/dockerconfigjson",
        "bootstrap.kubernetes.io/token",
    }
)


def refuse_special(secret: Mapping[str, Any], namespace: str, name: str, what: str) -> None:
    """Raise :class:`SetupError` when ``secret`` is of a type the operator never touches."""
    kind = secret.get("type") or "Opaque"
    if kind in SPECIAL_SECRET_TYPES:
        raise SetupError(
            Reason.SECRET_REFUSED,
            f"Secret {namespace}/{name} ({what}) is of type {kind}; the operator never reads "
            "or writes service-account-token, TLS, docker-config or bootstrap-token Secrets: "
            "use an Opaque Secret",
        )


def _slim(secret: Mapping[str, Any]) -> JSON:
    meta = secret.get("metadata") or {}
    return {
        "metadata": {k: meta[k] for k in ("name", "namespace", "resourceVersion") if k in meta},
        "type": secret.get("type") or "Opaque",
        "data": dict(secret.get("data") or {}),
    }


def _special(secret: Mapping[str, Any]) -> bool:
    return (secret.get("type") or "Opaque") in SPECIAL_SECRET_TYPES


class SecretStore:
    """Referenced Secrets by (namespace, name), read on first use and after a change."""

    def __init__(self, kube: Kube, registry: Registry) -> None:
        self.kube = kube
        self.registry = registry
        self._secrets: dict[Key, JSON] = {}
        self._pending: dict[Key, asyncio.Future[JSON | None]] = {}

    async def get(self, namespace: str, name: str, what: str) -> JSON:
        """Secret ``name`` of ``namespace``; ``what`` says in errors what it is needed for.

        Raises :class:`SetupError` when it does not exist, cannot be read, or is of a type
        the operator never reads."""
        key = (namespace, name)
        secret = self._secrets.get(key)
        if secret is None:
            try:
                secret = await self._read_once(key)
            except KubeError as exc:
                raise SetupError(
                    Reason.SECRET_UNREADABLE,
                    f"cannot read Secret {namespace}/{name} ({what}): {exc.message}",
                ) from None
        if secret is None:
            raise SetupError(
                Reason.SECRET_NOT_FOUND,
                f"Secret {namespace}/{name} ({what}) does not exist; create it "
                "in the RedisQueue's namespace",
            )
        refuse_special(secret, namespace, name, what)
        return secret

    async def _read_once(self, key: Key) -> JSON | None:
        """GET one Secret; concurrent callers share one request (after a restart, a thousand
        RedisQueues sharing a password Secret all miss the cache at once)."""
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._read(key))
            self._pending[key] = pending
            pending.add_done_callback(lambda _: self._pending.pop(key, None))
        return await asyncio.shield(pending)

    async def _read(self, key: Key) -> JSON | None:
        secret = await self.kube.get(object_path("v1", "Secret", *key))
        if secret is None:
            self._secrets.pop(key, None)
            return None
        slim = _slim(secret)
        if self.registry.reads_secret(*key) and not _special(slim):  # kept while read
            self._secrets[key] = slim
        return slim

    def remember(self, secret: Mapping[str, Any]) -> None:
        """Keep a Secret the caller has just read or created (when some RedisQueue reads it)."""
        meta = secret.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        if self.registry.reads_secret(*key) and not _special(secret):
            self._secrets[key] = _slim(secret)

    def is_current(self, namespace: str, name: str, resource_version: str | None) -> bool:
        """Whether the kept copy of a Secret is at ``resource_version`` already."""
        kept = self._secrets.get((namespace, name))
        version = None if kept is None else kept["metadata"].get("resourceVersion")
        return version is not None and version == resource_version

    async def reread(self, namespace: str, name: str) -> JSON | None:
        """Read a Secret again after a watched change (None: it is gone)."""
        self._secrets.pop((namespace, name), None)
        try:
            return await self._read_once((namespace, name))
        except KubeError:
            return None  # the readers' next resolution says what is wrong, by name

    def drop(self, namespace: str, name: str) -> None:
        """Forget a Secret (it was deleted)."""
        self._secrets.pop((namespace, name), None)

    def prune(self) -> None:
        """Forget Secrets no RedisQueue reads any more."""
        for key in [k for k in self._secrets if not self.registry.reads_secret(*k)]:
            del self._secrets[key]

    def __contains__(self, key: Key) -> bool:
        return key in self._secrets

    def __len__(self) -> int:
        return len(self._secrets)
