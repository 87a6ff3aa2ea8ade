"""A fleet of agents on one machine, for sharding (docs/design.md, "Sharding"): shared by
tests/integration/test_fleet.py and bench/fleet.py.

- Two CoreDNS replicas (the kubernetes plugin against the rig's API server, `prometheus` on)
  on addresses added to `lo` (EndpointSlices refuse loopback addresses), listed in a
  selectorless cluster DNS Service's hand-made slice: the agents' `coredns` layer.
- A node-local cache in front of both (`cache` + `forward` to the two, `prometheus` on), which
  every agent of this machine shares as its node-local.
- Headless targets with hand-made slices, whose endpoints' readiness the churn flaps.
- The agents' own Service, whose slice the harness writes: one endpoint per agent, `nodeName`
  its `--node-name`, added once it is ready and removed when it goes, as the endpoint slice
  controller would.

Queries are counted at the replicas by CoreDNS's own `prometheus` plugin. The node-local's
forwards to each replica are counted at the node-local (`coredns_proxy_request_duration_seconds`,
by `to`) and taken off, so that `direct` is what the agents sent to the replicas themselves.
"""

from __future__ import annotations

import random
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.agent import AgentProcess, samples, total
from tests.integration.netns import local_addresses
from tests.rig import (
    CoreDNS,
    KubeApiServer,
    KubeClient,
    Rig,
    api_path,
    free_port,
    next_loopback_address,
    wait_until,
)
from tests.rig.coredns import cluster_corefile, nodelocal_corefile

SLICES = "discovery.k8s.io/v1"
SERVICE_NAME = "kubernetes.io/service-name"
MANAGED = {"endpointslice.kubernetes.io/managed-by": "dse-fleet"}
DNS_SERVICE = "fleet-dns"
AGENTS = "agents"


def counter(url: str, name: str, **labels: str) -> dict[str, float]:
    """A counter's samples on a CoreDNS metrics page, summed by `to` when it has that label."""
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                key = s.labels.get("to", "")
                out[key] = out.get(key, 0.0) + s.value
    return out


@dataclass
class Dns:
    """The DNS side: the replicas and the node-local, with their metrics pages."""

    replicas: list[CoreDNS]
    nodelocal: CoreDNS
    metrics: dict[str, str]
    """Metrics URL per server's host:port."""

    def received(self) -> dict[str, float]:
        """Queries each replica received, by its host:port."""
        return {r.hostport: sum(counter(self.metrics[r.hostport],
                                        "coredns_dns_requests_total").values())
                for r in self.replicas}

    def forwarded(self) -> dict[str, float]:
        """Queries the node-local forwarded to each replica."""
        sent = counter(self.metrics[self.nodelocal.hostport],
                       "coredns_proxy_request_duration_seconds_count")
        return {r.hostport: sent.get(r.hostport, 0.0) for r in self.replicas}


@contextmanager
def dns_side(rig: Rig, work: Path, api: KubeApiServer) -> Iterator[Dns]:
    with ExitStack() as stack:
        addresses = stack.enter_context(local_addresses(2))
        # A slice lists one port for every endpoint; nothing else binds these new addresses.
        port = free_port(addresses[0], udp=True)
        metrics: dict[str, str] = {}
        replicas = []
        for i, address in enumerate(addresses):
            ready, prom = free_port(address), free_port(address)
            replica = CoreDNS(
                rig.coredns, work / f"replica-{i}", cluster_corefile(
                    address=address, ready_port=ready, apiserver_url=api.url,
                    kubeconfig=api.kubeconfig_path, ttl=5,
                    extra=[f"prometheus {address}:{prom}"]),
                address=address, port=port, ready_port=ready, name=f"replica-{i}")
            stack.callback(replica.stop)
            replicas.append(replica.start())
            metrics[replica.hostport] = f"http://{address}:{prom}/metrics"
        address = next_loopback_address()
        ready, prom = free_port(address), free_port(address)
        local = CoreDNS(
            rig.coredns, work / "nodelocal", nodelocal_corefile(
                address=address, ready_port=ready,
                upstream=" ".join(r.hostport for r in replicas), success_ttl=5, denial_ttl=5,
                extra=[f"prometheus {address}:{prom}"]),
            address=address, port=free_port(address, udp=True), ready_port=ready,
            name="nodelocal")
        stack.callback(local.stop)
        local.start()
        metrics[local.hostport] = f"http://{address}:{prom}/metrics"
        yield Dns(replicas, local, metrics)


def _service(kube: KubeClient, namespace: str, name: str, headless: bool,
             port: tuple[str, int, str] = ("http", 80, "TCP")) -> None:
    """A selectorless Service: its slices are the harness's own."""
    spec: dict[str, Any] = {"ports": [{"name": port[0], "port": port[1], "protocol": port[2]}]}
    if headless:
        spec["clusterIP"] = "None"
    kube.create(api_path("v1", "services", namespace),
                {"metadata": {"name": name}, "spec": spec})


