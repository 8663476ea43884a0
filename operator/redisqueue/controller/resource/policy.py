"""The operator's own policy: which external hosts and provision images RedisQueues may use.

Set by whoever installs the operator (chart values ``operatorPolicy.*``, which become the
environment variables below and, where CEL can check them, the admission policy), never by a
RedisQueue's author:

* ``REDISQUEUE_ALLOWED_HOSTS``: DNS suffixes (``cache.amazonaws.com`` allows that name and every
  name under it) and CIDRs (``10.20.0.0/16``), comma-separated. Empty: any host not denied.
* ``REDISQUEUE_DENIED_HOSTS``: the same syntax, refused even when allowed. Defaults to
  loopback, the unspecified address, link-local addresses and the cloud metadata endpoints
  (:data:`DEFAULT_DENIED_HOSTS`).
* ``REDISQUEUE_ALLOWED_IMAGES``: image prefixes (``registry.example.com/redis:``) for
  ``spec.redis.provision.image``. Empty: any image (the admission policy still asks the author
  for the right to create StatefulSets when the image is not the default).

An address is refused when it, or the IPv4 address it carries, is denied: IPv4-mapped
(``::ffff:a.b.c.d``), IPv4-compatible (``::a.b.c.d``), NAT64 (``64:ff9b::/96``,
``64:ff9b:1::/48``), 6to4 (``2002::/16``) and Teredo (``2001::/32``) addresses are checked in
both forms, so no IPv6 spelling reaches a denied IPv4 network. Names are checked by every
address they resolve to (:meth:`OperatorPolicy.address_problem`), when the RedisQueue is
admitted and again each time a connection is dialled.

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

#: Loopback and the unspecified address (in a pod: the operator itself), link-local (where
#: every cloud serves instance metadata and credentials), AWS's IPv6 metadata address, and the
#: metadata host names of the large clouds.
DEFAULT_DENIED_HOSTS: Final = (
    "127.0.0.0/8",
    "::1/128",
    "0.0.0.0/8",
    "::/128",
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


_IPV4_COMPATIBLE: Final = ipaddress.IPv6Network("::/96")
_NAT64: Final = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


def address_forms(address: IPAddress) -> tuple[IPAddress, ...]:
    """``address`` and every IPv4 address an IPv6 spelling of it carries (mapped, compatible,
    NAT64, 6to4, Teredo): the forms a denied network must not match."""
    if isinstance(address, ipaddress.IPv4Address):
        return (address,)
    forms: list[IPAddress] = [address]
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.ipv4_mapped is not None:
        forms.append(address.ipv4_mapped)
    elif (address in _IPV4_COMPATIBLE and int(address) > 1) or any(  # not :: or ::1
        address in prefix for prefix in _NAT64
    ):
        forms.append(low32)
    if address.sixtofour is not None:
        forms.append(address.sixtofour)
    if address.teredo is not None:
        forms.extend(address.teredo)  # (server, client)
    return tuple(forms)


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

    def denies_address(self, address: IPAddress) -> bool:
        """Whether ``address`` (in any of its forms, see :func:`address_forms`) is denied."""
        return any(self.denied.match_address(form) for form in address_forms(address))

    def address_problem(self, host: str, address: IPAddress) -> str | None:
        """Why the operator may not connect to ``address`` for ``host``, or None: the check
        made for every address a name resolves to, and again before each dial."""
        if not self.denies_address(address):
            return None
        if host_address(host) is not None:
            return f"spec.redis.external.host: {host} is in a network the operator refuses"
        return f"spec.redis.external.host: {host} resolves into a network the operator refuses"

    def host_problem(self, host: str, resolved: Iterable[IPAddress] = ()) -> str | None:
        """Why ``spec.redis.external.host`` is refused, or None.

        ``resolved`` are the addresses the name resolves to now (when it is a name): a name that
        points into a denied network is refused like the address itself.
        """
        address = host_address(host)
        if address is not None:
            if (problem := self.address_problem(host, address)) is not None:
                return problem
        elif self.denied.match_name(host):
            return f"spec.redis.external.host: {host} is a host name the operator refuses"
        for found in resolved:
            if (problem := self.address_problem(host, found)) is not None:
                return problem
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
