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
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder

from .probe import Probe, ProbeRegistry
from .probe_result import ProbeResult, format_latency

Check = Callable[[], tuple[bool, str]]


PROBES_KEY: web.AppKey[ProbeRegistry] = web.AppKey("probes")
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


class SelectorError(ValueError):
    """A label selector this server cannot read; the message says what is accepted."""


_SET_RULE = re.compile(r"^\s*([^\s!=(),]+)\s+(in|notin)\s+\(([^()]*)\)\s*$")
_LABEL_KEY = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
MAX_SELECTOR_LENGTH = 1024


def parse_selector(text: str) -> list[Callable[[Mapping[str, str]], bool]]:
    """Kubernetes label-selector syntax into predicates over a label map."""
    if len(text) > MAX_SELECTOR_LENGTH:
        raise SelectorError(f"labelSelector: longer than {MAX_SELECTOR_LENGTH} characters")
    rules: list[Callable[[Mapping[str, str]], bool]] = []
    for part in _split_selector(text):
        rules.append(_parse_requirement(part))
    return rules


def _split_selector(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _value(text: str) -> str:
    value = text.strip()
    if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
        raise SelectorError(f"labelSelector: {value[:64]!r} is not a label value")
    return value


def _key(text: str) -> str:
    key = text.strip()
    if not _LABEL_KEY.fullmatch(key):
        raise SelectorError(
            "labelSelector: expected key=value, key!=value, key, !key, key in (a,b) or "
            "key notin (a,b), separated by commas"
        )
    return key


def _parse_requirement(part: str) -> Callable[[Mapping[str, str]], bool]:
    if match := _SET_RULE.fullmatch(part):
        key, op = _key(match.group(1)), match.group(2)
        values = frozenset(_value(v) for v in match.group(3).split(",") if v.strip())
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    for op in ("!=", "==", "="):
        if op in part:
            raw_key, value = part.split(op, 1)
            key, value = _key(raw_key), _value(value)
            if op == "!=":
                return lambda labels: labels.get(key) != value
            return lambda labels: labels.get(key) == value
    if part.startswith("!"):
        key = _key(part[1:])
        return lambda labels: key not in labels
    key = _key(part)
    return lambda labels: key in labels


def _in_scope(request: web.Request) -> list[Probe]:
    """The probes the request's ``namespace`` and ``labelSelector`` parameters cover."""
    registry: ProbeRegistry = request.app[PROBES_KEY]
    namespace = request.query.get("namespace")
    selector = parse_selector(request.query.get("labelSelector", ""))
    return [
        p
        for p in registry.snapshot()
        if (namespace is None or p.namespace == namespace)
        and all(rule(registry.labels_of(p.namespace, p.name)) for rule in selector)
    ]


async def _health_all(request: web.Request) -> web.Response:
    scoped = bool(request.query.get("namespace") or request.query.get("labelSelector"))
    try:
        probes = _in_scope(request)
    except SelectorError as exc:
        return web.json_response(
            {"status": "unknown", "error": str(exc)}, status=400, headers=_NO_CACHE
        )
    if len(probes) == 1:  # the common case; gather would wrap it in a task
        results = [await probes[0].check()]
    else:
        results = list(await asyncio.gather(*(p.check() for p in probes)))
    if scoped:  # rendered per request: scopes differ between callers
        status, body = _render_all(probes, results)
        return web.json_response(body, status=status, headers=_NO_CACHE)
    cached: _RenderedAnswer = request.app[ANSWER_KEY]
    if not cached.matches(results):
        status, body = _render_all(probes, results)
        cached.results, cached.status = results, status
        cached.body = json.dumps(body).encode()
    return web.Response(
        body=cached.body,
        status=cached.status,
        content_type="application/json",
        charset="utf-8",
        headers=_NO_CACHE,
    )


async def _health_one(request: web.Request) -> web.Response:
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    probe = request.app[PROBES_KEY].get(namespace, name)
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


def create_app(
    probes: ProbeRegistry,
    *,
    liveness: Check = _always_ok,
    readiness: Check = _always_ok,
    registry: CollectorRegistry = REGISTRY,
) -> web.Application:
    """The aiohttp application serving health and metrics for ``probes``."""
    app = web.Application()
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
