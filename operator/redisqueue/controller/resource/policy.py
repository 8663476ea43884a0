"""The operator's own policy: which external hosts and provision images RedisQueues may use.

Set by whoever installs the operator (chart values ``operatorPolicy.*``, which become the
environment variables below and, where CEL can check them, the admission policy), never by a
RedisQueue's author:

* ``REDISQUEUE_ALLOWED_HOSTS``: DNS suffixes (``cache.amazonaws.com`` allows that name and every
  name under it) and CIDRs (``10.20.0.0/16``), comma-separated. Empty: any host not denied.
* ``REDISQUEUE_DENIED_HOSTS``: the same syntax, refused even when allowed. Defaults to
  link-local addresses and the cloud metadata endpoints (:data:`DEFAULT_DENIED_HOSTS`).
* ``REDISQUEUE_ALLOWED_IMAGES``: image prefixes (``registry.example.com/redis:``) for
  ``spec.redis.provision.image``. Empty: any image (the admission policy still asks the author
  for the right to create StatefulSets when the image is not the default).

A host the allow-list names explicitly is *trusted*: its connection failures are reported with
their cause (refused, timeout, TLS). Any other host's failures all read the same, so status
cannot be used to map which ports answer on addresses the author cannot otherwise reach.

Pure: no I/O (the caller resolves names and passes the addresses).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ENV_ALLOWED_HOSTS: Final = "REDISQUEUE_ALLOWED_HOSTS"
ENV_DENIED_HOSTS: Final = "REDISQUEUE_DENIED_HOSTS"
ENV_ALLOWED_IMAGES: Final = "REDISQUEUE_ALLOWED_IMAGES"

#: Link-local (where every cloud serves instance metadata and credentials), AWS's IPv6
#: metadata address, and the metadata host names of the large clouds.
DEFAULT_DENIED_HOSTS: Final = (
    "169.254.0.0/16",
    "fe80::/10",
    "fd00:ec2::254/128",
    "metadata.google.internal",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.com",
)


class PolicyError(ValueError):
    """A policy setting that cannot be read; the message names the variable."""


@dataclass(frozen=True, slots=True)
class HostRules:
    """DNS suffixes and networks, from one comma-separated setting."""

    suffixes: tuple[str, ...] = ()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, text: str, variable: str) -> HostRules:
        suffixes: list[str] = []
        networks: list[IPNetwork] = []
        for raw in text.split(","):
            entry = raw.strip().lower().strip(".")
            if not entry:
                continue
            if "/" in entry or _looks_like_ip(entry):
                try:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    raise PolicyError(
                        f"{variable}: {raw.strip()!r} is neither a CIDR nor a DNS suffix"
                    ) from None
            elif all(
                part and part.replace("-", "").replace("_", "").isalnum()
                for part in entry.split(".")
            ):
                suffixes.append(entry)
            else:
                raise PolicyError(
                    f"{variable}: {raw.strip()!r} is neither a CIDR (10.0.0.0/8) nor a DNS "
                    "suffix (example.com)"
                )
        return cls(tuple(suffixes), tuple(_with_ipv4_forms(networks)))

    def __bool__(self) -> bool:
        return bool(self.suffixes or self.networks)

    def match_name(self, host: str) -> bool:
        name = host.lower().rstrip(".")
        return any(name == s or name.endswith("." + s) for s in self.suffixes)

    def match_address(self, address: IPAddress) -> bool:
        return any(address.version == n.version and address in n for n in self.networks)


_IPV4_MAPPED: Final = ipaddress.IPv6Network("::ffff:0:0/96")


def _with_ipv4_forms(networks: list[IPNetwork]) -> list[IPNetwork]:
    """``networks``, each IPv4-mapped IPv6 network also in its IPv4 form: addresses are
    compared in IPv4 form (:func:`host_address`), so ``::ffff:127.0.0.0/104`` must catch
    ``127.0.0.1`` too."""
    out = list(networks)
    for network in networks:
        if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_IPV4_MAPPED):
            v4 = ipaddress.IPv4Network(
                (int(network.network_address) & 0xFFFFFFFF, max(0, network.prefixlen - 96))
            )
            if v4 not in out:
                out.append(v4)
    return out


def _looks_like_ip(text: str) -> bool:
    return ":" in text or text.replace(".", "").isdigit()


def host_address(host: str) -> IPAddress | None:
    """``host`` as an IP address (an IPv4-mapped IPv6 address as IPv4), or None for a name."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


_DEFAULT_DENIED: Final = HostRules.parse(",".join(DEFAULT_DENIED_HOSTS), ENV_DENIED_HOSTS)


@dataclass(frozen=True, slots=True)
class OperatorPolicy:
    """Allowed and denied external hosts, and allowed provision images."""

    allowed: HostRules = HostRules()
    denied: HostRules = _DEFAULT_DENIED
    allowed_images: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> OperatorPolicy:
        """The policy from the environment; raises :class:`PolicyError` naming the variable."""
        denied = environ.get(ENV_DENIED_HOSTS)
        images = tuple(
            i.strip() for i in environ.get(ENV_ALLOWED_IMAGES, "").split(",") if i.strip()
        )
        return cls(
            allowed=HostRules.parse(environ.get(ENV_ALLOWED_HOSTS, ""), ENV_ALLOWED_HOSTS),
            denied=(
                HostRules.parse(denied, ENV_DENIED_HOSTS) if denied is not None else _DEFAULT_DENIED
            ),
            allowed_images=images,
        )

    def trusted(self, host: str) -> bool:
        """True when the allow-list names ``host`` (its failures may be reported in detail)."""
        address = host_address(host)
        if address is not None:
            return self.allowed.match_address(address)
        return self.allowed.match_name(host)

    def host_problem(self, host: str, resolved: Iterable[IPAddress] = ()) -> str | None:
        """Why ``spec.redis.external.host`` is refused, or None.

        ``resolved`` are the addresses the name resolves to now (when it is a name): a name that
        points into a denied network is refused like the address itself.
        """
        address = host_address(host)
        if address is not None:
            if self.denied.match_address(address):
                return f"spec.redis.external.host: {host} is in a network the operator refuses"
        elif self.denied.match_name(host):
            return f"spec.redis.external.host: {host} is a host name the operator refuses"
        for found in resolved:
            mapped = host_address(str(found)) or found
            if self.denied.match_address(mapped):
                return (
                    f"spec.redis.external.host: {host} resolves into a network the operator refuses"
                )
        if self.allowed and not self.trusted(host):
            return (
                f"spec.redis.external.host: {host} is not among the hosts this operator may "
                f"connect to ({self.describe_allowed()})"
            )
        return None

    def describe_allowed(self) -> str:
        parts = [f"*.{s}" for s in self.allowed.suffixes] + [str(n) for n in self.allowed.networks]
        return ", ".join(parts)

    def image_problem(self, image: str, default_image: str) -> str | None:
        """Why ``spec.redis.provision.image`` is refused, or None."""
        if not self.allowed_images or image == default_image:
            return None
        if any(image.startswith(prefix) for prefix in self.allowed_images):
            return None
        return (
            f"spec.redis.provision.image: {image} does not start with an allowed prefix "
            f"({', '.join(self.allowed_images)})"
        )
