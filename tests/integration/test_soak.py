"""The fidelity soak: randomized churn against three Corefiles, every agent window held to an
independent checker that polls every server (docs/design.md, "Semantics" and "Windows").

Churn: scale up and down, pod recreation with a new IP, readiness flaps, an IP reused by the
other Service, Service deletion and recreation. The checker (tests/integration/agent.py,
`Checker`) asks each layer for every name every 50 ms and records when each answer changed.
Every window the agent closes must match a change the checker saw on that layer, name and
value (old state to new), at the same time within the window's resolution plus 0.2 s. A
window with no such change is a phantom, and there must be none.

CI runs 3 minutes (60 s per Corefile); `scripts/soak` runs the long one
(`DSE_SOAK_SECONDS=1200`, 20 minutes)."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.agent import SCENARIOS, AgentProcess, Checker, samples, total
from tests.rig import CoreDNS, KubeApiServer, KubeClient, Rig, api_path, wait_until

pytestmark = pytest.mark.rig

SECONDS = float(os.environ.get("DSE_SOAK_SECONDS", "180"))
COREFILES = {
    # name: (kubernetes ttl, cluster cache, node-local success TTL or None, plugin options)
    "plain": (5, None, None, []),
    "cached+node-local": (5, 5, 10, []),
    "pod-names+node-local": (5, 3, 5, ["endpoint_pod_names"]),
}
SERVICES = ("alpha", "beta")
PODS = 3
"""Pod names per Service: alpha-0..2; their per-pod names are what the checker polls."""
TOLERANCE = 0.2


@dataclass
class Churn:
    """The test's own model of the cluster, and the random changes it applies."""

    kube: KubeClient
    namespace: str
    rng: random.Random
    pods: dict[str, dict[str, tuple[str, bool]]] = field(default_factory=dict)
    """Per Service: pod name to (IP, ready)."""
    hostnames: bool = True
    """False: pods set no hostname, so with endpoint_pod_names their names are pod names."""
    free: list[str] = field(default_factory=list)
    changes: int = 0

    def __post_init__(self) -> None:
        self.free = [f"10.244.{80 + i // 200}.{10 + i % 200}" for i in range(400)]
        self.rng.shuffle(self.free)

    def _ip(self) -> str:
        return self.free.pop(0)

    def create_service(self, name: str) -> None:
        self.kube.create_headless_service(self.namespace, name, {"app": name})
        self.pods[name] = {}
        for i in range(2):
            self.add_pod(name, f"{name}-{i}")

    def add_pod(self, service: str, pod: str, ip: str | None = None) -> None:
        ip = ip or self._ip()
        self.kube.create_pod(self.namespace, pod, {"app": service},
                             hostname=pod if self.hostnames else None,
                             subdomain=service if self.hostnames else None)
        self.kube.set_pod_ready(self.namespace, pod, ip)
        self.pods[service][pod] = (ip, True)

    def delete_pod(self, service: str, pod: str) -> str:
        ip, _ = self.pods[service].pop(pod)
        self.kube.delete_pod(self.namespace, pod, grace_seconds=0)
        return ip

    def step(self) -> str:
        """One random change; returns what it was."""
        service = self.rng.choice(SERVICES)
        pods = self.pods.get(service)
        if pods is None:
            self.create_service(service)
            return "service recreated"
        absent = [f"{service}-{i}" for i in range(PODS) if f"{service}-{i}" not in pods]
        choice = self.rng.random()
        self.changes += 1
        if choice < 0.25 and absent:
            self.add_pod(service, self.rng.choice(absent))
            return "scale up"
        if choice < 0.45 and pods:
            self.free.append(self.delete_pod(service, self.rng.choice(sorted(pods))))
            return "scale down"
        if choice < 0.6 and pods:
            pod = self.rng.choice(sorted(pods))
            self.free.append(self.delete_pod(service, pod))
            wait_until(lambda: self.kube.get_or_none(
                api_path("v1", "pods", self.namespace, pod)) is None or None, timeout=10,
                what=f"{pod} to go")
            self.add_pod(service, pod)
            return "pod recreated"
        if choice < 0.75 and pods:
            pod = self.rng.choice(sorted(pods))
            ip, ready = pods[pod]
            self.kube.set_pod_ready(self.namespace, pod, ip, ready=not ready)
            pods[pod] = (ip, not ready)
            return "readiness flap"
        if choice < 0.9 and pods and absent:
            other = SERVICES[1 - SERVICES.index(service)]
            donor = self.pods.get(other) or {}
            if donor:
                pod = self.rng.choice(sorted(donor))
                ip = self.delete_pod(other, pod)
                self.add_pod(service, self.rng.choice(absent), ip)  # the IP moves over
                return "IP reused across Services"
        if choice >= 0.97 or not pods:
            for pod in sorted(pods):
                self.free.append(self.delete_pod(service, pod))
            self.kube.delete(api_path("v1", "services", self.namespace, service))
            del self.pods[service]
            return "service deleted"
        self.changes -= 1
        return "nothing"


