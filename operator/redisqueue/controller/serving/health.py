"""The health and metrics HTTP server (aiohttp), shared by dev mode and the operator.

Routes:

* ``GET /api/health/redis`` -> 200 ``{"status": "connected", "latency": "2ms"}`` when every
  watched Redis answers a fresh PING, else 503 ``{"status": "disconnected", "error": ...}``;
  with nothing watched (right after install) 200 with ``"checked": 0``. Scoped with
  ``?namespace=<ns>`` and/or ``?labelSelector=<selector>`` (``k=v``, ``k!=v``, ``k``, ``!k``,
  ``k in (a,b)``, ``k notin (a,b)``, comma-separated), the answer covers, and names, only
  the RedisQueues in that scope, so one tenant's broken Redis does not fail another's check;
* ``GET /api/health/redis/{namespace}/{name}`` -> the same for one RedisQueue (404 if unknown);
* ``GET /metrics`` -> Prometheus exposition (OpenMetrics when the scraper asks for it);
* ``GET /healthz`` -> liveness: 200 while the process is doing its job, 503 otherwise;
* ``GET /readyz`` -> readiness.

With an authorizer (:mod:`.auth`, the operator's ``--auth``) every route but ``/healthz`` and
``/readyz`` needs a bearer token whose user may ``get`` the path.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder

from ..probing.probe import Probe
from ..probing.result import ProbeResult, format_latency
from .auth import TokenAuthorizer
from .selectors import SelectorError, parse_selector

Check = Callable[[], tuple[bool, str]]


class ProbeSource(Protocol):
    """What the server answers for: the probes of the RedisQueues this process follows."""

    def probes(self) -> list[tuple[Probe, Mapping[str, str]]]:
        """Each probe with its RedisQueue's labels."""

    def probe_of(self, namespace: str, name: str) -> Probe | None:
        """The probe of one RedisQueue, if it is probed."""


class ProbeList:
    """A fixed set of probes and their labels (dev mode's one local Redis, benchmarks)."""

    def __init__(
        self, *probes: Probe, labels: Mapping[tuple[str, str], Mapping[str, str]] | None = None
    ) -> None:
        self._probes = {(p.namespace, p.name): p for p in probes}
        self._labels = dict(labels or {})

    def probes(self) -> list[tuple[Probe, Mapping[str, str]]]:
        return [(p, self._labels.get(key, {})) for key, p in self._probes.items()]

    def probe_of(self, namespace: str, name: str) -> Probe | None:
        return self._probes.get((namespace, name))


PROBES_KEY: web.AppKey[ProbeSource] = web.AppKey("probes")
LIVENESS_KEY: web.AppKey[Check] = web.AppKey("liveness")
READINESS_KEY: web.AppKey[Check] = web.AppKey("readiness")
METRICS_REGISTRY_KEY: web.AppKey[CollectorRegistry] = web.AppKey("metrics_registry")
ANSWER_KEY: web.AppKey[_RenderedAnswer] = web.AppKey("rendered_answer")


def _always_ok() -> tuple[bool, str]:
    return True, "ok"


def _body(probe: Probe, result: ProbeResult) -> dict[str, Any]:
    body: dict[str, Any] = {
        "namespace": probe.namespace,
        "name": probe.name,
        "endpoint": result.endpoint,
    }
    if result.ok and result.latency_seconds is not None:
        body.update(
            status="connected",
            latency=format_latency(result.latency_seconds),
            latencyMs=round(result.latency_seconds * 1000.0, 3),
        )
    else:
        body.update(status="disconnected", reason=result.reason, error=result.error)
    return body


class _RenderedAnswer:
    """The last aggregate answer, reused while the same PING results are being handed out.

    Requests that shared a PING get byte-identical answers, so the JSON is rendered once per
    PING rather than once per request. The results are held (and compared with ``is``), so a
    stale answer can never be mistaken for a fresh one.
    """

    __slots__ = ("body", "results", "status")

    def __init__(self) -> None:
        self.results: list[ProbeResult] = []
        self.status = 0
        self.body = b""

    def matches(self, results: list[ProbeResult]) -> bool:
        if not self.status:  # nothing rendered yet (an empty registry matches no results)
            return False
        return len(results) == len(self.results) and all(
            a is b for a, b in zip(results, self.results, strict=True)
        )


def _render_all(probes: list[Probe], results: list[ProbeResult]) -> tuple[int, dict[str, Any]]:
    failed = [(p, r) for p, r in zip(probes, results, strict=True) if not r.ok]
    if failed:
        return 503, {
            "status": "disconnected",
            "error": "; ".join(r.error or r.reason for _, r in failed),
            "failed": [f"{p.namespace}/{p.name}" for p, _ in failed],
            "checked": len(results),
        }
    slowest = max((r.latency_seconds or 0.0 for r in results), default=0.0)
    return 200, {
        "status": "connected",
        "latency": format_latency(slowest),
        "latencyMs": round(slowest * 1000.0, 3),
        "checked": len(results),
    }


