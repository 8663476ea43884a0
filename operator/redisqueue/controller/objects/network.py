"""The NetworkPolicy in front of a provisioned Redis: who may reach its port.

Pure: spec in, dict out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..resource.identity import JSON
from ..resource.names import REDIS_PORT, QueueNames
from ..resource.spec import RedisQueueSpec
from .meta import metadata
from .server import provisioned


@dataclass(frozen=True, slots=True)
class OperatorPeer:
    """The operator's own pods, which PING every provisioned Redis: their namespace and labels
    (``POD_NAMESPACE`` and ``REDISQUEUE_PEER_SELECTOR`` in the install). Unknown when the
    operator runs outside the cluster; then no rule lets it in."""

    namespace: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


def _selector(selector: Any) -> JSON:
    dumped: JSON = selector.model_dump(by_alias=True, exclude_none=True)
    return dumped


def build_network_policy(names: QueueNames, spec: RedisQueueSpec, peer: OperatorPeer) -> JSON:
    """The NetworkPolicy ``<name>-redis``: only ``networkPolicy.allowFrom`` (default: the
    RedisQueue's namespace) and the operator's pods reach the Redis port; nothing else does,
    on network plugins that enforce NetworkPolicy. Selects exactly this RedisQueue's Redis pod
    (the StatefulSet's selector)."""
    provision = provisioned(spec)
    peers: list[JSON] = []
    for allowed in provision.network_policy.allow_from or []:
        rule: JSON = {"podSelector": _selector(allowed.pod_selector)}
        if allowed.namespace_selector is not None:
            rule["namespaceSelector"] = _selector(allowed.namespace_selector)
        peers.append(rule)
    if not peers:
        peers = [{"podSelector": {}}]  # every pod of the RedisQueue's own namespace
    port = [{"port": REDIS_PORT, "protocol": "TCP"}]
    ingress: list[JSON] = [{"ports": port, "from": peers}]
    if peer.namespace and peer.labels:
        ingress.append(
            {
                "ports": port,
                "from": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": peer.namespace}
                        },
                        "podSelector": {"matchLabels": dict(peer.labels)},
                    }
                ],
            }
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(names, names.workload),
        "spec": {
            "podSelector": {"matchLabels": names.selector_labels},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }
