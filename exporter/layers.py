"""Which DNS servers this node probes, per layer. Pure code.

- `kube-dns`: the cluster DNS Service IP and its `dns` UDP port.
- `coredns`: the replicas, from the kube-dns Service's EndpointSlices. Every node probes only
  `coredns_replicas_per_node` of them, chosen by rendezvous hashing of (node, replica): the
  cluster's load on each replica then grows with nodes / replicas, not with nodes, and a
  replica coming or going moves only the nodes that had picked it.
- `node-local`: the configured address, only while it answers.
- `resolv-conf`: the first nameserver of resolv.conf.
- static layers from the settings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from exporter.comparator import ServerRef
from exporter.objects import ObjectError
from exporter.records import ip_value, split_address

DNS_PORT = 53


def host_port(address: str, port: int = DNS_PORT) -> str:
    """`ip:port`, with IPv6 in brackets."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def with_port(address: str) -> str:
    """An IP, IP:PORT or [IPv6]:PORT, with the DNS port added when missing."""
    return host_port(*split_address(address, DNS_PORT))


def split_static(entry: str) -> tuple[str, str]:
    """`NAME=IP[:PORT]` to (name, ip:port)."""
    name, _, address = entry.partition("=")
    return name, with_port(address)


def first_nameserver(resolv_conf: str) -> str | None:
    for line in resolv_conf.splitlines():
        parts = line.split("#", 1)[0].split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                return ip_value(parts[1].split("%", 1)[0])
            except ValueError:
                continue
    return None


def _dns_port(ports: Any) -> int:
    for port in ports or []:
        if isinstance(port, Mapping) and port.get("protocol", "UDP") == "UDP" \
                and isinstance(port.get("port"), int) and port.get("name", "dns") == "dns":
            return int(port["port"])
    return DNS_PORT


def rendezvous(node: str, replicas: Iterable[str], count: int) -> list[str]:
    """The `count` replicas with the highest hash of (node, replica)."""
    def score(replica: str) -> bytes:
        return hashlib.sha256(f"{node}\0{replica}".encode()).digest()

    return sorted(sorted(replicas, key=score, reverse=True)[:count])


@dataclass
class Discovery:
    """The kube-dns Service and its slices as last seen; static parts fixed at start."""

    node: str
    replicas_per_node: int
    enabled: frozenset[str]
    static: tuple[ServerRef, ...] = ()
    service_ip: str | None = None
    service_port: int = DNS_PORT
    slices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    node_local: str | None = None
    """The node-local address while it answers, else None."""

    def apply_service(self, obj: Mapping[str, Any] | None) -> None:
        """The kube-dns Service object, or None when deleted."""
        if obj is None:
            self.service_ip = None
            return
        spec = obj.get("spec") or {}
        if not isinstance(spec, Mapping):
            raise ObjectError("kube-dns Service spec must be an object")
        ip = spec.get("clusterIP")
        self.service_ip = ip if isinstance(ip, str) and ip not in ("", "None") else None
        self.service_port = _dns_port(spec.get("ports"))

    def apply_slice(self, name: str, obj: Mapping[str, Any] | None) -> None:
        """One kube-dns EndpointSlice, or None when deleted."""
        if obj is None:
            self.slices.pop(name, None)
            return
        port = _dns_port(obj.get("ports"))
        servers = []
        for endpoint in obj.get("endpoints") or []:
            if not isinstance(endpoint, Mapping):
                continue
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            for address in endpoint.get("addresses") or []:
                try:
                    servers.append(host_port(ip_value(str(address)), port))
                except ValueError:
                    continue
        self.slices[name] = tuple(servers)

    def servers(self) -> tuple[ServerRef, ...]:
        out = list(self.static)
        if "kube-dns" in self.enabled and self.service_ip:
            out.append(ServerRef("kube-dns", host_port(self.service_ip, self.service_port)))
        if "coredns" in self.enabled:
            replicas = {r for rs in self.slices.values() for r in rs}
            out += [ServerRef("coredns", r)
                    for r in rendezvous(self.node, replicas, self.replicas_per_node)]
        if "node-local" in self.enabled and self.node_local:
            out.append(ServerRef("node-local", self.node_local))
        return tuple(sorted(set(out)))
