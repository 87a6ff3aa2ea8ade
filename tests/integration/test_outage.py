"""Windows across failed probes, on the real CoreDNS (docs/design.md, "Windows"): a failure on
one name costs no other name its window, and no window measures an outage."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agent import AgentProcess, samples, total
from tests.rig import CoreDNS, KubeApiServer, KubeClient, Rig, wait_until
from tests.rig.coredns import cluster_corefile

pytestmark = pytest.mark.rig


def coredns(rig_bins: Rig, apiserver: KubeApiServer, workdir: Path, name: str,
            extra: str = "") -> CoreDNS:
    """A cluster CoreDNS (ttl 5, no cache); `extra` goes before its kubernetes plugin."""
    def corefile(address: str, ready_port: int) -> str:
        text = cluster_corefile(address=address, ready_port=ready_port,
                                apiserver_url=apiserver.url,
                                kubeconfig=apiserver.kubeconfig_path)
        return text.replace("    kubernetes ", f"{extra}    kubernetes ", 1)
    return CoreDNS._on_fresh_address(rig_bins.coredns, workdir, name, corefile).start()


@pytest.fixture
def web(kube: KubeClient, namespace: str) -> Iterator[str]:
    kube.create_headless_service(namespace, "web", {"app": "web"})
    kube.create_pod(namespace, "web-0", {"app": "web"}, hostname="web-0", subdomain="web")
    kube.set_pod_ready(namespace, "web-0", "10.244.61.10")
    kube.wait_for_endpointslice(namespace, "web")
    yield f"web.{namespace}.svc.cluster.local."


def agent_for(tmp_path: Path, apiserver: KubeApiServer, namespace: str,
              server: CoreDNS) -> AgentProcess:
    return AgentProcess(tmp_path, apiserver.kubeconfig_path, [
        "--namespaces", namespace, "--layers", "", "--static-servers",
        f"coredns={server.hostport}", "--probe-budget-qps", "200", "--probe-burst", "20",
        "--sweep-interval", "10"]).start()


def test_a_servfail_on_one_name_costs_another_name_no_window(
        rig_bins: Rig, apiserver: KubeApiServer, kube: KubeClient, namespace: str, web: str,
        tmp_path: Path) -> None:
    """The SRV name answers SERVFAIL on every probe, so the server is never up for long;
    a pod added meanwhile must still give its A record's propagation window."""
    broken = (f"    template IN SRV {namespace}.svc.cluster.local {{\n"
              f"        match \"^_http\\._tcp\\.web\\.\"\n        rcode SERVFAIL\n"
              "        fallthrough\n    }\n")
    server = coredns(rig_bins, apiserver, tmp_path / "dns", "servfail-srv", broken)
    agent = agent_for(tmp_path, apiserver, namespace, server)
    try:
        wait_until(lambda: total(samples(agent.metrics()), "dns_staleness_probes_total",
                                 result="servfail") >= 2 or None, timeout=30,
                   what="the SRV name to fail")
        since = len(agent.windows())
        kube.create_pod(namespace, "web-1", {"app": "web"}, hostname="web-1", subdomain="web")
        kube.set_pod_ready(namespace, "web-1", "10.244.61.11")
        window = wait_until(lambda: next(
            (w for w in agent.windows()[since:] if w.kind == "propagation" and w.name == web
             and w.type == "A" and w.value == "10.244.61.11" and w.reference == "watch"),
            None), timeout=30, what="the propagation window of the new pod")
        assert window.seconds < 5, window
    finally:
        code = agent.stop()
        server.stop()
    assert code == 0, agent.tail()


def test_a_removal_across_an_outage_is_a_race_not_a_window(
        rig_bins: Rig, apiserver: KubeApiServer, kube: KubeClient, namespace: str, web: str,
        tmp_path: Path) -> None:
    """CoreDNS stops, a pod goes at once (the agent has not yet seen a probe fail), and
    CoreDNS comes back 4 s later without it. Every probe in between failed: the removal's
    window would be the outage, so it ends as the race `outage`."""
    kube.create_pod(namespace, "web-1", {"app": "web"}, hostname="web-1", subdomain="web")
    kube.set_pod_ready(namespace, "web-1", "10.244.61.11")
    kube.wait_for_endpointslice(namespace, "web", lambda s: sum(
        len(x.get("endpoints") or []) for x in s) == 2)
    server = coredns(rig_bins, apiserver, tmp_path / "dns", "outage")
    agent = agent_for(tmp_path, apiserver, namespace, server)
    try:
        wait_until(lambda: total(samples(agent.metrics()), "dns_staleness_probes_total",
                                 result="noerror") >= 5 or None, timeout=30,
                   what="the agent to probe CoreDNS")
        time.sleep(1.0)  # steady state: fast mode over, probes every few seconds
        since = len(agent.windows())
        server.stop()
        kube.delete_pod(namespace, "web-1", grace_seconds=0)
        time.sleep(4.0)
        server.start()
        wait_until(lambda: total(samples(agent.metrics()), "dns_staleness_window_races_total",
                                 reason="outage") >= 1 or None, timeout=30,
                   what="the removal to end as an outage race")
        time.sleep(1.0)
        windows = [w for w in agent.windows()[since:] if w.value == "10.244.61.11"
                   or w.value.startswith("80 web-1.")]
        assert windows == [], windows
    finally:
        code = agent.stop()
        server.stop()
    assert code == 0, agent.tail()
