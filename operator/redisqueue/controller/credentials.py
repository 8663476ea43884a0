"""Reading a RedisQueue's Secrets and turning its spec into the connection contract.

Errors are :class:`SetupError`\\ s whose messages name the Secret and key, never a value.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Final

from redisqueue.contract import ConnectionContract

from .builders import auth_secret_key_ref, build_contract, endpoint_for
from .errors import SetupError
from .kube import Kube, KubeError, object_path
from .spec import JSON, RedisQueueSpec
from .state import Reason

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


def decode_secret_value(secret: Mapping[str, Any], key: str) -> str | None:
    """The text under ``key`` of a Secret's ``data``; None when absent or not valid text."""
    raw = (secret.get("data") or {}).get(key)
    if raw is None:
        return None
    try:
        return base64.b64decode(raw, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


async def read_secret(kube: Kube, namespace: str, name: str, what: str) -> JSON:
    """The Secret ``name``; ``what`` says in errors what it is needed for."""
    try:
        secret = await kube.get(object_path("v1", "Secret", namespace, name))
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


async def read_secret_key(
    kube: Kube,
    namespace: str,
    name: str,
    key: str,
    what: str,
    already_read: Mapping[str, JSON],
) -> str:
    """The value under ``key`` of Secret ``name`` (taken from ``already_read`` if there)."""
    secret = already_read.get(name) or await read_secret(kube, namespace, name, what)
    refuse_special(secret, namespace, name, what)  # also when it came from a cache or a watch
    if key not in (secret.get("data") or {}):
        # The Secret's other key names are not listed: they are not the author's to see.
        raise SetupError(
            Reason.SECRET_KEY_NOT_FOUND,
            f"Secret {namespace}/{name} has no key {key!r} ({what})",
        )
    value = decode_secret_value(secret, key)
    if value is None:
        raise SetupError(
            Reason.SECRET_VALUE_INVALID,
            f"Secret {namespace}/{name} key {key!r} ({what}) is not valid UTF-8 text",
        )
    return value


def referenced_secrets(name: str, spec: RedisQueueSpec) -> frozenset[str]:
    """The Secrets (same namespace) whose contents the contract of ``spec`` depends on."""
    names = set()
    ref = auth_secret_key_ref(name, spec)
    if ref is not None:
        names.add(ref[0])
    external = spec.redis.external
    if external is not None and external.tls.enabled and external.tls.ca_secret_ref:
        names.add(external.tls.ca_secret_ref.name)
    return frozenset(names)


async def resolve_contract(
    kube: Kube,
    namespace: str,
    name: str,
    spec: RedisQueueSpec,
    already_read: Mapping[str, JSON] | None = None,
) -> ConnectionContract:
    """The contract for ``spec``, reading its Secrets (or taking them from ``already_read``)."""
    already_read = already_read or {}
    host, port = endpoint_for(name, namespace, spec)
    password = None
    ref = auth_secret_key_ref(name, spec)
    if ref is not None:
        password = await read_secret_key(kube, namespace, ref[0], ref[1], "password", already_read)
    ca_pem = None
    external = spec.redis.external
    if external is not None and external.tls.enabled and external.tls.ca_secret_ref:
        ca = external.tls.ca_secret_ref
        ca_pem = await read_secret_key(
            kube, namespace, ca.name, ca.key, "TLS CA certificate", already_read
        )
    return build_contract(spec, host, port, password, ca_pem=ca_pem)
