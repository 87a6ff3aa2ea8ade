"""DNS questions and record values, normalised so that truth and answers compare as sets."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

DNS_PORT = 53


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


@dataclass(frozen=True, slots=True, order=True)
class ServerRef:
    """One DNS server of one layer: the layer's name and the server's `host:port`."""

    layer: str
    address: str


Measures = Callable[[Target, ServerRef], bool]
"""Whether this agent measures a target on a server: with sharding, only some (shard.py)."""


def measure_all(target: Target, server: ServerRef) -> bool:
    """The unsharded agent: every target on every server."""
    return True


def parse_target(text: str) -> Target:
    """`NAMESPACE/SERVICE`; ValueError with the one line to print otherwise."""
    namespace, sep, service = text.partition("/")
    if not sep or not namespace or not service or "/" in service:
        raise ValueError(f"target must be NAMESPACE/SERVICE, got {text!r}")
    return Target(namespace, service)


def service_domain(target: Target, zone: str) -> str:
    """`<svc>.<ns>.svc.<zone>.`, the name the kubernetes plugin serves for a Service."""
    return f"{target.service}.{target.namespace}.svc.{zone.strip('.')}.".lower()


def written_name(target: Target) -> str:
    """`<svc>.<ns>`, relative: the Service as an application in any namespace writes it, which
    the resolver expands through its search list."""
    return f"{target.service}.{target.namespace}".lower()


def ip_value(text: str) -> str:
    """Canonical text of an IP address; raises ValueError on anything else."""
    return str(ipaddress.ip_address(text.strip()))


def srv_value(port: int, target: str) -> str:
    """An SRV record compared by port and target only: weights and priorities vary by server."""
    return f"{port} {target.lower().rstrip('.')}."


def dashed_ip(address: str) -> str:
    """The label CoreDNS gives an endpoint without a hostname (plugin/kubernetes
    `endpointHostname`): the address text as the slice writes it, dots or colons turned into
    dashes, and a `0` after a trailing dash (`fd00:10:244::` is `fd00-10-244--0`)."""
    if "." in address:
        return address.replace(".", "-").lower()
    label = address.replace(":", "-").lower()
    return label + "0" if label.endswith("-") else label


def served_ip(text: str) -> str:
    """The IP a DNS answer carries for an address: canonical text, and an IPv4-mapped IPv6
    address as its IPv4 (CoreDNS serves it as an A record); ValueError on anything else."""
    address = ipaddress.ip_address(text.strip())
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def split_address(address: str, default_port: int | None = DNS_PORT) -> tuple[str, int]:
    """The one `host:port` reader: `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6
    address. With `default_port` None the port is required. ValueError says what is wrong."""
    text = address.strip()
    port_text: str | None = None
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise ValueError("write IPv6 hosts in brackets, e.g. [fd00::10]:53")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    elif ":" in text and default_port is None:
        raise ValueError("write IPv6 hosts in brackets, e.g. [::]:9897")
    else:
        host = text
    if port_text is None:
        if default_port is None:
            raise ValueError("needs a port, e.g. 0.0.0.0:9897")
        return host, default_port
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"{port_text!r} is not a port from 0 to 65535")
    return host, int(port_text)


def join_address(host: str, port: int) -> str:
    """`host:port`, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def with_port(address: str, default_port: int = DNS_PORT) -> str:
    """An address in the one canonical `host:port` form, the default port added if absent."""
    return join_address(*split_address(address, default_port))


def rtype_of(address: str) -> str:
    """A for IPv4 text, AAAA for IPv6 text."""
    return "AAAA" if ":" in address else "A"
