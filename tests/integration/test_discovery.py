"""Layer discovery against the real API server: the CoreDNS replicas come from the kube-dns
EndpointSlices, and a replica that does not answer is a layer that is down, never staleness.

EndpointSlices refuse loopback and link-local addresses, so the "replicas" live in a network
namespace made by the test (tests/integration/netns.py), reached over a veth pair. The kube-dns
Service gets a virtual ClusterIP that nothing serves: the `kube-dns` layer stays disabled."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.agent import AgentProcess, Samples, samples, total
from tests.integration.netns import VethNamespace, veth_namespace
from tests.rig import CoreDNS, KubeApiServer, KubeClient, Rig, api_path, dns_probe, wait_until

pytestmark = pytest.mark.rig

ROOT = Path(__file__).resolve().parents[2]
DNS_NS = "kube-system"
HEADLESS_LABEL = "service.kubernetes.io/headless"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
SLICES = "discovery.k8s.io/v1"
NODE = "rig-node-discovery"


# -- reading the agent's metrics ----------------------------------------------------------



def series(found: Samples, name: str) -> list[dict[str, str]]:
    return [lab for n, lab, _ in found if n == name]


def eventually(agent: AgentProcess, check: Callable[[Samples], bool], what: str,
               timeout: float = 15.0) -> Samples:
    def probe() -> Samples | None:
        found = samples(agent.metrics())
        return found if check(found) else None

    try:
        return wait_until(probe, timeout=timeout, interval=0.1, what=what)
    except TimeoutError:
        raise AssertionError(f"{what}; metrics:\n{agent.metrics()}\nlog:\n{agent.tail()}")\
            from None


# -- the cluster side -------------------------------------------------------------------

@pytest.fixture(scope="module")
def agent_token(kube: KubeClient) -> Iterator[str]:
    """A ServiceAccount bound to exactly the chart's RBAC."""
    tag = uuid.uuid4().hex[:6]
    ns, role = f"dse-disc-{tag}", f"dse-discovery-{tag}"
    kube.create_namespace(ns)
    kube.create_service_account(ns, "agent")
    rules = yaml.safe_load((ROOT / "deploy" / "rbac.yaml").read_text())["rules"]
    kube.grant_cluster_role(role, rules, namespace=ns, service_account="agent")
    token = kube.request_token(ns, "agent")
    reader = kube.with_token(token)
    wait_until(lambda: reader.list(api_path(SLICES, "endpointslices", DNS_NS)) is not None,
               timeout=10, what="the RBAC grant to take effect")
    yield token
    rbac = "rbac.authorization.k8s.io/v1"
    kube.delete(api_path(rbac, "clusterrolebindings", name=role), missing_ok=True)
    kube.delete(api_path(rbac, "clusterroles", name=role), missing_ok=True)
    kube.delete(api_path("v1", "namespaces", name=ns), missing_ok=True)


@pytest.fixture
def netns() -> Iterator[VethNamespace]:
    with veth_namespace(2) as ns:
        yield ns


@dataclass
class KubeDns:
    kube: KubeClient
    slice_name: str
    port: int
    service: dict[str, Any]

    def endpoints(self, endpoints: list[tuple[str, bool]]) -> dict[str, Any]:
        """Replace the slice's endpoints with (address, ready) pairs."""
        path = api_path(SLICES, "endpointslices", DNS_NS, self.slice_name)
        body = self.kube.get(path)
        body["endpoints"] = [{"addresses": [a], "conditions": {"ready": r}}
                             for a, r in endpoints]
        return self.kube.update(path, body)


@pytest.fixture
def kube_dns(kube: KubeClient, netns: VethNamespace) -> Iterator[KubeDns]:
    """The kube-dns Service (selectorless, so its slice is ours) with one hand-made slice
    whose replicas are the namespace's addresses: the first ready, the second not."""
    service_path = api_path("v1", "services", DNS_NS, "kube-dns")
    assert kube.get_or_none(service_path) is None, "a kube-dns Service is left over"
    port = random.randrange(20000, 30000)  # inside a namespace of our own: always free
    service = kube.create(api_path("v1", "services", DNS_NS), {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "labels": {"k8s-app": "kube-dns"}},
        "spec": {"ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": port},
                           {"name": "dns-tcp", "port": 53, "protocol": "TCP",
                            "targetPort": port}]}})
    name = f"kube-dns-{uuid.uuid4().hex[:5]}"
    kube.create(api_path(SLICES, "endpointslices", DNS_NS), {
        "apiVersion": SLICES, "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": {
            SERVICE_NAME_LABEL: "kube-dns",
            "endpointslice.kubernetes.io/managed-by": "dse-test"}},
        "addressType": "IPv4",
        # TCP first: the agent must pick the UDP port named `dns`, not the first one.
        "ports": [{"name": "dns-tcp", "port": port + 1, "protocol": "TCP"},
                  {"name": "dns", "port": port, "protocol": "UDP"}],
        "endpoints": [
            {"addresses": [netns.addresses[0]], "conditions": {"ready": True}},
            {"addresses": [netns.addresses[1]], "conditions": {"ready": False}},
        ]})
    try:
        yield KubeDns(kube, name, port, service)
    finally:
        kube.delete(api_path(SLICES, "endpointslices", DNS_NS, name), missing_ok=True)
        kube.delete(service_path, missing_ok=True)


