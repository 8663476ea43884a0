"""How the operator finds its cluster and logs in: in a pod its ServiceAccount, else the
kubeconfig, with kopf's own login functions, so kopf and :class:`~.kube.Kube` reach the same
server with the same credentials. Error messages name files, keys and URLs, never a
credential.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections.abc import Iterator
from typing import Any, Final

import aiohttp
import kopf
import yaml

from ..resource.identity import MANAGED_BY
from .gate import WRITE_GATE

#: kopf's own connections, when it does not share the operator's (:func:`share_pool`).
KOPF_POOL_SIZE: Final = 32

#: Before Python 3.12.8 (and in 3.13.0) asyncio can leave the socket of a closed TLS
#: connection open while its TLS shutdown waits on the peer (a watch cut short, a request
#: cancelled at a leader change, CPython pull request 118960). There aiohttp aborts such
#: sockets when asked to (``enable_cleanup_closed``), at the latest when the pool closes;
#: elsewhere it warns that the option is not needed, so it is asked only where it helps.
SSL_CLOSE_LEAKS: Final = sys.version_info[:3] < (3, 12, 8) or sys.version_info[:3] == (3, 13, 0)


def api_connector(limit: int, ssl: Any) -> aiohttp.TCPConnector:
    """A pool of at most ``limit`` connections to the API server that closes every one of
    them, TLS included."""
    return aiohttp.TCPConnector(limit=limit, ssl=ssl, enable_cleanup_closed=SSL_CLOSE_LEAKS)


_shared_pool: aiohttp.TCPConnector | None = None


def share_pool(connector: aiohttp.TCPConnector | None) -> None:
    """Let kopf's requests use ``connector`` (the operator's own pool to the API server)."""
    global _shared_pool  # noqa: PLW0603 - one process, one pool
    _shared_pool = connector


#: Where a pod's ServiceAccount token is mounted (kopf's in-cluster login reads it too).
SERVICE_ACCOUNT_TOKEN: Final = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105


class NoClusterError(Exception):
    """No cluster to talk to: no in-cluster account and no usable kubeconfig, or the API
    server does not answer. The message is one line that says which, without credentials."""


_agent = MANAGED_BY


def user_agent() -> str:
    """The User-Agent this replica sends."""
    return _agent


def identify(identity: str) -> None:
    """Name this replica in the User-Agent of every request it sends from now on (its own
    client's and kopf's), so the API server's audit log tells the replicas apart."""
    global _agent  # noqa: PLW0603 - one process, one identity
    _agent = f"{MANAGED_BY}/{identity}" if identity else MANAGED_BY


def _kubeconfig_files() -> tuple[str, list[str]]:
    """$KUBECONFIG (or ~/.kube/config), and those of its files that exist."""
    paths = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    found = [p for p in paths.split(os.pathsep) if p and os.path.isfile(os.path.expanduser(p))]
    return paths, found


@contextlib.contextmanager
def kubeconfig_env(paths: str) -> Iterator[None]:
    """$KUBECONFIG set to ``paths`` for the duration (kopf's login reads only the variable).
    Synchronous, so no other task of the event loop sees the change."""
    saved = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = paths
    try:
        yield
    finally:
        if saved is None:
            del os.environ["KUBECONFIG"]
        else:
            os.environ["KUBECONFIG"] = saved


def _in_cluster_server(info: kopf.ConnectionInfo) -> kopf.ConnectionInfo:
    """The API server's ClusterIP from the environment the kubelet sets, as client-go does,
    so reaching it does not depend on cluster DNS (kopf's login names kubernetes.default.svc)."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        return info
    host = f"[{host}]" if ":" in host else host
    return dataclasses.replace(info, server=f"https://{host}:{port}")


def usable_kubeconfig(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo:
    paths, found = _kubeconfig_files()
    if not found:
        raise NoClusterError(
            f"no Kubernetes cluster configured: not running in a pod, and no kubeconfig at {paths}"
        )
    # Like kubectl, files of the list that do not exist are skipped.
    try:
        with kubeconfig_env(os.pathsep.join(found)):
            info = kopf.login_with_kubeconfig(settings=settings)
    except yaml.YAMLError as exc:
        # Never the YAML error's text: it quotes the offending line, which may hold a token.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        detail = f"it is not valid YAML{where}"
    except KeyError as exc:
        detail = f"its current context refers to a missing entry {exc}"
    except (kopf.LoginError, OSError, ValueError, TypeError, AttributeError) as exc:
        # These name a file, a key or a type, never a credential.
        detail = " ".join(str(exc).split()) or type(exc).__name__
    else:
        if info is not None and info.server:
            return info
        detail = "its current context's cluster has no server"
    raise NoClusterError(f"the kubeconfig at {paths} is not usable: {detail}")


def connection_info(
    settings: kopf.OperatorSettings | None = None,
) -> tuple[kopf.ConnectionInfo, bool]:
    """The connection, and whether it is the pod's ServiceAccount (its token rotates)."""
    settings = settings or kopf.OperatorSettings()
    info = kopf.login_with_service_account(settings=settings)
    if info is not None:
        return _in_cluster_server(info), True
    return usable_kubeconfig(settings), False


async def login(**kwargs: Any) -> kopf.AiohttpSession:
    """kopf's login handler: in-cluster ServiceAccount first, then the kubeconfig
    ($KUBECONFIG or ~/.kube/config), with kopf's own login functions, so kopf and
    :class:`Kube` reach the same server with the same credentials.

    The session uses the operator's own pool of connections when the runner shares it
    (:func:`share_pool`), else a bounded pool of :data:`KOPF_POOL_SIZE`. kopf's own
    has no bound: under a burst of a thousand RedisQueues it opened hundreds of TLS
    connections (a handshake each, on both ends, and some 200 KiB of buffers each), and
    kept opening new ones over repeated bursts.

    Raises :class:`NoClusterError` when neither is usable. A coroutine, so kopf runs it in
    the event loop rather than in a thread (it sets $KUBECONFIG for a moment).
    """
    settings = kwargs.get("settings")
    info = connection_info(settings if isinstance(settings, kopf.OperatorSettings) else None)[0]
    fence = aiohttp.TraceConfig()
    fence.on_request_start.append(WRITE_GATE.on_request_start)
    shared = _shared_pool is not None and not _shared_pool.closed
    session = aiohttp.ClientSession(
        connector=_shared_pool if shared else api_connector(KOPF_POOL_SIZE, info.as_ssl_context()),
        connector_owner=not shared,
        trace_configs=[fence],
        headers={**info.as_http_headers(), "User-Agent": f"{_agent} (kopf)"},
        auth=info.as_aiohttp_basic_auth() if info.username else None,
        trust_env=info.trust_env,
    )
    return kopf.AiohttpSession(
        server=info.server,
        default_namespace=info.default_namespace,
        expiration=info.expiration,
        aiohttp_session=session,
    )
