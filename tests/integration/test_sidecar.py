"""Sidecar mode on the rig: the agent beside an application, with the application's own
resolver path (a custom dnsConfig: another nameserver, ndots:2, an extra search domain first)
and a namespaced Role only. It probes that nameserver, never the node's node-local, asks the
Service as the application writes it (`web.team`) through the search list as glibc expands
it, and measures the scale-down's window on that path (docs/sidecar.md)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.integration.agent import AgentProcess, LogLine, log_lines, samples, total
from tests.rig import CoreDNS, KubeApiServer, KubeClient, Rig, api_path

pytestmark = pytest.mark.rig

NS = "team"
READ = [{"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
         "verbs": ["get", "list", "watch"]}]


def queried(server: CoreDNS, since: int) -> list[str]:
    """Names the server's `log` plugin recorded after byte `since` of its log."""
    with server.log_path.open() as log:
        log.seek(since)
        return re.findall(r'"(?:A|AAAA|SRV) IN (\S+) ', log.read())


def test_the_sidecar_measures_the_apps_resolver_path(
        rig_bins: Rig, apiserver: KubeApiServer, kube: KubeClient, tmp_path: Path) -> None:
    cluster = CoreDNS.cluster(rig_bins.coredns, tmp_path / "cluster", apiserver=apiserver,
                              ttl=5, cache=5, name="sidecar-cluster")
    cluster.start()
    # The node's node-local cache, and the application's own nameserver of its dnsConfig.
    node = CoreDNS.nodelocal(rig_bins.coredns, tmp_path / "node", upstream=cluster,
                             success_ttl=30, denial_ttl=5, name="sidecar-node", log_queries=True)
    app = CoreDNS.nodelocal(rig_bins.coredns, tmp_path / "app", upstream=cluster,
                            success_ttl=30, denial_ttl=5, name="sidecar-app", log_queries=True)
    # resolv.conf names no port: the app's nameserver listens on 53 of its own loopback address.
    app.port = 53
    node.start()
    app.start()
    agent = None
    try:
        kube.create_namespace(NS)
        kube.create_service_account(NS, "app")
        kube.grant_role("sidecar", READ, namespace=NS, service_account="app")
        kubeconfig = apiserver.write_kubeconfig(tmp_path / "app.kubeconfig",
                                                token=kube.request_token(NS, "app"), user="app")
        for i in range(3):
            kube.create_pod(NS, f"web-{i}", {"app": "web"}, hostname=f"web-{i}",
                            subdomain="web")
            kube.set_pod_ready(NS, f"web-{i}", f"10.244.6.{10 + i}")
        kube.create_headless_service(NS, "web", {"app": "web"})
        kube.wait_for_endpointslice(NS, "web", lambda s: sum(
            len(x.get("endpoints") or []) for x in s) == 3)
        # The pod's resolv.conf as the kubelet writes it from dnsPolicy: None and a dnsConfig.
        resolv = tmp_path / "resolv.conf"
        resolv.write_text(f"nameserver {app.address}\n"
                          f"search corp.svc.cluster.local {NS}.svc.cluster.local "
                          "svc.cluster.local cluster.local\noptions ndots:2\n")
        agent = AgentProcess(tmp_path, Path(kubeconfig), [
            "--namespaces", NS, "--layers", "resolv-conf", "--resolv-conf", str(resolv),
            "--search-names", "true", "--services", f"{NS}/web",
            "--node-local-address", node.hostport,
            "--probe-budget-qps", "100", "--probe-burst", "10", "--sweep-interval", "2",
            "--node-name", "app-pod"])
        agent.start()
        app_from, node_from = app.log_path.stat().st_size, node.log_path.stat().st_size
        time.sleep(5)
        found = samples(agent.metrics())
        up = {labels["server"]: v for name, labels, v in found
              if name == "dns_staleness_layer_up"}
        assert up == {app.hostport: 1.0}, up
        asked = queried(app, app_from)
        # `web.team` has one dot, under ndots:2: the search list first, the extra domain first.
        assert "web.team.corp.svc.cluster.local." in asked, asked
        assert "web.team.team.svc.cluster.local." in asked, asked
        assert "web.team.svc.cluster.local." in asked, asked
        assert queried(node, node_from) == []
        # The scale-down, on the application's path.
        log_from = agent.log_path.stat().st_size
        t0 = time.monotonic()
        kube.delete_pod(NS, "web-2", grace_seconds=0)
        deadline = t0 + 30
        closed: list[LogLine] = []
        while time.monotonic() < deadline and not closed:
            with agent.log_path.open() as log:
                log.seek(log_from)
                closed = [line for line in log_lines(log.read())
                          if line.msg == "stale window closed"
                          and line.fields.get("name") == "web.team"
                          and line.fields.get("value") == "10.244.6.12"]
            time.sleep(0.2)
        assert closed, agent.tail()
        window = closed[0].fields
        fqdn = [line for line in log_lines(agent.log_path.read_text())
                if line.msg == "stale window closed"
                and line.fields.get("name") == f"web.{NS}.svc.cluster.local."
                and line.fields.get("value") == "10.244.6.12"]
        assert fqdn, agent.tail()
        print("\nsidecar with dnsConfig {nameservers: [the app's own], searches: "
              "[corp.svc.cluster.local, team.svc.cluster.local, ...], options: [ndots: 2]}:")
        print(f"  probed: {sorted(up)} (layer resolv-conf); the node's node-local "
              f"{node.hostport} got {len(queried(node, node_from))} queries")
        search = [name for name in asked if name.startswith("web.team.")]
        print(f"  one probe of web.team (A) asked, in order: {search[:3]}")
        print(f"  stale window of 10.244.6.12 as the app writes it (web.team): "
              f"{window['seconds']} s (resolution {window['resolution']} s); at the FQDN: "
              f"{fqdn[0].fields['seconds']} s")
        print("  probes by result: " + ", ".join(
            f"{labels['result']} {v:g}" for name, labels, v in found
            if name == "dns_staleness_probes_total"))
        assert float(window["seconds"]) <= 10 + 1.0  # the app cache's 5 s over the cluster's 5 s
        assert total(found, "dns_staleness_targets") == 1
    finally:
        if agent is not None:
            assert agent.stop() == 0, agent.tail()
        app.stop()
        node.stop()
        cluster.stop()
        for pod in kube.list(api_path("v1", "pods", NS)):
            kube.delete_pod(NS, pod["metadata"]["name"], grace_seconds=0)
