"""Who may read health and metrics: Kubernetes bearer tokens, as kube-rbac-proxy checks them.

Health answers and metrics name every RedisQueue, its endpoint and its queue keys. With
``--auth`` (chart ``metrics.auth.enabled``) a request to ``/metrics`` or ``/api/health/...``
must carry ``Authorization: Bearer <token>``: the API server says who the token belongs to
(TokenReview) and whether that user may ``get`` the request's path (SubjectAccessReview on
a non-resource URL, granted by RBAC, e.g. the chart's ``<release>-metrics-reader``
ClusterRole). ``/healthz`` and ``/readyz`` stay open for the kubelet.

Answers are kept for ``ttl`` seconds per token and path (at most ``max_entries`` of them),
so a scraper costs two API requests a minute, not two per scrape; a flood of requests with
new tokens costs the API server no more than the operator's client pool lets through. The
token itself is never logged and only its SHA-256 is kept.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from typing import Final

import aiohttp

from ..api.kube import Kube, KubeError
from ..resource.identity import JSON

log = logging.getLogger("redisqueue.operator")

TOKEN_REVIEWS: Final = "/apis/authentication.k8s.io/v1/tokenreviews"  # noqa: S105 - a path
ACCESS_REVIEWS: Final = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
#: Seconds an answer (allowed or not) is reused for the same token and path.
DEFAULT_TTL_SECONDS: Final = 60.0
DEFAULT_MAX_ENTRIES: Final = 1024


class Decision:
    """An HTTP status (200, 401, 403 or 503) and what to tell the caller."""

    __slots__ = ("message", "status")

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


class TokenAuthorizer:
    """TokenReview + SubjectAccessReview for each (token, path), with a bounded cache."""

    def __init__(
        self,
        kube: Kube,
        *,
        ttl: float = DEFAULT_TTL_SECONDS,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self.kube = kube
        self.ttl = ttl
        self.max_entries = max_entries
        self._answers: OrderedDict[tuple[str, str], tuple[float, Decision]] = OrderedDict()

    async def decide(self, authorization: str | None, path: str) -> Decision:
        """Whether the request with this ``Authorization`` header may read ``path``."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return Decision(401, "a bearer token is required (Authorization: Bearer <token>)")
        key = (hashlib.sha256(token.encode()).hexdigest(), path)
        now = time.monotonic()
        kept = self._answers.get(key)
        if kept is not None and kept[0] > now:
            self._answers.move_to_end(key)
            return kept[1]
        decision = await self._review(token, path)
        if decision.status != 503:  # an API outage is not remembered
            self._answers[key] = (now + self.ttl, decision)
            self._answers.move_to_end(key)
            while len(self._answers) > self.max_entries:
                self._answers.popitem(last=False)
        return decision

    async def _ask(self, path: str, api_version: str, kind: str, spec: JSON) -> JSON:
        """POST a review and return the answer: it asks a question and changes nothing, so
        every replica may ask (not only the leader)."""
        return await self.kube.request(
            "POST", path, body={"apiVersion": api_version, "kind": kind, "spec": spec}, gated=False
        )

    async def _review(self, token: str, path: str) -> Decision:
        try:
            review = await self._ask(
                TOKEN_REVIEWS, "authentication.k8s.io/v1", "TokenReview", {"token": token}
            )
            status = review.get("status") or {}
            if not status.get("authenticated"):
                return Decision(401, "the bearer token was not accepted")
            user: JSON = status.get("user") or {}
            access = await self._ask(
                ACCESS_REVIEWS,
                "authorization.k8s.io/v1",
                "SubjectAccessReview",
                {
                    "user": user.get("username"),
                    "uid": user.get("uid"),
                    "groups": user.get("groups") or [],
                    "extra": user.get("extra") or {},
                    "nonResourceAttributes": {"path": path, "verb": "get"},
                },
            )
        except (KubeError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("could not review a request's token: %s", getattr(exc, "message", exc))
            return Decision(503, "the Kubernetes API could not check the token; try again")
        if (access.get("status") or {}).get("allowed"):
            return Decision(200, "ok")
        who = user.get("username") or "this user"
        return Decision(403, f"{who} may not get {path} (RBAC: nonResourceURLs, verb get)")
