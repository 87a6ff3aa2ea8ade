"""Smoke tests proving that every rig component is the real thing.

A headless Service with three fake pods (made Ready through the status
subresource) must get an EndpointSlice from the real EndpointSlice controller,
and the real CoreDNS (cluster and node-local) must answer from it.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.rig import (
    LAST_CHANGE_TRIGGER_TIME,
    ClusterDNSFactory,
    CoreDNS,
    Etcd,
    KubeApiError,
    KubeApiServer,
    KubeClient,
    NodeLocalDNSFactory,
    Rig,
    api_path,
    ready_addresses,
    slice_endpoints,
    wait_until,
)
from tests.rig.net import http_request

pytestmark = pytest.mark.rig

SERVICE = "web"
PODS = ("web-0", "web-1", "web-2")


def query(server: CoreDNS, name: str, rdtype: str) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    return dns.query.udp(q, server.address, port=server.port, timeout=2.0)


def rdata_texts(response: dns.message.Message) -> list[str]:
    return [rd.to_text() for rrset in response.answer for rd in rrset]


def a_records(server: CoreDNS, name: str) -> set[str]:
    return set(rdata_texts(query(server, name, "A")))


def srv_records(server: CoreDNS, name: str) -> set[tuple[str, int]]:
    """(target, port) of each SRV record."""
    out: set[tuple[str, int]] = set()
    for text in rdata_texts(query(server, name, "SRV")):
        _priority, _weight, port, target = text.split()
        out.add((target, int(port)))
    return out


def a_equals(server: CoreDNS, name: str, want: set[str]) -> Callable[[], bool]:
    return lambda: a_records(server, name) == want


def eventually(check: Callable[[], bool], *, timeout: float = 10.0, what: str) -> None:
    wait_until(lambda: check() or None, timeout=timeout, interval=0.1, what=what)


def make_headless_web(kube: KubeClient, ns: str) -> dict[str, str]:
    """Service ``web`` + Ready pods web-0..2; return pod name -> IP."""
    kube.create_headless_service(ns, SERVICE, {"app": SERVICE}, ports=[("http", 80, "TCP")])
    subnet = random.randrange(0, 256)
    ips = {pod: f"10.244.{subnet}.{10 + i}" for i, pod in enumerate(PODS)}
    for pod, ip in ips.items():
        kube.create_pod(
            ns,
            pod,
            {"app": SERVICE},
            hostname=pod,
            subdomain=SERVICE,
            container_ports=[("http", 80, "TCP")],
        )
        kube.set_pod_ready(ns, pod, ip)
    return ips


def wait_ready_slice(kube: KubeClient, ns: str, ips: dict[str, str]) -> list[dict[str, Any]]:
    want = set(ips.values())
    return kube.wait_for_endpointslice(
        ns, SERVICE, lambda slices: ready_addresses(slices) == want, timeout=30
    )


def test_binaries_are_the_pinned_versions(
    rig_bins: Rig, etcd: Etcd, apiserver: KubeApiServer
) -> None:
    version = apiserver.client().get("/version")
    assert version["gitVersion"] == rig_bins.kubernetes_version
    status, body = http_request(f"{etcd.client_url}/version")
    assert status == 200
    assert json.loads(body)["etcdserver"] == rig_bins.etcd_version.removeprefix("v")


def test_headless_service_slice_and_dns(
    kube: KubeClient,
    namespace: str,
    coredns_cluster: ClusterDNSFactory,
    coredns_nodelocal: NodeLocalDNSFactory,
) -> None:
    ns = namespace
    ips = make_headless_web(kube, ns)

    # The real EndpointSlice controller publishes the pods.
    slices = wait_ready_slice(kube, ns, ips)
    assert len(slices) == 1
    (eps,) = slices
    assert eps["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == (
        "endpointslice-controller.k8s.io"
    )
    assert LAST_CHANGE_TRIGGER_TIME in eps["metadata"].get("annotations", {})
    assert eps["ports"] == [{"name": "http", "port": 80, "protocol": "TCP"}]
    endpoints = slice_endpoints(slices)
    assert len(endpoints) == 3
    assert all(ep["conditions"]["ready"] is True for ep in endpoints)
    assert {ep["hostname"]: ep["addresses"][0] for ep in endpoints} == ips

    cluster = coredns_cluster(ttl=5)
    nodelocal = coredns_nodelocal(cluster, success_ttl=5, denial_ttl=5)
    fqdn = f"{SERVICE}.{ns}.svc.cluster.local"
    want_srv = {(f"{pod}.{fqdn}.", 80) for pod in PODS}

    for server in (cluster, nodelocal):
        eventually(a_equals(server, fqdn, set(ips.values())), what=f"{server.name}: A {fqdn}")
        assert a_records(server, fqdn) == set(ips.values())
        assert srv_records(server, f"_http._tcp.{fqdn}") == want_srv
        assert a_records(server, f"web-1.{fqdn}") == {ips["web-1"]}
        missing = query(server, f"nope.{ns}.svc.cluster.local", "A")
        assert missing.rcode() == dns.rcode.NXDOMAIN


def test_pod_deletion_leaves_dns_within_ttl(
    kube: KubeClient, namespace: str, coredns_cluster: ClusterDNSFactory
) -> None:
    ns = namespace
    ips = make_headless_web(kube, ns)
    wait_ready_slice(kube, ns, ips)
    ttl = 3
    cluster = coredns_cluster(ttl=ttl, cache=ttl)
    fqdn = f"{SERVICE}.{ns}.svc.cluster.local"
    eventually(a_equals(cluster, fqdn, set(ips.values())), what=f"A {fqdn}")

    # The answer is now in the cache plugin for up to `ttl` seconds.
    kube.delete_pod(ns, "web-1", grace_seconds=0)
    t0 = time.monotonic()
    gone = ips["web-1"]
    eventually(lambda: gone not in a_records(cluster, fqdn), timeout=ttl + 10, what="web-1 gone")
    elapsed = time.monotonic() - t0
    # Bound: the cache's TTL plus watch propagation (API server -> CoreDNS).
    assert elapsed <= ttl + 3.0, f"stale for {elapsed:.2f}s, TTL bound {ttl}s"
    assert a_records(cluster, fqdn) == {ips["web-0"], ips["web-2"]}
    assert ready_addresses(kube.list_endpointslices(ns, SERVICE)) == {ips["web-0"], ips["web-2"]}


def test_graceful_deletion_marks_endpoint_terminating(
    kube: KubeClient, namespace: str, coredns_cluster: ClusterDNSFactory
) -> None:
    ns = namespace
    ips = make_headless_web(kube, ns)
    wait_ready_slice(kube, ns, ips)
    cluster = coredns_cluster(ttl=5)
    fqdn = f"{SERVICE}.{ns}.svc.cluster.local"
    eventually(a_equals(cluster, fqdn, set(ips.values())), what=f"A {fqdn}")

    # Without a kubelet the pod stays Terminating; its endpoint turns terminating.
    kube.delete_pod(ns, "web-2")
    pod = kube.get(api_path("v1", "pods", ns, "web-2"))
    assert pod["metadata"].get("deletionTimestamp")

    def terminating() -> bool:
        for ep in slice_endpoints(kube.list_endpointslices(ns, SERVICE)):
            if ep["addresses"] == [ips["web-2"]]:
                cond = ep["conditions"]
                return bool(cond.get("terminating")) and cond.get("ready") is False
        return False

    eventually(terminating, timeout=30, what="web-2 endpoint terminating")
    eventually(
        lambda: a_records(cluster, fqdn) == {ips["web-0"], ips["web-1"]},
        what="web-2 out of DNS",
    )


def test_service_account_token_and_rbac(kube: KubeClient, namespace: str) -> None:
    """TokenRequest works and RBAC is enforced for a ServiceAccount."""
    ns = namespace
    kube.create_service_account(ns, "reader")
    sa = kube.with_token(kube.request_token(ns, "reader"))
    slices_path = api_path("discovery.k8s.io/v1", "endpointslices", ns)
    with pytest.raises(KubeApiError) as denied:
        sa.list(slices_path)
    assert denied.value.status == 403

    kube.grant_cluster_role(
        f"{ns}-slice-reader",
        [{"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
          "verbs": ["get", "list", "watch"]}],
        namespace=ns,
        service_account="reader",
    )  # fmt: skip
    eventually(lambda: isinstance(sa.list(slices_path), list), what="RBAC grant to apply")