def _in_scope(request: web.Request) -> list[Probe]:
    """The probes the request's ``namespace`` and ``labelSelector`` parameters cover."""
    source = request.app[PROBES_KEY]
    namespace = request.query.get("namespace")
    selector = parse_selector(request.query.get("labelSelector", ""))
    return [
        p
        for p, labels in source.probes()
        if (namespace is None or p.namespace == namespace)
        and all(rule(labels) for rule in selector)
    ]


async def _check(probes: list[Probe]) -> list[ProbeResult]:
    """A fresh result per probe, from one PING per endpoint: a thousand RedisQueues on one
    Redis cost one shared PING and a thousand look-ups, not a thousand waits."""
    endpoints = {id(p.shared): p.shared for p in probes}
    if len(endpoints) == 1:  # the common case; gather would wrap it in a task
        (endpoint,) = endpoints.values()
        outcome = await endpoint.ping()
        return [p.take(outcome) for p in probes]
    outcomes = dict(
        zip(endpoints, await asyncio.gather(*(e.ping() for e in endpoints.values())), strict=True)
    )
    return [p.take(outcomes[id(p.shared)]) for p in probes]


async def _health_all(request: web.Request) -> web.Response:
    if request.query_string:
        try:
            probes = _in_scope(request)
        except SelectorError as exc:
            return web.json_response(
                {"status": "unknown", "error": str(exc)}, status=400, headers=_NO_CACHE
            )
        results = await _check(probes) if probes else []
        # Rendered per request: scopes differ between callers.
        status, body = _render_all(probes, results)
        return web.json_response(body, status=status, headers=_NO_CACHE)
    probes = [p for p, _ in request.app[PROBES_KEY].probes()]
    results = await _check(probes) if probes else []
    cached: _RenderedAnswer = request.app[ANSWER_KEY]
    if not cached.matches(results):
        status, body = _render_all(probes, results)
        cached.results, cached.status = results, status
        cached.body = json.dumps(body).encode()
    return web.Response(body=cached.body, status=cached.status, headers=_JSON_NO_CACHE)


async def _health_one(request: web.Request) -> web.Response:
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    probe = request.app[PROBES_KEY].probe_of(namespace, name)
    if probe is None:
        return web.json_response(
            {"status": "unknown", "error": f"no RedisQueue {namespace}/{name} is watched"},
            status=404,
            headers=_NO_CACHE,
        )
    result = await probe.check()
    return web.json_response(
        _body(probe, result), status=200 if result.ok else 503, headers=_NO_CACHE
    )


async def _metrics(request: web.Request) -> web.Response:
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    payload = await asyncio.to_thread(encoder, request.app[METRICS_REGISTRY_KEY])
    response = web.Response(body=payload)
    response.headers["Content-Type"] = content_type
    return response


def _check_route(key: web.AppKey[Check]) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.Response:
        ok, message = request.app[key]()
        return web.json_response(
            {"status": "ok" if ok else "failing", "message": message},
            status=200 if ok else 503,
            headers=_NO_CACHE,
        )

    return handler


_NO_CACHE = {"Cache-Control": "no-store"}
_JSON_NO_CACHE = {**_NO_CACHE, "Content-Type": "application/json; charset=utf-8"}


#: Routes that answer without a token: the kubelet's probes.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})


def _require_token(authorizer: TokenAuthorizer) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            response: web.StreamResponse = await handler(request)
            return response
        decision = await authorizer.decide(request.headers.get("Authorization"), request.path)
        if decision.status != 200:
            headers = dict(_NO_CACHE)
            if decision.status == 401:
                headers["WWW-Authenticate"] = 'Bearer realm="redisqueue-operator"'
            return web.json_response(
                {"status": "unknown", "error": decision.message},
                status=decision.status,
                headers=headers,
            )
        response = await handler(request)
        return response

    return middleware


def create_app(
    probes: ProbeSource,
    *,
    liveness: Check = _always_ok,
    readiness: Check = _always_ok,
    registry: CollectorRegistry = REGISTRY,
    authorizer: TokenAuthorizer | None = None,
) -> web.Application:
    """The aiohttp application serving health and metrics for ``probes`` (to holders of a
    token that ``authorizer`` accepts, when given)."""
    app = web.Application(middlewares=[_require_token(authorizer)] if authorizer else [])
    app[PROBES_KEY] = probes
    app[LIVENESS_KEY] = liveness
    app[READINESS_KEY] = readiness
    app[METRICS_REGISTRY_KEY] = registry
    app[ANSWER_KEY] = _RenderedAnswer()
    app.router.add_get("/api/health/redis", _health_all)
    app.router.add_get("/api/health/redis/{namespace}/{name}", _health_one)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _check_route(LIVENESS_KEY))
    app.router.add_get("/readyz", _check_route(READINESS_KEY))
    return app
