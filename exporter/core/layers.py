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
from collections.abc import Iterable
from dataclasses import dataclass, field

from exporter.core.objects import DnsServiceState, DnsSliceState
from exporter.core.records import DNS_PORT, ServerRef, ip_value, join_address, with_port


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


SERVICE_LAYERS = frozenset({"kube-dns", "coredns"})
"""Layers found from the cluster DNS Service and its slices, the same servers for every node."""
ALL_REPLICAS = 1_000_000
"""`replicas_per_node` for a one-node view that probes every CoreDNS replica."""


def score(key: str, member: str) -> bytes:
    """The rendezvous score of (key, member): the highest scores win the key."""
    return hashlib.sha256(f"{key}\0{member}".encode()).digest()


def rendezvous(node: str, replicas: Iterable[str], count: int) -> list[str]:
    """The `count` replicas with the highest score for the node."""
    return sorted(sorted(replicas, key=lambda r: score(node, r), reverse=True)[:count])


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
    service_found: bool = False
    """Whether the cluster DNS Service exists: without it there is no kube-dns layer."""

    def apply_service(self, state: DnsServiceState | None) -> None:
        """The cluster DNS Service, or None when deleted."""
        self.service_found = state is not None
        self.service_ip = state.cluster_ip if state else None
        self.service_port = state.port if state else DNS_PORT

    def apply_slice(self, state: DnsSliceState) -> None:
        self.slices[state.name] = state.servers

    def delete_slice(self, name: str) -> None:
        self.slices.pop(name, None)

    @property
    def needs_service(self) -> bool:
        """Whether an enabled layer comes from the cluster DNS Service."""
        return bool(SERVICE_LAYERS & self.enabled)

    def servers(self) -> tuple[ServerRef, ...]:
        out = list(self.static)
        if "kube-dns" in self.enabled and self.service_ip:
            out.append(ServerRef("kube-dns", join_address(self.service_ip, self.service_port)))
        if "coredns" in self.enabled:
            replicas = {r for rs in self.slices.values() for r in rs}
            out += [ServerRef("coredns", r)
                    for r in rendezvous(self.node, replicas, self.replicas_per_node)]
        if "node-local" in self.enabled and self.node_local:
            out.append(ServerRef("node-local", self.node_local))
        return tuple(sorted(set(out)))
