"""The fidelity soak: randomized churn against three Corefiles, every agent window held to an
independent checker that polls every server (docs/design.md, "Semantics" and "Windows").

Churn: scale up and down, pod recreation with a new IP, readiness flaps, an IP reused by the
other Service, Service deletion and recreation. The checker (tests/integration/agent.py,
`Checker`) asks each layer for every name every 50 ms and records when each answer changed.
Every window the agent closes must match a change the checker saw on that layer, name and
value (old state to new), at the same time within the window's resolution plus 0.2 s. A
window with no such change is a phantom, and there must be none.

CI runs 1 minute (20 s per Corefile; bench/endurance.py's 10 minutes hold one configuration
to the same checker under faults too); `scripts/soak` runs the long one
(`DSE_SOAK_SECONDS=1200`, 20 minutes)."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agent import SCENARIOS, AgentProcess, Checker, samples, total
from tests.integration.churn import Churn
from tests.rig import CoreDNS, KubeApiServer, KubeClient, Rig, wait_until

pytestmark = pytest.mark.rig

SECONDS = float(os.environ.get("DSE_SOAK_SECONDS", "60"))
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
    churn = Churn(kube, namespace, random.Random(f"{corefile}-{SECONDS}"), SERVICES, PODS,
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
                      churn.names()).start()
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
        # Every cache expires and every window closes, in about 12 s on an idle machine; a
        # loaded one took longer in CI. None may stay open: a truth that expects what CoreDNS
        # never serves would.
        deadline = time.monotonic() + 45.0
        while True:
            left = samples(agent.metrics())
            still_open = total(left, "dns_staleness_stale_records") + total(
                left, "dns_staleness_missing_records")
            if still_open == 0 or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        assert agent.proc is not None and agent.proc.poll() is None, agent.tail()
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