def _slice(kube: KubeClient, namespace: str, service: str, endpoints: list[dict[str, Any]],
           ports: list[dict[str, Any]], headless: bool = False) -> str:
    name = f"{service}-fleet"
    labels = {SERVICE_NAME: service, **MANAGED}
    if headless:
        labels["service.kubernetes.io/headless"] = ""
    kube.create(api_path(SLICES, "endpointslices", namespace), {
        "metadata": {"name": name, "labels": labels}, "addressType": "IPv4",
        "endpoints": endpoints, "ports": ports})
    return name


def publish_dns(kube: KubeClient, namespace: str, dns: Dns) -> None:
    """The cluster DNS Service of the agents (`--kube-dns-service`), its slice the replicas."""
    _service(kube, namespace, DNS_SERVICE, False, ("dns", 53, "UDP"))
    _slice(kube, namespace, DNS_SERVICE,
           [{"addresses": [r.address], "conditions": {"ready": True}} for r in dns.replicas],
           [{"name": "dns", "port": dns.replicas[0].port, "protocol": "UDP"}])


@dataclass
class Targets:
    """`count` headless Services of `pods` endpoints each, and the churn: readiness flaps."""

    kube: KubeClient
    namespace: str
    count: int
    pods: int
    ready: dict[str, list[bool]] = field(default_factory=dict)
    flaps: int = 0

    def create(self) -> Targets:
        for i in range(self.count):
            name = f"svc-{i}"
            _service(self.kube, self.namespace, name, True)
            self.ready[name] = [True] * self.pods
            _slice(self.kube, self.namespace, name, self._endpoints(name),
                   [{"name": "http", "port": 80, "protocol": "TCP"}], headless=True)
        return self

    def _endpoints(self, name: str) -> list[dict[str, Any]]:
        index = int(name.split("-")[1])
        return [{"addresses": [f"10.90.{index}.{10 + k}"], "hostname": f"{name}-{k}",
                 "conditions": {"ready": up}} for k, up in enumerate(self.ready[name])]

    def reset(self) -> None:
        """Every endpoint ready again: each measured span starts from the same state."""
        for name, ready in self.ready.items():
            if not all(ready):
                self.ready[name] = [True] * self.pods
                self._write(name)

    def _write(self, name: str) -> None:
        self.kube.patch(api_path(SLICES, "endpointslices", self.namespace, f"{name}-fleet"),
                        {"endpoints": self._endpoints(name)})

    def flap(self, rng: random.Random) -> None:
        name = rng.choice(sorted(self.ready))
        pod = rng.randrange(self.pods)
        self.ready[name][pod] = not self.ready[name][pod]
        self._write(name)
        self.flaps += 1

    def names(self) -> list[tuple[str, str]]:
        """Every A name: each Service's and each endpoint's."""
        out = []
        for name in sorted(self.ready):
            domain = f"{name}.{self.namespace}.svc.cluster.local."
            out.append((domain, "A"))
            out += [(f"{name}-{k}.{domain}", "A") for k in range(self.pods)]
        return out


@dataclass
class Membership:
    """The agents' own Service and its one slice, written as the endpoint slice controller
    would: an endpoint per ready agent, its node as `nodeName`."""

    kube: KubeClient
    namespace: str
    nodes: list[str] = field(default_factory=list)
    written: float = 0.0
    """When the last write of the slice was sent (wall clock): a handover measured from it
    includes the write itself."""

    def create(self) -> Membership:
        _service(self.kube, self.namespace, AGENTS, False, ("http-metrics", 9897, "TCP"))
        _slice(self.kube, self.namespace, AGENTS, [],
               [{"name": "http-metrics", "port": 9897, "protocol": "TCP"}])
        return self

    def set(self, nodes: list[str]) -> float:
        """The slice's endpoints are now these nodes' agents; returns when it was written."""
        self.nodes = sorted(nodes)
        endpoints = [{"addresses": [f"10.91.0.{10 + i}"], "nodeName": node,
                      "conditions": {"ready": True}} for i, node in enumerate(self.nodes)]
        self.written = time.time()
        self.kube.patch(api_path(SLICES, "endpointslices", self.namespace, f"{AGENTS}-fleet"),
                        {"endpoints": endpoints})
        return self.written


