"""Kubernetes API access for the operator: async, plain dicts, one place.

Everything goes through kubernetes_asyncio's ApiClient (the same credentials kopf logs in
with), so nothing blocks the event loop. Objects travel as plain dicts, the shape the pure
builders produce. Errors become :class:`KubeError`, whose text holds the API server's
message (it names fields, never Secret values).
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

import aiohttp
import yaml
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException

from .spec import JSON, PLURAL

_PLURALS: Final = {
    "Secret": "secrets",
    "Service": "services",
    "ConfigMap": "configmaps",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "StatefulSet": "statefulsets",
    "Event": "events",
    "Lease": "leases",
    "RedisQueue": PLURAL,
}

APPLY: Final = "application/apply-patch+yaml"
#: How long the operator waits at start for the API server to answer GET /version.
REACHABLE_TIMEOUT_SECONDS: Final = 15.0
MERGE: Final = "application/merge-patch+json"


class KubeError(Exception):
    """A failed API call: HTTP status, the server's reason and message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(f"{status} {reason}: {message}")

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def forbidden(self) -> bool:
        return self.status == 403


class NoClusterError(Exception):
    """No cluster to talk to: no in-cluster account and no usable kubeconfig, or the API
    server does not answer. The message is one line that says which, without credentials."""


def object_path(
    api_version: str,
    kind: str,
    namespace: str | None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """The REST path of a (namespaced) object or collection."""
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = base + (f"/namespaces/{namespace}" if namespace else "") + f"/{_PLURALS[kind]}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


def _kubeconfig_files() -> tuple[str, bool]:
    """$KUBECONFIG (or ~/.kube/config), and whether any file of it exists."""
    paths = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    return paths, any(os.path.isfile(path) for path in paths.split(os.pathsep) if path)


async def load_config() -> k8s.Configuration:
    """In-cluster service account first, then the kubeconfig ($KUBECONFIG or ~/.kube/config).

    Raises :class:`NoClusterError` when neither is usable.
    """
    configuration = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)
        return configuration
    except k8s_config.ConfigException:
        pass
    paths, found = _kubeconfig_files()
    if not found:
        raise NoClusterError(
            f"no Kubernetes cluster configured: not running in a pod, and no kubeconfig at {paths}"
        )
    # The loader warns about each missing file of a list; the error below says it once.
    loader_log = logging.getLogger("kubernetes_asyncio.config.kube_config")
    level = loader_log.level
    loader_log.setLevel(logging.ERROR)
    try:
        await k8s_config.load_kube_config(client_configuration=configuration)
    except (k8s_config.ConfigException, OSError, ValueError, yaml.YAMLError) as exc:
        # The loader's text names a missing file or key, never a credential.
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise NoClusterError(f"the kubeconfig at {paths} is not usable: {detail}") from None
    finally:
        loader_log.setLevel(level)
    return configuration


