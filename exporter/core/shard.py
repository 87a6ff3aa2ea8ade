"""Which targets one agent of the DaemonSet measures when the fleet shares them out. Pure code.

The members are the agents the fleet sees (the ready endpoints of their own Service). Each
target goes, on the sharded layers (kube-dns and the CoreDNS replicas), to the `k` members with
the highest rendezvous score of (target, member): every agent that sees the same members
computes the same owners with no coordination, and a member coming or going moves only the
targets it owned or now owns. The node-local layer is each node's own, so every agent probes
its node-local for its own shard plus the `node_local_extra` targets with the highest score of
(member, target) on a second hash: every node's cache is covered by a few names, and no agent
asks for everything. Other layers (resolv-conf, static servers) stay unsharded.

Until the first membership list arrives the agent owns nothing on the sharded layers: probing
everything for the moment that the list takes is the load this module exists to avoid. Nor
does it while others are listed and it is not (it is not ready yet, or going): the others do
not count it either, so counting itself in would make `k + 1` owners. An empty list is a
fleet of one: every agent then measures everything, as unsharded.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field

from exporter.core.layers import SERVICE_LAYERS, score
from exporter.core.records import Target

_Ranked = list[tuple[bytes, str]]
"""A target's owners, highest score first."""


@dataclass
class Shard:
    me: str
    """This agent's member name (its node)."""
    k: int
    """Owners of each target on the sharded layers."""
    node_local_extra: int = 0
    """Targets beyond its own shard that this agent still probes at its node-local."""
    members: frozenset[str] = frozenset()
    """Every member the membership list names."""
    known: bool = False
    """Whether a membership list has arrived."""
    handed_out: int = 0
    """Targets this agent stopped measuring on the sharded layers because of a membership
    change: the targets it handed over."""
    taken_in: int = 0
    """Targets this agent started measuring there because of one."""
    _owners: dict[Target, _Ranked] = field(default_factory=dict)
    _draws: dict[Target, bytes] = field(default_factory=dict)
    """Per target, this agent's score for the node-local extras."""
    _extras: set[Target] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError("k must be at least 1")
        if self.node_local_extra < 0:
            raise ValueError("node_local_extra must be at least 0")

    @property
    def fleet(self) -> frozenset[str]:
        """The members that share the targets out, as every agent with this list sees them."""
        return self.members or frozenset({self.me})

    def _rank(self, target: Target) -> _Ranked:
        key = str(target)
        return heapq.nlargest(self.k, ((score(key, m), m) for m in self.fleet))

    def owners(self, target: Target) -> list[str]:
        """The members that measure `target` on the sharded layers, sorted."""
        ranked = self._owners.get(target)
        if ranked is None:
            ranked = self._rank(target)
        return sorted(m for _, m in ranked)

    def owns(self, target: Target) -> bool:
        if not self.known or self.me not in self.fleet:
            return False
        ranked = self._owners.get(target)
        if ranked is None:
            ranked = self._rank(target)
        return any(m == self.me for _, m in ranked)

    def measures(self, target: Target, layer: str) -> bool:
        """Whether this agent probes `target` on `layer`."""
        if layer in SERVICE_LAYERS:  # the same servers for every node
            return self.owns(target)
        if layer == "node-local":
            return target in self._extras or self.owns(target)
        return True

    def owned(self) -> list[Target]:
        """Targets this agent measures on the sharded layers: its shard."""
        return [t for t in self._owners if self.owns(t)]

    def node_local(self) -> int:
        """Targets this agent measures at its node-local."""
        return sum(1 for t in self._owners if self.measures(t, "node-local"))

    def budget_share(self, fleet_qps: float) -> float:
        """This agent's part of a fleet-wide query rate for the sharded layers."""
        return fleet_qps / len(self.fleet)

    def add(self, target: Target) -> list[Target]:
        """A target to share out; returns the targets whose node-local measure moved."""
        if target in self._owners:
            return []
        self._owners[target] = self._rank(target)
        draw = score(f"node-local\0{target}", self.me)
        self._draws[target] = draw
        if self.node_local_extra == 0:
            return []
        if len(self._extras) < self.node_local_extra:
            self._extras.add(target)
            return [target]
        lowest = min(self._extras, key=self._draws.__getitem__)
        if draw <= self._draws[lowest]:
            return []
        self._extras.discard(lowest)
        self._extras.add(target)
        return sorted({lowest, target})

    def remove(self, target: Target) -> list[Target]:
        """A target gone; returns the others whose node-local measure moved."""
        if self._owners.pop(target, None) is None:
            return []
        del self._draws[target]
        if target not in self._extras:
            return []
        self._extras.discard(target)
        rest = (t for t in self._draws if t not in self._extras)
        best = max(rest, key=self._draws.__getitem__, default=None)
        if best is None:
            return []
        self._extras.add(best)
        return [best]

    def set_members(self, members: Iterable[str]) -> list[Target]:
        """A new view of the fleet; returns the targets whose measure moved on any layer.

        A member joining can only take a place in each target's top `k`: one score each. A
        member leaving reranks only the targets it owned, about `k / n` of them."""
        was_known, before = self.known, self.fleet
        had = {t for t in self._owners if self.owns(t)}
        self.members, self.known = frozenset(members), True
        joined, left = self.fleet - before, before - self.fleet
        for target, ranked in self._owners.items():
            if any(m in left for _, m in ranked):
                ranked = self._rank(target)
            else:
                key = str(target)
                for member in joined:
                    entry = (score(key, member), member)
                    if len(ranked) < self.k or entry > ranked[-1]:
                        ranked = sorted([*ranked, entry], reverse=True)[:self.k]
            self._owners[target] = ranked
        has = {t for t in self._owners if self.owns(t)}
        if was_known:
            self.taken_in += len(has - had)
            self.handed_out += len(had - has)
        return sorted(had ^ has)
