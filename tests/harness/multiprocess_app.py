"""A WSGI app for gunicorn: each request uses the client; ``/metrics`` is the recipe from
docs/client.md, which the test writes next to the gunicorn configuration as
``metrics_recipe.py``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from metrics_recipe import metrics_app  # type: ignore[import-not-found]

from redisqueue.client import Redis, create_client

_client: Redis | None = None


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    global _client  # noqa: PLW0603 - one client per worker process, made after the fork
    if environ["PATH_INFO"] == "/metrics":
        return metrics_app(environ, start_response)  # type: ignore[no-any-return]
    if _client is None:
        _client = create_client(name="multiprocess-app")
    _client.blpop(["nothing"], timeout=0.1)  # holds the worker, so requests spread over both
    hits = _client.incr("hits")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{os.getpid()} {hits}".encode()]
