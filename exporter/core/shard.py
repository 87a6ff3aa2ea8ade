"""Which targets one agent of the DaemonSet measures when the fleet shares them out.

The members are the agents the fleet sees (the ready endpoints of their own Service). Each
target goes, on the cluster-wide layers (kube-dns and the CoreDNS replicas), to the `k` members
with the highest rendezvous hash of (target, member): every agent that sees the same members
computes the same owners with no coordination, and a member coming or going moves only the
targets it owned or now owns. The node-local layer is each node's own, so every agent probes its
node-local for its own shard plus a sample of the rest, chosen by the same hash, so that every
node's cache is covered by something without every agent asking for everything.

Pure code: no clock, no IO. Not wired into the agent yet (issue 15).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from exporter.core.layers import SERVICE_LAYERS, rendezvous
from exporter.core.records import Target


def _fraction(member: str, target: Target) -> float:
    """A number in [0, 1) fixed by (member, target): which targets a member samples."""
    digest = hashlib.sha256(f"sample\0{member}\0{target}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True, slots=True)
class Shard:
    me: str
    """This agent's member name (its node)."""
    members: frozenset[str]
    """Every member the fleet sees, this one included."""
    k: int
    """Owners of each target on the cluster-wide layers."""
    sample: float = 0.0
    """Share of the targets it does not own that this agent still probes at its node-local."""

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError("k must be at least 1")
        if not 0.0 <= self.sample <= 1.0:
            raise ValueError("sample must be between 0 and 1")

    @property
    def fleet(self) -> frozenset[str]:
        return self.members | {self.me}

    def owners(self, target: Target) -> list[str]:
        """The members that measure `target` on the cluster-wide layers, sorted."""
        return rendezvous(str(target), self.fleet, self.k)

    def cluster_wide(self, target: Target) -> bool:
        return self.me in self.owners(target)

    def node_local(self, target: Target) -> bool:
        return self.cluster_wide(target) or _fraction(self.me, target) < self.sample

    def measures(self, target: Target, layer: str) -> bool:
        """Whether this agent probes `target` on `layer`; other layers (resolv-conf, static
        servers) stay unsharded."""
        if layer in SERVICE_LAYERS:  # every agent reaches the same servers there
            return self.cluster_wide(target)
        if layer == "node-local":
            return self.node_local(target)
        return True

    def budget_share(self, fleet_qps: float) -> float:
        """This agent's part of a fleet-wide query rate for the cluster-wide layers."""
        return fleet_qps / len(self.fleet)

    def handed_over(self, before: Shard, targets: Iterable[Target]) -> list[Target]:
        """Targets this agent measured on the cluster-wide layers under `before` and no longer
        does: their open windows there must end as races, never as samples."""
        return sorted(t for t in targets if before.cluster_wide(t) and not self.cluster_wide(t))
