"""Kubernetes API access for the operator: async, plain dicts, one place.

One aiohttp session with a bounded connection pool talks to the API server, with the
credentials kopf logs in with (:func:`login`, also kopf's login handler), so nothing blocks
the event loop and no Kubernetes client library is loaded. Objects travel as plain dicts,
the shape the pure builders produce. Errors become :class:`KubeError`, whose text holds the
API server's message (it names fields, never Secret values).

Long on purpose: finding the cluster, the credentials (and their rotation), the connection
pool and the calls are the one place the operator meets the API server; what a caller may
see of a failure (never a credential) is decided here for all of them.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import io
import json
import os
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

import aiohttp
import kopf

from ..resource.identity import JSON
from .gate import WRITE_GATE, WRITES, WriteFenced
from .login import (
    SERVICE_ACCOUNT_TOKEN,
    NoClusterError,
    api_connector,
    connection_info,
    kubeconfig_env,
    usable_kubeconfig,
    user_agent,
)
from .paths import object_path

APPLY: Final = "application/apply-patch+yaml"
#: How long the operator waits at start for the API server to answer GET /version.
REACHABLE_TIMEOUT_SECONDS: Final = 15.0
MERGE: Final = "application/merge-patch+json"
#: Connections kept to the API server: a burst over a thousand RedisQueues queues behind
#: these instead of opening a socket (and a TLS handshake) per call. The operator shares
#: them with kopf (:func:`~.login.share_pool`): each TLS connection holds a 256 KiB read
#: buffer for its life, and the API server on the other end is the bottleneck anyway.
POOL_SIZE: Final = 32
#: A mounted (bound) token is rotated by the kubelet; it is read again after this long.
TOKEN_MAX_AGE_SECONDS: Final = 60.0
#: How long a watch lasts before the API server ends it and it is started again (the
#: longest periodic activity of the operator at rest: one request per watch per period).
WATCH_TIMEOUT_SECONDS: Final = 300
#: The longest any single request may take.
REQUEST_TIMEOUT_SECONDS: Final = 300.0
#: Items per page of a LIST: a namespace with thousands of Secrets is read in pieces, never
#: as one answer held in memory whole.
PAGE_SIZE: Final = 500
#: Accept headers that ask for metadata only (PartialObjectMetadata): a Secret's data never
#: crosses the wire unless the operator GETs that Secret.
METADATA_LIST: Final = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
METADATA_ONE: Final = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
#: Request bodies above this size are streamed (aiohttp warns about larger raw bytes).
LARGE_BODY_BYTES: Final = 1024 * 1024
#: The largest watch event read (an etcd object is at most 1.5 MiB; JSON adds escapes).
MAX_EVENT_BYTES: Final = 8 * 1024 * 1024
#: The annotation of the BOOKMARK that ends a watch list's initial events.
INITIAL_EVENTS_END: Final = "k8s.io/initial-events-end"


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


class Kube:
    """Thin async access to the API server with plain-dict bodies: one aiohttp session,
    opened on first use, with a pool of :data:`POOL_SIZE` connections."""

    def __init__(
        self,
        info: kopf.ConnectionInfo,
        *,
        token_file: str | None = None,
        pool_size: int = POOL_SIZE,
    ) -> None:
        self.info = info
        self._base = info.server.rstrip("/")
        self._token_file = token_file
        self._pool_size = pool_size
        self._ssl = info.as_ssl_context() if self._base.startswith("https:") else None
        self._auth = info.as_http_headers()
        self._token_read_at = time.monotonic()
        self._session: aiohttp.ClientSession | None = None
        self._connector: aiohttp.TCPConnector | None = None

    @classmethod
    async def connect(cls) -> Kube:
        """The operator's client: the pod's ServiceAccount, else the kubeconfig."""
        info, in_cluster = connection_info()
        return cls._checked(info, token_file=SERVICE_ACCOUNT_TOKEN if in_cluster else None)

    @classmethod
    def from_kubeconfig(cls, path: str | os.PathLike[str]) -> Kube:
        """A client for the current context of the kubeconfig at ``path``."""
        with kubeconfig_env(os.fspath(path)):
            info = usable_kubeconfig(kopf.OperatorSettings())
        return cls._checked(info)

    @classmethod
    def _checked(cls, info: kopf.ConnectionInfo, *, token_file: str | None = None) -> Kube:
        try:
            return cls(info, token_file=token_file)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError; base64 a ValueError
            # The text names the failing file or step (e.g. "PEM lib"), never key material.
            detail = " ".join(str(exc).split()) or type(exc).__name__
            source = "the ServiceAccount" if token_file else "the kubeconfig"
            raise NoClusterError(
                f"{source}'s TLS settings for {info.server} are not usable: {detail}"
            ) from None

    @property
    def host(self) -> str:
        """The API server's URL."""
        return self.info.server

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._connector is not None:
            await self._connector.close()
            self._connector = None
            # A closed transport lets go of its socket on the loop's next turn: give it that
            # turn, so that a loop closed right after (a test's, a shutdown's) leaks nothing.
            await asyncio.sleep(0)

    async def check_reachable(self) -> str:
        """GET /version; the server's gitVersion, or :class:`NoClusterError` naming the URL."""
        try:
            async with asyncio.timeout(REACHABLE_TIMEOUT_SECONDS):
                version = await self.request("GET", "/version")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise NoClusterError(
                f"the Kubernetes API at {self.host} does not answer: {reason}"
            ) from None
        except KubeError as exc:
            if exc.status in {401, 403}:
                raise NoClusterError(
                    f"the Kubernetes API at {self.host} refuses the configured credentials: {exc}"
                ) from None
            raise
        return str(version.get("gitVersion", "?"))

    def connector(self) -> aiohttp.TCPConnector:
        """This client's pool of connections to the API server (made on first use)."""
        if self._connector is None or self._connector.closed:
            self._connector = api_connector(self._pool_size, self._ssl or True)
        return self._connector

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=self.connector(),
                connector_owner=False,
                headers={"User-Agent": user_agent()},
                trust_env=self.info.trust_env,
            )
        return self._session

    def _reread_token(self, *, force: bool) -> bool:
        """Read the mounted token again if it is old (or ``force``); True if it changed."""
        if self._token_file is None:
            return False
        if not force and time.monotonic() - self._token_read_at < TOKEN_MAX_AGE_SECONDS:
            return False
        self._token_read_at = time.monotonic()
        try:
            with open(self._token_file, encoding="utf-8") as file:
                token = file.read().strip()
        except OSError:
            return False  # keep the last token; the API server's answer will tell
        auth = dataclasses.replace(self.info, token=token or None).as_http_headers()
        changed = auth != self._auth
        self._auth = auth
        return changed

    async def _send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | builtins.list[tuple[str, str]] | None = None,
        body: object | None = None,
        headers: Mapping[str, str],
        read_timeout: aiohttp.ClientTimeout | None = None,
        gated: bool = True,
    ) -> aiohttp.ClientResponse:
        """The response (not yet read) to one call; a 401 with a rotated token is retried.

        A write passes the process's :data:`WRITE_GATE` first (unless ``gated`` is False: the
        Lease acquisition itself) and must be over by the gate's deadline."""
        if method in WRITES and gated:
            WRITE_GATE.check(method, path)
            left = WRITE_GATE.seconds_left()
            if left is not None:
                if left <= 0:
                    raise WriteFenced(f"{method} {path}: no time left to write")
                read_timeout = aiohttp.ClientTimeout(total=min(left, REQUEST_TIMEOUT_SECONDS))
        encoded = None if body is None else json.dumps(body).encode()
        data: bytes | io.BytesIO | None = encoded
        if encoded is not None and len(encoded) > LARGE_BODY_BYTES:
            data = io.BytesIO(encoded)  # aiohttp streams a file-like body without blocking
        self._reread_token(force=False)
        for attempt in (1, 2):
            if isinstance(data, io.BytesIO):
                data.seek(0)
            response = await self._client().request(
                method,
                self._base + path,
                params=query,
                data=data,
                headers={**headers, **self._auth},
                proxy=self.info.proxy_url,
                timeout=read_timeout or aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
            )
            if response.status == 401 and attempt == 1 and self._reread_token(force=True):
                response.release()
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: object | None = None,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        gated: bool = True,
    ) -> JSON:
        headers = {"Accept": accept, "Content-Type": content_type}
        response = await self._send(
            method, path, query=query, body=body, headers=headers, gated=gated
        )
        try:
            raw = await response.read()
        finally:
            response.release()
        if not 200 <= response.status <= 299:
            raise _status_error(response.status, str(response.reason or ""), raw)
        return json.loads(raw) if raw else {}

    async def get(self, path: str) -> JSON | None:
        """The object at ``path``, or None if it does not exist."""
        try:
            return await self.request("GET", path)
        except KubeError as exc:
            if exc.not_found:
                return None
            raise

    async def list(
        self, path: str, *, label_selector: str | None = None, metadata_only: bool = False
    ) -> builtins.list[JSON]:
        """Every item at ``path`` (read page by page); ``metadata_only``: names, labels and
        versions, never a Secret's data."""
        items: builtins.list[JSON] = []
        async for page, _ in self.list_pages(
            path, label_selector=label_selector, metadata_only=metadata_only
        ):
            items += page
        return items

    async def list_pages(
        self,
        path: str,
        *,
        label_selector: str | None = None,
        metadata_only: bool = False,
        page_size: int = PAGE_SIZE,
    ) -> AsyncIterator[tuple[builtins.list[JSON], str]]:
        """The items at ``path``, a page at a time, each with the list's resourceVersion
        (the same on every page: the version to watch from after the last one).
        ``metadata_only`` asks for PartialObjectMetadata: names, labels, versions; no data."""
        query = {"limit": str(page_size)}
        if label_selector:
            query["labelSelector"] = label_selector
        accept = f"{METADATA_LIST},application/json" if metadata_only else "application/json"
        while True:
            answer = await self.request("GET", path, query=query, accept=accept)
            meta = answer.get("metadata") or {}
            yield list(answer.get("items") or []), str(meta.get("resourceVersion") or "")
            token = meta.get("continue")
            if not token:
                return
            query["continue"] = str(token)

    async def apply(
        self, obj: Mapping[str, Any], *, field_manager: str, force: bool = False
    ) -> JSON:
        """Server-side apply ``obj``: create it, or own exactly the fields it lists."""
        meta = obj["metadata"]
        path = object_path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        query = {"fieldManager": field_manager}
        if force:
            query["force"] = "true"
        # JSON is YAML: the apply body goes as JSON.
        return await self.request("PATCH", path, body=dict(obj), query=query, content_type=APPLY)

    async def create(self, obj: Mapping[str, Any], *, gated: bool = True) -> JSON:
        meta = obj["metadata"]
        path = object_path(obj["apiVersion"], obj["kind"], meta.get("namespace"))
        return await self.request("POST", path, body=dict(obj), gated=gated)

    async def replace(self, path: str, obj: Mapping[str, Any], *, gated: bool = True) -> JSON:
        """PUT ``obj`` (carrying ``metadata.resourceVersion``: a stale one is a 409)."""
        return await self.request("PUT", path, body=dict(obj), gated=gated)

    async def watch(
        self,
        path: str,
        resource_version: str,
        *,
        timeout_seconds: int = WATCH_TIMEOUT_SECONDS,
        metadata_only: bool = False,
        max_event_bytes: int = MAX_EVENT_BYTES,
        initial_events: bool = False,
    ) -> AsyncIterator[tuple[str, JSON]]:
        """(type, object) for each change at ``path`` after ``resource_version``, until the
        server ends the watch. An ``ERROR`` event (e.g. 410 Gone) raises :class:`KubeError`;
        an event over ``max_event_bytes`` raises :class:`EventTooLarge` (nothing of it is
        kept). ``metadata_only`` watches PartialObjectMetadata. ``initial_events`` (a
        "watch list", ``sendInitialEvents``) starts with an ``ADDED`` event per existing object
        and a ``BOOKMARK`` marked :data:`INITIAL_EVENTS_END`: the current state one object at a
        time instead of one LIST answer held whole."""
        query = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        if initial_events:
            query += [("sendInitialEvents", "true"), ("resourceVersionMatch", "NotOlderThan")]
        accept = f"{METADATA_ONE},application/json" if metadata_only else "application/json"
        response = await self._send(
            "GET",
            path,
            query=query,
            headers={"Accept": accept},
            read_timeout=aiohttp.ClientTimeout(total=timeout_seconds + 30),
        )
        try:
            if not 200 <= response.status <= 299:
                raise _status_error(response.status, str(response.reason), await response.read())
            buffer = bytearray()
            async for chunk in response.content.iter_any():  # one JSON object a line
                buffer += chunk
                while (end := buffer.find(b"\n")) >= 0:
                    if end > max_event_bytes:  # whole, but too large: not parsed either
                        raise EventTooLarge(path, max_event_bytes)
                    line = bytes(buffer[:end])
                    del buffer[: end + 1]
                    if line.strip():
                        yield _event(line)
                if len(buffer) > max_event_bytes:  # a line not yet whole is too long already
                    raise EventTooLarge(path, max_event_bytes)
        finally:
            response.release()

    async def merge_patch(self, path: str, patch: Mapping[str, Any]) -> JSON:
        return await self.request("PATCH", path, body=dict(patch), content_type=MERGE)

    async def delete(
        self, path: str, *, propagation: str = "Background", uid: str | None = None
    ) -> bool:
        """Delete the object at ``path``; False if it was already gone. With ``uid``, only that
        object: one deleted and made again under the same name meanwhile is left alone (409)."""
        body: JSON = {"propagationPolicy": propagation}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            await self.request("DELETE", path, body=body)
        except KubeError as exc:
            if exc.not_found:
                return False
            raise
        return True


class EventTooLarge(Exception):
    """A watch event longer than the reader takes; the watch is ended and started again."""

    def __init__(self, path: str, limit: int) -> None:
        super().__init__(f"watch {path}: an event is larger than {limit} bytes")


def _event(line: bytes) -> tuple[str, JSON]:
    event = json.loads(line)
    kind, obj = str(event.get("type")), event.get("object") or {}
    if kind == "ERROR":
        raise KubeError(int(obj.get("code") or 0), str(obj.get("reason")), str(obj.get("message")))
    return kind, obj


def _status_error(status: int, reason: str, raw: bytes) -> KubeError:
    message = reason or "error"
    try:
        body = json.loads(raw or b"{}")
        message = str(body.get("message", message))
        reason = str(body.get("reason", reason))
    except (ValueError, TypeError, AttributeError):
        pass
    return KubeError(status, reason, message)
