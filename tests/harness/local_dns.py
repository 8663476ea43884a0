"""A DNS server on loopback whose answers a test sets, and a way to make one process use it.

Name resolution is the one input of the operator the tests cannot otherwise control:
/etc/hosts and the host's resolver are not theirs to edit. This server (dnslib, UDP, TTL 0)
answers A and AAAA questions from :attr:`LocalDNS.records`, which a test changes at will
(DNS rebinding); :meth:`LocalDNS.isolated` is a command prefix that runs a process in a
mount namespace of its own, where /etc/resolv.conf names only this server, so nothing else
on the host is touched. Needs root (port 53, mount namespaces).
"""

from __future__ import annotations

import ipaddress
import os
import threading
from pathlib import Path
from typing import Any

from dnslib import AAAA, QTYPE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

#: Loopback, and not systemd-resolved's 127.0.0.53.
DNS_ADDRESS = "127.0.0.153"


class _Answers(BaseResolver):  # type: ignore[misc]
    def __init__(self, owner: LocalDNS) -> None:
        self.owner = owner

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        with self.owner.lock:
            addresses = list(self.owner.records.get(name, ()))
            self.owner.questions.append((name, qtype))
        for text in addresses:
            address = ipaddress.ip_address(text)
            if qtype == "A" and address.version == 4:
                reply.add_answer(RR(name, QTYPE.A, rdata=A(text), ttl=0))
            elif qtype == "AAAA" and address.version == 6:
                reply.add_answer(RR(name, QTYPE.AAAA, rdata=AAAA(text), ttl=0))
        return reply


class LocalDNS:
    """The server; ``records`` maps a lower-case name to the addresses it resolves to now."""

    def __init__(self, workdir: Path, address: str = DNS_ADDRESS) -> None:
        self.address = address
        self.records: dict[str, list[str]] = {}
        self.questions: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.resolv_conf = workdir / "resolv.conf"
        self.resolv_conf.write_text(f"nameserver {address}\noptions attempts:1 timeout:1\n")
        quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
        self._server = DNSServer(_Answers(self), port=53, address=address, logger=quiet)

    def start(self) -> LocalDNS:
        if os.geteuid() != 0:
            raise PermissionError("the local DNS server needs root (port 53)")
        self._server.start_thread()
        return self

    def stop(self) -> None:
        self._server.stop()
        self._server.server.server_close()

    def point(self, name: str, *addresses: str) -> None:
        """From now on ``name`` resolves to ``addresses``."""
        with self.lock:
            self.records[name.lower()] = list(addresses)

    def isolated(self) -> list[str]:
        """A command prefix: run the command in its own mount namespace, resolving names only
        through this server."""
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            'mount --bind "$0" /etc/resolv.conf && exec "$@"',
            str(self.resolv_conf),
        ]
