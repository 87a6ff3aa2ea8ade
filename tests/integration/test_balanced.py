"""The kube-dns layer is load-balanced (docs/design.md, "Windows"): two real CoreDNS replicas
whose caches differ, behind one address of a balancer of the test's own (tests/integration/
balancer.py). One removal gives one sample per (layer, question, value), ending when the layer
last served the value, as a client of that address sees it; before, it gave one sample when
the fresh replica answered and another when the cached one did."""

from __future__ import annotations

import time
from pathlib import Path

import dns.message
import dns.query
import pytest

from tests.integration.agent import SCENARIOS, AgentProcess, Checker, samples, total
from tests.integration.balancer import DnsBalancer
from tests.rig import ClusterDNSFactory, CoreDNS, KubeApiServer, KubeClient, wait_until

pytestmark = pytest.mark.rig

GONE = "10.244.71.11"


def ttl(server: CoreDNS, name: str) -> int:
    reply = dns.query.udp(dns.message.make_query(name, "A"), server.address, port=server.port,
                          timeout=1.0)
    return min((rrset.ttl for rrset in reply.answer), default=0)


def received(agent: AgentProcess, target: str, after: float) -> float | None:
    """Wall time of the agent's first log of a truth change of `target` after `after`."""
    for line in agent.log_lines():
        if line.msg.startswith(f"truth of {target} changed") and line.wall >= after - 0.001:
            return line.wall
    return None


def test_one_removal_is_one_window_ending_at_the_last_replica(
        apiserver: KubeApiServer, kube: KubeClient, namespace: str,
        coredns_cluster: ClusterDNSFactory, tmp_path: Path) -> None:
    kube.create_headless_service(namespace, "web", {"app": "web"})
    for i, ip in enumerate(("10.244.71.10", GONE)):
        kube.create_pod(namespace, f"web-{i}", {"app": "web"}, hostname=f"web-{i}",
                        subdomain="web")
        kube.set_pod_ready(namespace, f"web-{i}", ip)
    kube.wait_for_endpointslice(namespace, "web", lambda s: sum(
        len(x.get("endpoints") or []) for x in s) == 2)
    cached = coredns_cluster(ttl=10, cache=10)
    fresh = coredns_cluster(ttl=10)
    balancer = DnsBalancer([(cached.address, cached.port), (fresh.address, fresh.port)]).start()
    domain = f"web.{namespace}.svc.cluster.local."
    checker = Checker({"cached": (cached.address, cached.port),
                       "fresh": (fresh.address, fresh.port)}, [(domain, "A")]).start()
    agent = AgentProcess(tmp_path, apiserver.kubeconfig_path, [
        "--namespaces", namespace, "--layers", "", "--static-servers",
        f"kube-dns={balancer.hostport}", "--probe-budget-qps", "200", "--probe-burst", "20",
        "--sweep-interval", "5"]).start()
    try:
        wait_until(lambda: total(samples(agent.metrics()), "dns_staleness_probes_total",
                                 layer="kube-dns", result="noerror") >= 10 or None,
                   timeout=30, what="the agent to probe through the balancer")
        # Delete just after the cached replica refilled its entry: it then serves the
        # removed record for about 8 s more, far longer than the fresh one.
        wait_until(lambda: ttl(cached, domain) >= 9 or None, timeout=15, interval=0.05,
                   what="the cached replica to refill")
        since = len(agent.windows())
        deleted, offset = time.monotonic(), time.time() - time.monotonic()
        kube.delete_pod(namespace, "web-1", grace_seconds=0)
        # The agent's reference is its receipt of the slice change, which the controller
        # makes some time after the deletion: measure the replicas from there too.
        removed = wait_until(lambda: received(agent, f"{namespace}/web", deleted + offset),
                             timeout=10, what="the agent to see the removal") - offset
        fresh_s = checker.first("fresh", domain, "A", deleted, lacks=GONE) + deleted - removed
        cached_s = checker.first("cached", domain, "A", deleted, lacks=GONE,
                                 timeout=20) + deleted - removed
        assert cached_s > fresh_s + 5, (cached_s, fresh_s)  # the caches do differ
        window = wait_until(lambda: next(
            (w for w in agent.windows()[since:] if w.kind == "stale" and w.name == domain
             and w.type == "A" and w.value == GONE and w.reference == "watch"), None),
            timeout=30, what="the kube-dns layer's window")
        time.sleep(3.0)  # room for a second sample, which must not come
        found = [w for w in agent.windows()[since:] if w.kind == "stale" and w.name == domain
                 and w.type == "A" and w.value == GONE and w.reference == "watch"]
        assert found == [window], found
        # The agent sees the cached replica only on the queries that land there, as a
        # client of the address does: its window ends at its last sighting, never after the
        # replica's end, and 10 answers in a row make missing it for 1 s a 0.1 % event.
        assert window.seconds - window.resolution <= cached_s + 0.2, (window, cached_s)
        assert cached_s - window.seconds <= 1.0, (window, cached_s)
        assert len(set(balancer.picks)) == 2
    finally:
        code = agent.stop()
        checker.stop()
        balancer.stop()
    assert code == 0, agent.tail()
    SCENARIOS.append(("one removal behind a balancer (cache 10 / none)", "kube-dns",
                      "10 s", f"{cached_s:.2f}s", f"{window.seconds:.2f}s"))
