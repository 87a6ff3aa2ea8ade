"""The initial list as the agent reads it: item by item while the body arrives, over a real
socket from an HTTP server of the test's own (the rig's API server serves the same lists in
tests/integration; bench/watch_ingest.py measures the memory at 10,000 slices)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from exporter.core.events import Kind, ObjectEvent, Synced
from exporter.io.kubeconfig import ClusterAccess
from exporter.io.watch import KubeApi, KubeSource, Resource

ITEMS = 5_000


def slice_item(i: int) -> dict[str, object]:
    return {"metadata": {"name": f"svc-{i}-x", "namespace": "ns",
                         "labels": {"kubernetes.io/service-name": f"svc-{i}"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [f"10.{i // 250}.{i % 250}.{k}"], "hostname": f"p{k}",
                           "conditions": {"ready": True}} for k in range(3)],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}


@pytest.fixture
async def api_server() -> AsyncIterator[str]:
    body = json.dumps({"kind": "EndpointSliceList", "apiVersion": "discovery.k8s.io/v1",
                       "metadata": {"resourceVersion": "42"},
                       "items": [slice_item(i) for i in range(ITEMS)]}).encode()

    async def listing(request: web.Request) -> web.StreamResponse:
        if request.query.get("watch"):
            await asyncio.sleep(30)  # a quiet watch
            return web.Response(text="")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for start in range(0, len(body), 256 * 1024):
            await response.write(body[start:start + 256 * 1024])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/apis/discovery.k8s.io/v1/endpointslices", listing)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_the_agent_takes_in_the_list_while_it_arrives(api_server: str) -> None:
    """The consumer runs after every chunk: the items parsed and not yet taken in stay at a
    chunk's worth, never the whole list (which the agent once held at 4 times its JSON)."""
    access = ClusterAccess(api_server, None, False, None, None, None, None, "test")
    waiting: list[int] = []
    names: list[str] = []
    async with aiohttp.ClientSession() as session:
        source = KubeSource(KubeApi(access, session),
                            [Resource(Kind.ENDPOINT_SLICE, "discovery.k8s.io", "endpointslices")],
                            on_restart=lambda reason: None)
        events = source.events()
        async for event in events:
            if isinstance(event, Synced):
                break
            assert isinstance(event, ObjectEvent) and event.type == "ADDED"
            names.append(event.obj["metadata"]["name"])
            waiting.append(source.queue.qsize())
        await events.aclose()
    assert names == [f"svc-{i}-x" for i in range(ITEMS)]
    assert source.watchers[0].resource_version == "42"
    # 64 KiB of JSON holds about 200 of these items: never more than two chunks wait.
    assert max(waiting) <= 400, max(waiting)
