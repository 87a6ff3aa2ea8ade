"""DNS questions and record values, normalised so that truth and answers compare as sets."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class Target:
    """A headless Service that the agent monitors."""

    namespace: str
    service: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.service}"


@dataclass(frozen=True, slots=True, order=True)
class Question:
    """One DNS question: an absolute, lower-case name and a record type."""

    name: str
    rtype: str

    def __str__(self) -> str:
        return f"{self.name} {self.rtype}"


def service_domain(target: Target, zone: str) -> str:
    """`<svc>.<ns>.svc.<zone>.`, the name the kubernetes plugin serves for a Service."""
    return f"{target.service}.{target.namespace}.svc.{zone.strip('.')}.".lower()


def ip_value(text: str) -> str:
    """Canonical text of an IP address; raises ValueError on anything else."""
    return str(ipaddress.ip_address(text.strip()))


def srv_value(port: int, target: str) -> str:
    """An SRV record compared by port and target only: weights and priorities vary by server."""
    return f"{port} {target.lower().rstrip('.')}."


def dashed_ip(address: str) -> str:
    """The label CoreDNS gives an endpoint without a hostname: its IP with dashes."""
    return address.replace(".", "-").replace(":", "-")


def split_address(address: str, default_port: int = 53) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, int(rest.lstrip(":") or default_port)
    if address.count(":") == 1:
        host, _, port = address.partition(":")
        return host, int(port)
    return address, default_port


def rtype_of(address: str) -> str:
    """A for IPv4 text, AAAA for IPv6 text."""
    return "AAAA" if ":" in address else "A"
