"""Server-side selectors of the watch, against the real API server."""

from __future__ import annotations

import pytest

from exporter.core.events import Kind
from exporter.io.watch import Resource, resources
from tests.integration.agent import listed
from tests.rig import KubeApiServer, KubeClient

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


async def test_mirrored_slices_of_hand_written_endpoints_are_watched(
        apiserver: KubeApiServer, kube: KubeClient, namespace: str) -> None:
    kube.create_headless_service(namespace, "headless", {"app": "a"})
    kube.create_endpoints_service(namespace, "external-db", {"10.9.0.1": "primary"})
    watches = {r.kind: r for r in resources((namespace,), "kube-system", "kube-dns")}
    mirrored, _ = await listed(apiserver, watches[Kind.MIRRORED_ENDPOINT_SLICE])
    headless, _ = await listed(apiserver, watches[Kind.ENDPOINT_SLICE])
    owners = [o["metadata"]["labels"]["kubernetes.io/service-name"] for o in mirrored]
    assert owners == ["external-db"]
    # Disjoint selectors: no slice reaches the agent through both watches.
    assert not {o["metadata"]["name"] for o in mirrored} & {
        o["metadata"]["name"] for o in headless}
