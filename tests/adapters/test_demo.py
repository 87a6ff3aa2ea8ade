"""`demo` end to end: the lab's incident, measured by the real pipeline, against what the lab's
cache configuration implies."""

from __future__ import annotations

import asyncio
import io
import socket

import aiohttp

from exporter.core.comparator import PROPAGATION, STALE
from exporter.demo import run_demo
from exporter.settings import load


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_demo_measures_every_window_within_one_fast_interval() -> None:
    port = free_port()
    settings = load("demo", {"duration": "40", "listen": f"127.0.0.1:{port}"}, {}, None)
    out = io.StringIO()
    demo = asyncio.create_task(run_demo(settings, out))
    gauges: set[str] = set()
    async with aiohttp.ClientSession() as session:
        while not demo.done():
            await asyncio.sleep(0.5)
            try:
                async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    for line in (await resp.text()).splitlines():
                        if line.startswith(("dns_staleness_stale_records{",
                                            "dns_staleness_missing_records{")):
                            gauges.add(line.split("{")[0] + line.split("}")[0].split("layer=")[1])
            except aiohttp.ClientError:
                pass
    measured = await demo
    text = out.getvalue()
    assert "event: delete pod web-2 (10.0.0.12)" in text
    assert "event: scale queue from 0 to 1" in text
    kinds = {(m.window.server.layer, m.window.kind) for m in measured}
    assert kinds == {(layer, kind) for layer in ("coredns", "node-local")
                     for kind in (STALE, PROPAGATION)}
    assert len(measured) >= 12
    for m in measured:
        assert m.diff is not None and -0.05 <= m.diff <= settings.fast_interval + 0.05, m
    assert f"{len(measured)} of {len(measured)} closed windows lie within" in text
    # While windows were open, the per-service gauges showed them on both layers.
    assert {g.split('"')[1] for g in gauges} == {"coredns", "node-local"}
