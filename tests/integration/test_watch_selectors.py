"""Server-side selectors of the watch, against the real API server."""

from __future__ import annotations

import pytest

from exporter.core.events import Kind
from exporter.core.objects import MANAGED_BY_LABEL as MANAGED_BY
from exporter.core.objects import parse_slice
from exporter.io.watch import Resource, resources
from tests.integration.agent import listed
from tests.rig import KubeApiServer, KubeClient, api_path, wait_until

pytestmark = pytest.mark.rig


async def test_only_headless_services_cross_the_wire(
        apiserver: KubeApiServer, kube: KubeClient, namespace: str) -> None:
    kube.create_headless_service(namespace, "headless", {"app": "a"})
    kube.create(f"/api/v1/namespaces/{namespace}/services", {
        "metadata": {"name": "clusterip"}, "spec": {"ports": [{"port": 80}]}})
    [service] = [r for r in resources((namespace,), "kube-system", "kube-dns")
                 if r.kind == "Service"]
    objects, watcher = await listed(apiserver, service)
    names = [o["metadata"]["name"] for o in objects]
    assert names == ["headless"]
    assert watcher.resource.field_selector == "spec.clusterIP=None"


async def test_an_unsupported_optional_selector_falls_back_to_all(
        apiserver: KubeApiServer, kube: KubeClient, namespace: str) -> None:
    kube.create_headless_service(namespace, "headless", {"app": "a"})
    kube.create(f"/api/v1/namespaces/{namespace}/services", {
        "metadata": {"name": "clusterip"}, "spec": {"ports": [{"port": 80}]}})
    # A field this API server cannot select on: the same 400 an older server gives.
    bogus = Resource(Kind.SERVICE, "", "services", namespace, field_selector="spec.bogus=1",
                     optional_field_selector=True)
    objects, watcher = await listed(apiserver, bogus)
    names = [o["metadata"]["name"] for o in objects]
    assert sorted(names) == ["clusterip", "headless"]
    assert watcher.resource.field_selector == ""


async def test_slices_without_the_headless_label_are_watched_unless_the_controller_made_them(
        apiserver: KubeApiServer, kube: KubeClient, namespace: str) -> None:
    """The mirroring controller's slices of hand-written Endpoints and hand-made slices, with
    or without a managed-by label: CoreDNS serves them all. Not the controller's slices of a
    Service with a cluster IP, the bulk of a cluster's slices."""
    kube.create_headless_service(namespace, "headless", {"app": "a"})
    kube.create(api_path("v1", "services", namespace), {
        "metadata": {"name": "clusterip"},
        "spec": {"selector": {"app": "b"}, "ports": [{"port": 80}]}})
    kube.create_endpoints_service(namespace, "external-db", {"10.9.0.1": "primary"})
    for name, managed_by in (("by-hand", {}), ("by-tool", {MANAGED_BY: "some-tool"})):
        kube.create(api_path("v1", "services", namespace), {
            "metadata": {"name": name},
            "spec": {"clusterIP": "None", "ports": [{"name": "db", "port": 5432}]}})
        kube.create(api_path("discovery.k8s.io/v1", "endpointslices", namespace), {
            "metadata": {"name": f"{name}-1",
                         "labels": {"kubernetes.io/service-name": name, **managed_by}},
            "addressType": "IPv4", "endpoints": [{"addresses": ["10.9.0.2"]}],
            "ports": [{"name": "db", "port": 5432}]})
    controller = wait_until(lambda: kube.list_endpointslices(namespace, "clusterip") or None,
                            timeout=30, what="the controller's slice of the ClusterIP Service")
    assert controller[0]["metadata"]["labels"][MANAGED_BY] == "endpointslice-controller.k8s.io"
    watches = {r.kind: r for r in resources((namespace,), "kube-system", "kube-dns")}
    unlabelled, _ = await listed(apiserver, watches[Kind.UNLABELLED_ENDPOINT_SLICE])
    headless, _ = await listed(apiserver, watches[Kind.ENDPOINT_SLICE])
    owners = sorted(o["metadata"]["labels"]["kubernetes.io/service-name"] for o in unlabelled)
    assert owners == ["by-hand", "by-tool", "external-db"]
    assert all(parse_slice(o).unlabelled for o in unlabelled)
    assert not any(parse_slice(o).unlabelled for o in headless)
    # Disjoint selectors: no slice reaches the agent through both watches.
    assert not {o["metadata"]["name"] for o in unlabelled} & {
        o["metadata"]["name"] for o in headless}