def names(namespace: str) -> list[tuple[str, str]]:
    out = []
    for service in SERVICES:
        domain = f"{service}.{namespace}.svc.cluster.local."
        out.append((domain, "A"))
        out += [(f"{service}-{i}.{domain}", "A") for i in range(PODS)]
    return out


@pytest.fixture(params=list(COREFILES))
def layers(request: pytest.FixtureRequest, rig_bins: Rig, apiserver: KubeApiServer,
           tmp_path: Path) -> Iterator[tuple[str, dict[str, CoreDNS]]]:
    ttl, cache, local_ttl, options = COREFILES[request.param]
    cluster = CoreDNS.cluster(rig_bins.coredns, tmp_path / "cluster", apiserver=apiserver,
                              ttl=ttl, cache=cache, name="soak-cluster",
                              kubernetes_options=options).start()
    servers = {"coredns": cluster}
    if local_ttl is not None:
        servers["node-local"] = CoreDNS.nodelocal(
            rig_bins.coredns, tmp_path / "nodelocal", upstream=cluster,
            success_ttl=local_ttl, denial_ttl=5, name="soak-nodelocal").start()
    try:
        yield request.param, servers
    finally:
        for server in servers.values():
            server.stop()


def test_every_agent_window_is_one_the_checker_saw(
        layers: tuple[str, dict[str, CoreDNS]], apiserver: KubeApiServer, kube: KubeClient,
        namespace: str, tmp_path: Path) -> None:
    corefile, servers = layers
    duration = SECONDS / len(COREFILES)
    pod_names = "endpoint_pod_names" in COREFILES[corefile][3]
    churn = Churn(kube, namespace, random.Random(f"{corefile}-{SECONDS}"),
                  hostnames=not pod_names)
    for service in SERVICES:
        churn.create_service(service)
    args = ["--namespaces", namespace, "--static-servers",
            f"coredns={servers['coredns'].hostport}", "--probe-budget-qps", "200",
            "--probe-burst", "20", "--sweep-interval", "5"]
    if "node-local" in servers:
        args += ["--layers", "node-local", "--node-local-address",
                 servers["node-local"].hostport]
    else:
        args += ["--layers", ""]
    if pod_names:
        args += ["--endpoint-pod-names", "true"]
    checker = Checker({layer: (s.address, s.port) for layer, s in servers.items()},
                      names(namespace)).start()
    agent = AgentProcess(tmp_path, apiserver.kubeconfig_path, args).start()
    kinds: dict[str, int] = {}
    try:
        wait_until(lambda: total(samples(agent.metrics()), "dns_staleness_probes_total",
                                 result="noerror") >= 20 or None, timeout=30,
                   what="the agent to probe")
        started = time.monotonic()
        while time.monotonic() - started < duration:
            what = churn.step()
            kinds[what] = kinds.get(what, 0) + 1
            time.sleep(churn.rng.uniform(0.3, 2.0))
        time.sleep(12.0)  # every cache expires, every window closes
        assert agent.proc is not None and agent.proc.poll() is None, agent.tail()
        # And none stays open: a truth that expects what CoreDNS never serves would.
        left = samples(agent.metrics())
        still_open = total(left, "dns_staleness_stale_records") + total(
            left, "dns_staleness_missing_records")
    finally:
        code = agent.stop()
        checker.stop()
    assert code == 0, agent.tail()
    windows = [w for w in agent.timed_windows() if w.type == "A"]
    phantoms, worst = [], 0.0
    for w in windows:
        seen = checker.change_near(w.kind, w.layer, w.name, "A", w.value, w.end)
        if seen is None or abs(seen - w.end) > w.resolution + TOLERANCE:
            phantoms.append((w.kind, w.layer, w.name, w.value, round(w.end - started, 3),
                             w.resolution, None if seen is None else round(seen - w.end, 3)))
        else:
            worst = max(worst, abs(seen - w.end))
    SCENARIOS.append((f"soak {corefile}: {churn.changes} changes in {duration:.0f} s",
                      "+".join(servers), f"{len(windows)} windows",
                      f"{len(phantoms)} unmatched", f"max diff {worst:.2f}s"))
    assert churn.changes >= duration / 3, kinds
    assert windows, "the churn closed no window at all"
    assert phantoms == [], phantoms
    assert still_open == 0, [x for x in left if x[0].endswith("_records") and x[2]]
