"""Sharding on the rig (docs/design.md, "Sharding"): agent processes with node names of their
own, one API server, two real CoreDNS replicas and a node-local, the membership from a real
EndpointSlice that the test writes for them (tests/integration/fleet.py).

- The queries at each replica, counted by CoreDNS's `prometheus` plugin, do not grow with the
  fleet when it shards (3 and 6 agents within 10 %), and double without it.
- Every target is measured by exactly `shard_owners` agents in steady state.
- An agent killed and another added during churn: no phantom window (the test's own checker
  polls every server), handovers counted, the handover time measured; the sharded fleet's
  windows agree with an unsharded agent's, measuring the same churn beside it, within the
  probe resolution.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.agent import SCENARIOS, AgentProcess, AgentWindow, Checker, samples, total
from tests.integration.fleet import (
    Dns,
    Fleet,
    Membership,
    Targets,
    dns_side,
    fleet_load,
    publish_dns,
)
from tests.rig import KubeApiServer, KubeClient, Rig

pytestmark = pytest.mark.rig

TARGETS, PODS, OWNERS = 8, 3, 2
TOLERANCE = 0.2
"""The checker polls every 50 ms or so, each server in turn: its own time error."""


@dataclass
class World:
    dns: Dns
    targets: Targets
    members: Membership
    namespace: str
    work: Path
    kubeconfig: Path

    def fleet(self, sharded: bool) -> Fleet:
        return Fleet(self.work, self.kubeconfig, self.namespace, self.namespace, self.dns,
                     self.members if sharded else None, OWNERS)


@pytest.fixture
def world(rig_bins: Rig, apiserver: KubeApiServer, kube: KubeClient, namespace: str,
          tmp_path: Path) -> Iterator[World]:
    with dns_side(rig_bins, tmp_path / "dns", apiserver) as dns:
        publish_dns(kube, namespace, dns)
        yield World(dns, Targets(kube, namespace, TARGETS, PODS).create(),
                    Membership(kube, namespace).create(), namespace, tmp_path,
                    apiserver.kubeconfig_path)


def owners(agents: list[AgentProcess]) -> Counter[str]:
    """How many agents say they measure each target on the cluster-wide layers."""
    found: Counter[str] = Counter()
    for agent in agents:
        shard = agent.status()["shard"]
        assert shard["owned_total"] == len(shard["owned"])
        found.update(f"{t['namespace']}/{t['service']}" for t in shard["owned"])
    return found


def test_the_replicas_load_stays_flat_as_the_fleet_grows(world: World) -> None:
    def steady(fleet: Fleet) -> None:
        """Each target has exactly `OWNERS` agents, whoever asks."""
        if fleet.members is not None:
            assert owners(list(fleet.agents.values())) == Counter(
                {f"{world.namespace}/svc-{i}": OWNERS for i in range(TARGETS)})

    loads = {(count, sharded): fleet_load(
        world.dns, world.targets, world.members, world.kubeconfig, world.work, count, sharded,
        OWNERS, 20.0, steady) for count, sharded in ((3, True), (6, True), (3, False), (6, False))}
    for replica in loads[(3, True)].direct:
        def qps(count: int, sharded: bool, at: str = replica) -> float:
            return loads[(count, sharded)].direct[at]

        SCENARIOS.append((f"fleet: direct qps at {replica}, 3 -> 6 agents", "coredns",
                          "sharded", f"{qps(3, True):.1f} -> {qps(6, True):.1f}",
                          f"unsharded {qps(3, False):.1f} -> {qps(6, False):.1f}"))
        assert 0.9 <= qps(6, True) / qps(3, True) <= 1.1, loads
        assert 1.7 <= qps(6, False) / qps(3, False) <= 2.3, loads
        assert qps(6, True) < 0.6 * qps(6, False), loads


def test_a_fleet_budget_caps_the_cluster_wide_layers_and_only_them(world: World) -> None:
    """3 agents whose shards need about 80 qps at the replicas (the test above), given 30 for
    the whole fleet: 10 each, while their node-local probes keep their pace."""
    shares: list[float] = []

    def steady(fleet: Fleet) -> None:
        shares.extend(total(samples(a.metrics()), "dns_staleness_fleet_budget_share_qps")
                      for a in fleet.agents.values())

    capped = fleet_load(world.dns, world.targets, world.members, world.kubeconfig, world.work,
                        3, True, OWNERS, 15.0, steady, ("--fleet-budget-qps", "30"))
    free = fleet_load(world.dns, world.targets, world.members, world.kubeconfig, world.work,
                      3, True, OWNERS, 15.0)
    assert shares == [10.0, 10.0, 10.0]
    assert sum(capped.direct.values()) <= 30.5, capped
    assert capped.probes["coredns"] <= 30.5 < 0.6 * free.probes["coredns"], (capped, free)
    assert capped.probes["node-local"] >= 0.8 * free.probes["node-local"], (capped, free)
    SCENARIOS.append(("fleet: fleet_budget_qps 30, 3 agents", "coredns", "30 qps",
                      f"{free.probes['coredns']:.1f} qps without",
                      f"{capped.probes['coredns']:.1f} qps with"))


def test_agents_killed_and_added_during_churn_hand_over_without_phantoms(
        world: World) -> None:
    fleet, reference = world.fleet(True), world.fleet(False)
    rng = random.Random(2)
    servers = {r.hostport: (r.address, r.port) for r in world.dns.replicas}
    servers["node-local"] = (world.dns.nodelocal.address, world.dns.nodelocal.port)
    checker = Checker(servers, world.targets.names()).start()

    def churn(seconds: float) -> None:
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            world.targets.flap(rng)
            time.sleep(rng.uniform(0.3, 1.2))

    try:
        for i in range(3):
            fleet.start(f"node-{i}")
        unsharded = reference.start("node-reference", sharded=False)
        fleet.wait_members(3)
        churn(12.0)
        killed, gone = fleet.kill("node-1")
        churn(8.0)
        survivors = list(fleet.agents.values())
        fleet.start("node-3")
        joined = world.members.written
        churn(12.0)
        time.sleep(6.0)  # every window closes: no cache here holds a record past 5 s
        assert owners(list(fleet.agents.values())) == Counter(
            {f"{world.namespace}/svc-{i}": OWNERS for i in range(TARGETS)})
        after = {node: samples(agent.metrics()) for node, agent in fleet.agents.items()}
    finally:
        checker.stop()
        reference.stop()
        fleet.stop()
        world.members.set([])
    # Handover: from the slice's write to the last agent that acted on it.
    took_kill = handover(survivors, gone, 2)
    took_join = handover(survivors, joined, 3)

    def counted(name: str, **labels: str) -> float:
        return sum(total(found, name, **labels) for found in after.values())

    # The survivors took node-1's targets over; the newcomer took some of theirs.
    assert counted("dns_staleness_shard_handovers_total", direction="in") >= 1, after
    assert counted("dns_staleness_shard_handovers_total", direction="out") >= 1, after
    races = counted("dns_staleness_window_races_total", reason="handed_over")
    # Phantoms: every A window of every sharded agent, the killed one's too, must be a change
    # that the checker (which asks the A names) saw on that server, name and value, at the
    # same time.
    windows = [w for a in [*fleet.agents.values(), killed] for w in a.timed_windows()
               if w.type == "A"]
    phantoms = []
    for w in windows:
        layer = "node-local" if w.layer == "node-local" else w.server
        seen = checker.change_near(w.kind, layer, w.name, w.type, w.value, w.end)
        if seen is None or abs(seen - w.end) > w.resolution + TOLERANCE:
            phantoms.append((w, seen))
    assert windows, "the churn closed no window"
    assert phantoms == [], phantoms
    # And the unsharded agent, which measured the same churn, closed the same windows.
    beside = [w for w in unsharded.timed_windows() if w.type == "A"]
    agreed, apart = agreement(windows, beside)
    SCENARIOS.append(("fleet: kill and add during churn", "coredns+node-local",
                      f"handover {took_kill:.3f} s / {took_join:.3f} s",
                      f"{len(windows)} windows, {len(phantoms)} phantoms",
                      f"{agreed} agree with unsharded ({len(beside)}), "
                      f"{races:.0f} handed_over races"))
    assert apart == [], apart
    assert agreed >= 0.8 * len(windows), (agreed, len(windows))
    assert took_kill < 2.0 and took_join < 2.0, (took_kill, took_join)


def handover(agents: list[AgentProcess], since: float, members: int) -> float:
    """Seconds from `since` until the last of `agents` logged the fleet at `members`."""
    latest = 0.0
    for agent in agents:
        seen = [line.wall for line in agent.log_lines()
                if line.msg == "fleet changed" and line.wall >= since - 0.002  # ms stamps
                and line.fields.get("members") == str(members)]
        assert seen, (agent.args, members)
        latest = max(latest, seen[0] - since)
    return latest


def agreement(sharded: list[AgentWindow], unsharded: list[AgentWindow]
              ) -> tuple[int, list[tuple[AgentWindow, AgentWindow]]]:
    """How many of the sharded fleet's windows the unsharded agent also closed, and those
    whose seconds differ by more than the two resolutions allow."""
    agreed, apart = 0, []
    for w in sharded:
        same = [u for u in unsharded if (u.kind, u.layer, u.server, u.name, u.value) ==
                (w.kind, w.layer, w.server, w.name, w.value) and abs(u.end - w.end) < 2.0]
        if not same:
            continue
        u = min(same, key=lambda u: abs(u.end - w.end))
        agreed += 1
        if abs(u.seconds - w.seconds) > u.resolution + w.resolution + 0.05:
            apart.append((w, u))
    return agreed, apart