class Kube:
    """Thin async access to the API server with plain-dict bodies."""

    def __init__(self, api: k8s.ApiClient) -> None:
        self.api = api

    @classmethod
    async def connect(cls) -> Kube:
        return cls(k8s.ApiClient(await load_config()))

    async def close(self) -> None:
        await self.api.close()

    async def check_reachable(self) -> str:
        """GET /version; the server's gitVersion, or :class:`NoClusterError` naming the URL."""
        host = str(self.api.configuration.host)
        try:
            async with asyncio.timeout(REACHABLE_TIMEOUT_SECONDS):
                version = await self.request("GET", "/version")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise NoClusterError(
                f"the Kubernetes API at {host} does not answer: {reason}"
            ) from None
        except KubeError as exc:
            if exc.status in {401, 403}:
                raise NoClusterError(
                    f"the Kubernetes API at {host} refuses the configured credentials: {exc}"
                ) from None
            raise
        return str(version.get("gitVersion", "?"))

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: object | None = None,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> JSON:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            response = await self.api.call_api(
                path,
                method,
                path_params={},
                query_params=list((query or {}).items()),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _preload_content=False,
            )
            raw = await response.read()
            status = int(response.status)
            reason = str(response.reason or "")
            response.release()
        except ApiException as exc:
            raise _error(exc) from None
        if not 200 <= status <= 299:  # without preloading, the client does not check
            raise _status_error(status, reason, raw)
        return json.loads(raw) if raw else {}

    async def get(self, path: str) -> JSON | None:
        """The object at ``path``, or None if it does not exist."""
        try:
            return await self.request("GET", path)
        except KubeError as exc:
            if exc.not_found:
                return None
            raise

    async def list(self, path: str, *, label_selector: str | None = None) -> list[JSON]:
        query = {"labelSelector": label_selector} if label_selector else None
        return list((await self.request("GET", path, query=query)).get("items", []))

    async def apply(
        self, obj: Mapping[str, Any], *, field_manager: str, force: bool = False
    ) -> JSON:
        """Server-side apply ``obj``: create it, or own exactly the fields it lists."""
        meta = obj["metadata"]
        path = object_path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        query = {"fieldManager": field_manager}
        if force:
            query["force"] = "true"
        return await self.request("PATCH", path, body=dict(obj), query=query, content_type=APPLY)

    async def create(self, obj: Mapping[str, Any]) -> JSON:
        meta = obj["metadata"]
        path = object_path(obj["apiVersion"], obj["kind"], meta.get("namespace"))
        return await self.request("POST", path, body=dict(obj))

    async def replace(self, path: str, obj: Mapping[str, Any]) -> JSON:
        """PUT ``obj`` (carrying ``metadata.resourceVersion``: a stale one is a 409)."""
        return await self.request("PUT", path, body=dict(obj))

    async def list_with_version(self, path: str) -> tuple[builtins.list[JSON], str]:
        """The items at ``path`` and the collection's resourceVersion (to watch from)."""
        answer = await self.request("GET", path)
        return list(answer.get("items", [])), str(answer["metadata"]["resourceVersion"])

    async def watch(
        self, path: str, resource_version: str, *, timeout_seconds: int = 300
    ) -> AsyncIterator[tuple[str, JSON]]:
        """(type, object) for each change at ``path`` after ``resource_version``, until the
        server ends the watch. An ``ERROR`` event (e.g. 410 Gone) raises :class:`KubeError`."""
        query = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        try:
            response = await self.api.call_api(
                path,
                "GET",
                path_params={},
                query_params=query,
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _preload_content=False,
                _request_timeout=timeout_seconds + 30,
            )
        except ApiException as exc:
            raise _error(exc) from None
        try:
            if not 200 <= int(response.status) <= 299:
                raise _status_error(
                    int(response.status), str(response.reason), await response.read()
                )
            while line := await response.content.readline():
                event = json.loads(line)
                kind, obj = str(event.get("type")), event.get("object") or {}
                if kind == "ERROR":
                    raise KubeError(
                        int(obj.get("code") or 0), str(obj.get("reason")), str(obj.get("message"))
                    )
                yield kind, obj
        finally:
            response.release()

    async def merge_patch(self, path: str, patch: Mapping[str, Any]) -> JSON:
        return await self.request("PATCH", path, body=dict(patch), content_type=MERGE)

    async def delete(self, path: str, *, propagation: str = "Background") -> bool:
        """Delete the object at ``path``; False if it was already gone."""
        try:
            await self.request("DELETE", path, body={"propagationPolicy": propagation})
        except KubeError as exc:
            if exc.not_found:
                return False
            raise
        return True


def _status_error(status: int, reason: str, raw: bytes) -> KubeError:
    message = reason or "error"
    try:
        body = json.loads(raw or b"{}")
        message = str(body.get("message", message))
        reason = str(body.get("reason", reason))
    except (ValueError, TypeError, AttributeError):
        pass
    return KubeError(status, reason, message)


def _error(exc: ApiException) -> KubeError:
    message = exc.reason or "error"
    reason = exc.reason or ""
    try:
        status = json.loads(exc.body or "{}")
        message = status.get("message", message)
        reason = status.get("reason", reason)
    except (ValueError, TypeError):
        pass
    return KubeError(int(exc.status or 0), str(reason), str(message))