class NamespacedCoreDNS(CoreDNS):
    """CoreDNS started inside the test's network namespace."""

    def __init__(self, netns: VethNamespace, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.netns = netns

    def command(self) -> list[str]:
        return self.netns.argv(super().command())


def zone_file(namespace: str, ips: list[str]) -> str:
    """What the cluster DNS serves for `web`: A at the Service and each endpoint's dashed
    name, and the SRV of its port at the bare name, the endpoint's name and `_http._tcp`."""
    svc = f"web.{namespace}.svc"
    lines = ["$ORIGIN cluster.local.",
             "@ 30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5",
             "@ 30 IN NS ns.dns.cluster.local."]
    for ip in ips:
        own = f"{ip.replace('.', '-')}.{svc}"
        lines += [f"{svc} 5 IN A {ip}", f"{own} 5 IN A {ip}"]
        lines += [f"{name} 5 IN SRV 0 50 80 {own}.cluster.local."
                  for name in (f"_http._tcp.{svc}", svc, own)]
    return "\n".join(lines) + "\n"


def start_agent(tmp_path: Path, apiserver: KubeApiServer, token: str,
                namespace: str) -> AgentProcess:
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "agent.kubeconfig", token=token,
                                            user="agent")
    return AgentProcess(tmp_path, kubeconfig, [
        "--namespaces", f"{namespace},{DNS_NS}",
        # Only the replicas: the kube-dns ClusterIP is virtual here, and nothing else may be
        # probed from this machine.
        "--layers", "coredns", "--node-name", NODE,
        "--probe-timeout", "0.3", "--fast-interval", "0.1", "--sweep-interval", "2",
        "--probe-budget-qps", "100", "--probe-burst", "10"]).start()


def no_staleness(found: Samples) -> None:
    for name in ("dns_staleness_stale_records", "dns_staleness_missing_records",
                 "dns_staleness_stale_record_age_seconds"):
        assert not series(found, name), (name, series(found, name))
    for name in ("dns_staleness_window_seconds_count", "dns_staleness_propagation_seconds_count",
                 "dns_staleness_window_races_total"):
        assert total(found, name) == 0, (name, found)


