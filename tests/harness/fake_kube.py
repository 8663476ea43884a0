"""An in-memory stand-in for the Kubernetes API, for the controller's fast tier only.

This is the one fake of the API the suite allows: it lets the reconciler, the read side
and the provisioning steps be tested in seconds. It speaks the operator's client interface
(:class:`redisqueue.controller.api.kube.Kube`: get, list, list_pages, watch, apply, create,
replace, merge_patch, delete) over plain dicts, with the API server's behaviour that the
operator relies on in the simplest form that is still true: resourceVersions, uids,
generateName, 404 and 409, merge patches, watches, status as a subresource, a Secret's
immutable type, and server-side apply as a merge that records which manager applied which
data keys and labels. Schema and CEL validation, admission, RBAC, garbage collection and
the exact field-ownership rules of server-side apply are NOT here: tests of those run
against the real API server (tests marked ``k8s``).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from redisqueue.controller.api.gate import WRITE_GATE, WriteFenced
from redisqueue.controller.api.kube import KubeError

JSON = dict[str, Any]

_PATH = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<namespace>[^/]+))?/(?P<plural>[^/]+)"
    r"(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?$"
)
_KINDS = {
    "secrets": ("v1", "Secret"),
    "services": ("v1", "Service"),
    "configmaps": ("v1", "ConfigMap"),
    "persistentvolumeclaims": ("v1", "PersistentVolumeClaim"),
    "events": ("v1", "Event"),
    "pods": ("v1", "Pod"),
    "statefulsets": ("apps/v1", "StatefulSet"),
    "deployments": ("apps/v1", "Deployment"),
    "networkpolicies": ("networking.k8s.io/v1", "NetworkPolicy"),
    "leases": ("coordination.k8s.io/v1", "Lease"),
    "redisqueues": ("redisqueue.dev/v1alpha1", "RedisQueue"),
}
_PLURALS = {kind: plural for plural, (_, kind) in _KINDS.items()}


@dataclass(frozen=True)
class Where:
    """Where a path points: a collection (``name`` None) or one object."""

    plural: str
    namespace: str | None
    name: str | None = None
    sub: str | None = None


def where(path: str) -> Where:
    match = _PATH.match(path)
    if match is None:
        raise ValueError(f"not an API path: {path}")
    return Where(match["plural"], match["namespace"], match["name"], match["sub"])


def path_of(obj: Mapping[str, Any]) -> str:
    """The REST path of an object, the way the operator spells it."""
    api_version, kind = obj["apiVersion"], obj["kind"]
    meta = obj["metadata"]
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    namespace = f"/namespaces/{meta['namespace']}" if meta.get("namespace") else ""
    return f"{base}{namespace}/{_PLURALS[kind]}/{meta['name']}"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _selects(selector: str | None, labels: Mapping[str, str]) -> bool:
    for part in (selector or "").split(","):
        if not part.strip():
            continue
        key, _, value = part.partition("=")
        if labels.get(key.strip()) != value.strip():
            return False
    return True


@dataclass
class Request:
    """One call the fake answered (or refused)."""

    method: str
    path: str
    field_manager: str | None = None


@dataclass
class FakeKube:
    """The in-memory API. ``objects`` by (plural, namespace, name); ``requests`` in order."""

    objects: dict[tuple[str, str | None, str], JSON] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    #: Raise this KubeError for calls whose "METHOD path" matches the regex key.
    faults: dict[str, KubeError] = field(default_factory=dict)
    _versions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _watchers: list[tuple[Where, asyncio.Queue[tuple[str, JSON]]]] = field(default_factory=list)
    host: str = "https://fake"

    # -- helpers for tests ---------------------------------------------------------------------
    def put(self, obj: Mapping[str, Any]) -> JSON:
        """Store ``obj`` as if someone else created or updated it (no request recorded). An
        update keeps the object's uid and status; a changed spec moves its generation."""
        body = copy.deepcopy(dict(obj))
        at = where(path_of(body))
        live = self.objects.get((at.plural, at.namespace, str(at.name)))
        if live is None:
            return self._store(body, "ADDED")
        meta = body["metadata"]
        meta.setdefault("uid", live["metadata"]["uid"])
        if "generation" in live["metadata"]:
            changed = body.get("spec") != live.get("spec")
            meta.setdefault("generation", live["metadata"]["generation"] + int(changed))
        if "status" in live and "status" not in body:
            body["status"] = live["status"]
        return self._store(body, "MODIFIED")

    def find(self, kind: str, namespace: str | None, name: str) -> JSON | None:
        return self.objects.get((_PLURALS[kind], namespace, name))

    def of_kind(self, kind: str) -> list[JSON]:
        return [o for (plural, _, _), o in self.objects.items() if plural == _PLURALS[kind]]

    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method != "GET"]

    # -- the client interface ------------------------------------------------------------------
    async def close(self) -> None:
        return None

    async def check_reachable(self) -> str:
        return "v1.34.0-fake"

    def _called(self, method: str, path: str, manager: str | None = None) -> None:
        if method != "GET":
            WRITE_GATE.check(method, path)
        self.requests.append(Request(method, path, manager))
        for pattern, error in self.faults.items():
            if re.fullmatch(pattern, f"{method} {path}"):
                raise error

    async def get(self, path: str) -> JSON | None:
        self._called("GET", path)
        at = where(path)
        assert at.name is not None
        found = self.objects.get((at.plural, at.namespace, at.name))
        return copy.deepcopy(found) if found is not None else None

    def _items(self, at: Where, selector: str | None) -> list[JSON]:
        return [
            copy.deepcopy(o)
            for (plural, namespace, _), o in sorted(self.objects.items(), key=lambda i: i[0][2])
            if plural == at.plural
            and (at.namespace is None or namespace == at.namespace)
            and _selects(selector, o["metadata"].get("labels") or {})
        ]

    async def list(
        self, path: str, *, label_selector: str | None = None, metadata_only: bool = False
    ) -> list[JSON]:
        self._called("GET", path)
        items = self._items(where(path), label_selector)
        return [{"metadata": i["metadata"]} for i in items] if metadata_only else items

    async def list_pages(
        self,
        path: str,
        *,
        label_selector: str | None = None,
        metadata_only: bool = False,
        page_size: int = 500,
    ) -> AsyncIterator[tuple[list[JSON], str]]:
        items = self._items(where(path), label_selector)
        version = str(next(self._versions))
        if metadata_only:
            items = [{"metadata": i["metadata"]} for i in items]
        for start in range(0, max(len(items), 1), page_size):
            self._called("GET", path)
            yield items[start : start + page_size], version

    async def watch(
        self, path: str, resource_version: str, **options: Any
    ) -> AsyncIterator[tuple[str, JSON]]:
        self._called("GET", path + "?watch")
        queue: asyncio.Queue[tuple[str, JSON]] = asyncio.Queue()
        entry = (where(path), queue)
        self._watchers.append(entry)
        if options.get("initial_events"):  # a watch list: the current state, then a bookmark
            for item in self._items(where(path), None):
                queue.put_nowait(("ADDED", item))
            end = {"resourceVersion": str(next(self._versions))}
            end["annotations"] = {"k8s.io/initial-events-end": "true"}  # type: ignore[assignment]
            queue.put_nowait(("BOOKMARK", {"metadata": end}))
        try:
            while True:
                kind, obj = await queue.get()
                if options.get("metadata_only"):
                    obj = {"metadata": obj["metadata"]}
                yield kind, obj
        finally:
            self._watchers.remove(entry)

    async def apply(
        self, obj: Mapping[str, Any], *, field_manager: str, force: bool = False
    ) -> JSON:
        path = path_of(obj)
        self._called("PATCH", path, field_manager)
        at = where(path)
        assert at.name is not None
        live = self.objects.get((at.plural, at.namespace, at.name))
        body = copy.deepcopy(dict(obj))
        uid = body["metadata"].get("uid")
        if uid and live is None:
            raise KubeError(409, "Conflict", f"uid mismatch: no existing object {at.name!r}")
        if uid and live is not None and live["metadata"]["uid"] != uid:
            raise KubeError(422, "Invalid", "metadata.uid: field is immutable")
        if live is not None and "type" in body and body["type"] != live.get("type", "Opaque"):
            raise KubeError(422, "Invalid", f'type: Invalid value: "{body["type"]}": immutable')
        merged = merge_patch(live or {}, body) if live else body
        merged["metadata"] = merge_patch(live["metadata"] if live else {}, body["metadata"])
        owned = {
            "f:data": {f"f:{k}": {} for k in body.get("data") or {}},
            "f:metadata": {
                "f:labels": {f"f:{k}": {} for k in body["metadata"].get("labels") or {}}
            },
        }
        fields = [
            m
            for m in merged["metadata"].get("managedFields") or []
            if m["manager"] != field_manager
        ]
        if live is not None:
            # Keys this manager applied before and leaves out now are dropped.
            before = next(
                (
                    m
                    for m in live["metadata"].get("managedFields") or []
                    if m["manager"] == field_manager
                ),
                None,
            )
            for key in (before or {}).get("fieldsV1", {}).get("f:data", {}):
                if key not in owned["f:data"]:
                    (merged.get("data") or {}).pop(key[2:], None)
            for key in (before or {}).get("fieldsV1", {}).get("f:metadata", {}).get("f:labels", {}):
                if key not in owned["f:metadata"]["f:labels"]:
                    (merged["metadata"].get("labels") or {}).pop(key[2:], None)
        fields.append({"manager": field_manager, "operation": "Apply", "fieldsV1": owned})
        merged["metadata"]["managedFields"] = fields
        return copy.deepcopy(self._store(merged, "MODIFIED" if live else "ADDED"))

    async def create(self, obj: Mapping[str, Any], *, gated: bool = True) -> JSON:
        body = copy.deepcopy(dict(obj))
        meta = body["metadata"]
        if "name" not in meta:
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        path = path_of(body)
        if gated:
            self._called("POST", path.rsplit("/", 1)[0])
        else:
            self.requests.append(Request("POST", path.rsplit("/", 1)[0]))
        at = where(path)
        if (at.plural, at.namespace, at.name) in self.objects:
            raise KubeError(409, "AlreadyExists", f"{at.plural} {at.name!r} already exists")
        meta.setdefault(
            "managedFields", [{"manager": "redisqueue-operator", "operation": "Update"}]
        )
        return copy.deepcopy(self._store(body, "ADDED"))

    async def replace(self, path: str, obj: Mapping[str, Any], *, gated: bool = True) -> JSON:
        if gated:
            self._called("PUT", path)
        else:
            self.requests.append(Request("PUT", path))
        at = where(path)
        live = self.objects.get((at.plural, at.namespace, str(at.name)))
        if live is None:
            raise KubeError(404, "NotFound", f"{at.plural} {at.name!r} not found")
        if obj["metadata"].get("resourceVersion") != live["metadata"]["resourceVersion"]:
            raise KubeError(409, "Conflict", "the object has been modified")
        return copy.deepcopy(self._store(copy.deepcopy(dict(obj)), "MODIFIED"))

    async def merge_patch(self, path: str, patch: Mapping[str, Any]) -> JSON:
        self._called("PATCH", path)
        at = where(path)
        live = self.objects.get((at.plural, at.namespace, str(at.name)))
        if live is None:
            raise KubeError(404, "NotFound", f"{at.plural} {at.name!r} not found")
        if at.sub == "status":
            patch = {"status": dict(patch).get("status")}
        else:
            patch = {k: v for k, v in patch.items() if k != "status"}
        return copy.deepcopy(self._store(merge_patch(live, patch), "MODIFIED"))

    async def delete(
        self, path: str, *, propagation: str = "Background", uid: str | None = None
    ) -> bool:
        self._called("DELETE", path)
        at = where(path)
        key = (at.plural, at.namespace, str(at.name))
        if uid and key in self.objects and self.objects[key]["metadata"]["uid"] != uid:
            raise KubeError(409, "Conflict", "Precondition failed: UID in precondition")
        live = self.objects.pop(key, None)
        if live is None:
            return False
        self._notify("DELETED", live)
        return True

    # -- storage --------------------------------------------------------------------------------
    def _store(self, obj: JSON, kind: str) -> JSON:
        meta = obj["metadata"]
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        meta["resourceVersion"] = str(next(self._versions))
        if obj.get("kind") == "RedisQueue":
            meta.setdefault("generation", 1)
        self.objects[(where(path_of(obj)).plural, meta.get("namespace"), meta["name"])] = obj
        self._notify(kind, obj)
        return obj

    def _notify(self, kind: str, obj: JSON) -> None:
        at = where(path_of(obj))
        for watched, queue in self._watchers:
            if watched.plural == at.plural and watched.namespace in (None, at.namespace):
                queue.put_nowait((kind, copy.deepcopy(obj)))


__all__ = ["FakeKube", "WriteFenced", "merge_patch", "path_of"]