@dataclass
class Fleet:
    """Agent processes of one test, each on a node name of its own."""

    work: Path
    kubeconfig: Path
    targets: str
    dns_namespace: str
    dns: Dns
    members: Membership | None
    """None: the agents do not shard."""
    owners: int = 2
    extra: tuple[str, ...] = ()
    """More flags for every agent."""
    agents: dict[str, AgentProcess] = field(default_factory=dict)

    def args(self, node: str, sharded: bool) -> list[str]:
        args = ["--namespaces", self.targets, "--layers", "coredns,node-local",
                "--node-local-address", self.dns.nodelocal.hostport,
                "--kube-dns-namespace", self.dns_namespace, "--kube-dns-service", DNS_SERVICE,
                "--coredns-replicas-per-node", "2", "--node-name", node,
                "--probe-timeout", "0.5", "--sweep-interval", "5", "--fast-interval", "0.1",
                "--probe-budget-qps", "300", "--probe-burst", "20"]
        if sharded:
            assert self.members is not None
            args += ["--shard-service", f"{self.members.namespace}/{AGENTS}",
                     "--shard-owners", str(self.owners), "--shard-node-local-extra", "1"]
        return [*args, *self.extra]

    def start(self, node: str, sharded: bool = True) -> AgentProcess:
        """Starts an agent and, once it is ready, lists it in the agents' slice."""
        work = self.work / node
        work.mkdir(parents=True, exist_ok=True)
        agent = AgentProcess(work, self.kubeconfig, self.args(node, sharded)).start()
        self.agents[node] = agent
        if sharded and self.members is not None:
            self.members.set([*self.members.nodes, node])
        return agent

    def kill(self, node: str) -> tuple[AgentProcess, float]:
        """kill -9 of an agent, and its endpoint gone from the slice: the agent, and when."""
        agent = self.agents.pop(node)
        assert agent.proc is not None
        agent.proc.kill()
        agent.proc.wait()
        agent.log.close()
        assert self.members is not None
        return agent, self.members.set([n for n in self.members.nodes if n != node])

    def wait_members(self, count: int, timeout: float = 30.0) -> None:
        """Every agent sees `count` members."""
        def agree() -> bool | None:
            return all(total(samples(a.metrics()), "dns_staleness_fleet_members") == count
                       for a in self.agents.values()) or None
        wait_until(agree, timeout=timeout, interval=0.2, what=f"every agent to see {count}")

    def stop(self) -> None:
        """Stops every agent; their logs stay readable."""
        codes = {node: agent.stop() for node, agent in self.agents.items()}
        assert set(codes.values()) <= {0}, codes


@dataclass(frozen=True)
class Load:
    """Queries per second at each replica over a measured span."""

    direct: dict[str, float]
    """Sent by the agents to the replica themselves."""
    via_nodelocal: dict[str, float]
    """Forwarded by the node-local, for the agents' node-local probes that missed its cache."""
    probes: dict[str, float]
    """The agents' own count of their probes, per layer, all agents together."""


def _probes(agents: list[AgentProcess]) -> dict[str, float]:
    out: dict[str, float] = {}
    for agent in agents:
        for name, labels, value in samples(agent.metrics()):
            if name == "dns_staleness_probes_total":
                out[labels["layer"]] = out.get(labels["layer"], 0.0) + value
    return out


def measure(dns: Dns, targets: Targets, agents: list[AgentProcess], seconds: float,
            rng: random.Random, flap_every: float = 1.0) -> Load:
    """The load on the replicas while the churn flaps an endpoint every `flap_every`."""
    before, forwarded, probes = dns.received(), dns.forwarded(), _probes(agents)
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        targets.flap(rng)
        time.sleep(flap_every)
    span = time.monotonic() - started
    after, forwarded_after, probes_after = dns.received(), dns.forwarded(), _probes(agents)
    via = {r: (forwarded_after[r] - forwarded[r]) / span for r in after}
    return Load({r: (after[r] - before[r]) / span - via[r] for r in after}, via,
                {layer: (n - probes.get(layer, 0.0)) / span for layer, n in probes_after.items()})


def fleet_load(dns: Dns, targets: Targets, members: Membership, kubeconfig: Path, work: Path,
               count: int, sharded: bool, owners: int, seconds: float,
               steady: Callable[[Fleet], None] = lambda fleet: None,
               extra: tuple[str, ...] = ()) -> Load:
    """The load of `count` agents, once every one sees the fleet (then `steady` looks at it)
    and a sweep has passed, under the same churn from the same state; they stop after it."""
    targets.reset()
    fleet = Fleet(work, kubeconfig, targets.namespace, targets.namespace, dns,
                  members if sharded else None, owners, extra)
    try:
        for i in range(count):
            fleet.start(f"node-{i}", sharded)
        if sharded:
            fleet.wait_members(count)
        steady(fleet)
        time.sleep(5.0)  # a sweep, so that the share-out is in the load
        return measure(dns, targets, list(fleet.agents.values()), seconds, random.Random(1))
    finally:
        fleet.stop()
        members.set([])