def test_coredns_replicas_come_from_the_kube_dns_slices(
        rig_bins: Rig, apiserver: KubeApiServer, kube: KubeClient, namespace: str,
        agent_token: str, kube_dns: KubeDns, netns: VethNamespace, tmp_path: Path) -> None:
    ready, not_ready = netns.addresses
    server = f"{ready}:{kube_dns.port}"
    # The truth: a headless Service with two ready pods, in place before the agent starts.
    kube.create_headless_service(namespace, "web", {"app": "web"})
    ips = {f"web-{i}": f"10.244.99.{10 + i}" for i in range(3)}
    for pod in ("web-0", "web-1"):
        kube.create_pod(namespace, pod, {"app": "web"})
        kube.set_pod_ready(namespace, pod, ips[pod])
    kube.wait_for_endpointslice(namespace, "web", lambda s: sum(
        len(x.get("endpoints") or []) for x in s) == 2)
    # The kube-dns slice is not headless: a Service of its own, never a monitored target.
    dns_slice = kube.get(api_path(SLICES, "endpointslices", DNS_NS, kube_dns.slice_name))
    assert HEADLESS_LABEL not in dns_slice["metadata"]["labels"]
    assert kube_dns.service["spec"]["clusterIP"] not in ("", "None")

    agent = start_agent(tmp_path, apiserver, agent_token, namespace)
    try:
        # The ready replica is probed at the slice's `dns` UDP port; nothing listens there, so
        # the namespace's kernel refuses (or, rate-limited, ignores) every query.
        found = eventually(agent, lambda f: total(
            f, "dns_staleness_probes_total", layer="coredns", result="refused") + total(
            f, "dns_staleness_probes_total", layer="coredns", result="timeout") >= 3,
            "probes of the replica to fail")
        assert series(found, "dns_staleness_layer_up") == [
            {"layer": "coredns", "server": server}]
        assert total(found, "dns_staleness_layer_up", server=server) == 0
        assert total(found, "dns_staleness_probes_total", result="noerror") == 0
        assert not any(not_ready in str(lab) for lab in series(found, "dns_staleness_layer_up"))
        # kube-dns itself is no target: only `web` is monitored.
        assert total(found, "dns_staleness_targets") == 1
        assert f"probing coredns={server}" in agent.tail(400)

        # The truth changes while the only layer is down: a pod leaves. Nothing is stale or
        # missing, and no window opens, however long the layer stays down.
        events = total(found, "dns_staleness_watch_events_total", kind="EndpointSlice")
        kube.delete_pod(namespace, "web-1", grace_seconds=0)
        found = eventually(agent, lambda f: total(
            f, "dns_staleness_watch_events_total", kind="EndpointSlice") > events,
            "the agent to see the slice change")
        probes = total(found, "dns_staleness_probes_total", layer="coredns")
        time.sleep(2.0)  # fast mode probes the changed target every 0.1 s meanwhile
        found = samples(agent.metrics())
        assert total(found, "dns_staleness_probes_total", layer="coredns") >= probes + 5
        assert total(found, "dns_staleness_layer_up", server=server) == 0
        no_staleness(found)

        # A DNS server comes up at the replica's address, serving what the truth says now.
        zone = tmp_path / "db.cluster.local"
        zone.write_text(zone_file(namespace, [ips["web-0"]]))
        responder = NamespacedCoreDNS(
            netns, rig_bins.coredns, tmp_path / "replica",
            f"cluster.local {{\n    bind {ready}\n    file {zone}\n}}\n",
            address=ready, port=kube_dns.port, name="replica")
        responder.start()
        try:
            assert dns_probe(ready, kube_dns.port, f"web.{namespace}.svc.cluster.local",
                             "A") == 0
            found = eventually(agent, lambda f: total(
                f, "dns_staleness_layer_up", server=server) == 1, "the replica to be up")
            time.sleep(1.0)
            found = samples(agent.metrics())
            assert total(found, "dns_staleness_probes_total", layer="coredns",
                         result="noerror") > 0
            no_staleness(found)  # the layer serves the truth: nothing to report

            # The replica leaves the slice: the agent stops probing it, its series goes.
            kube_dns.endpoints([(not_ready, False)])
            found = eventually(agent, lambda f: not series(f, "dns_staleness_layer_up"),
                               "the replica's layer_up series to disappear")
            probes = total(found, "dns_staleness_probes_total", layer="coredns")
            time.sleep(1.0)
            assert total(samples(agent.metrics()), "dns_staleness_probes_total",
                         layer="coredns") == probes
            assert "probing " in agent.tail(50)
        finally:
            responder.stop()
    finally:
        code = agent.stop()
    assert code == 0, agent.tail()


def test_a_record_added_while_the_layer_is_down_is_not_missing(
        apiserver: KubeApiServer, kube: KubeClient, namespace: str, agent_token: str,
        kube_dns: KubeDns, netns: VethNamespace, tmp_path: Path) -> None:
    server = f"{netns.addresses[0]}:{kube_dns.port}"
    kube.create_headless_service(namespace, "web", {"app": "web"})
    kube.create_pod(namespace, "web-0", {"app": "web"})
    kube.set_pod_ready(namespace, "web-0", "10.244.98.10")
    kube.wait_for_endpointslice(namespace, "web", lambda s: sum(
        len(x.get("endpoints") or []) for x in s) == 1)
    agent = start_agent(tmp_path, apiserver, agent_token, namespace)
    try:
        found = eventually(agent, lambda f: total(
            f, "dns_staleness_probes_total", layer="coredns") >= 3 and total(
            f, "dns_staleness_layer_up", server=server) == 0, "the replica to be probed")
        events = total(found, "dns_staleness_watch_events_total", kind="EndpointSlice")
        kube.create_pod(namespace, "web-1", {"app": "web"})
        kube.set_pod_ready(namespace, "web-1", "10.244.98.11")
        eventually(agent, lambda f: total(
            f, "dns_staleness_watch_events_total", kind="EndpointSlice") > events,
            "the agent to see the new endpoint")
        time.sleep(1.5)
        no_staleness(samples(agent.metrics()))
    finally:
        agent.stop()
