"""Server-side selectors of the watch, against the real API server."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from exporter.core.events import Kind, ObjectEvent, SourceEvent
from exporter.io.kubeconfig import from_kubeconfig
from exporter.io.watch import KubeApi, Resource, Watcher, resources
from tests.rig import KubeApiServer, KubeClient

pytestmark = pytest.mark.rig


async def listed(apiserver: KubeApiServer, resource: Resource) -> tuple[list[str], Watcher]:
    seen: list[SourceEvent] = []
    async with aiohttp.ClientSession() as session:
        api = KubeApi(from_kubeconfig(str(apiserver.kubeconfig_path)), session)
        watcher = Watcher(api, resource, seen.append, lambda _: None, watch_timeout=30)
        task = asyncio.create_task(watcher.run())
        await asyncio.wait_for(watcher.listed.wait(), 20)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    names = [e.obj["metadata"]["name"] for e in seen if isinstance(e, ObjectEvent)]
    return names, watcher


async def test_only_headless_services_cross_the_wire(
        apiserver: KubeApiServer, kube: KubeClient, namespace: str) -> None:
    kube.create_headless_service(namespace, "headless", {"app": "a"})
    kube.create(f"/api/v1/namespaces/{namespace}/services", {
        "metadata": {"name": "clusterip"}, "spec": {"ports": [{"port": 80}]}})
    [service] = [r for r in resources((namespace,), "kube-system", "kube-dns")
                 if r.kind == "Service"]
    names, watcher = await listed(apiserver, service)
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
    names, watcher = await listed(apiserver, bogus)
    assert sorted(names) == ["clusterip", "headless"]
    assert watcher.resource.field_selector == ""
