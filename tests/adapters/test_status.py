"""The operator's surface on the demo's live agent: /api/v1/status against its schema and
the gauges, /status in a real browser (Debian's chromium), gzip and the telemetry path."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest

from exporter.demo import run_demo
from exporter.settings import load
from tests.adapters.test_demo import free_port

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "status.schema.json").read_text())
CHROMIUM = shutil.which("chromium")
HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]


async def demo(port: int, *flags: str, duration: float = 30) -> AsyncIterator[str]:
    """The demo's agent serving on `port`; yields its base URL once it answers."""
    args = {"duration": str(duration), "listen": f"127.0.0.1:{port}"}
    args.update(zip(flags[::2], flags[1::2], strict=True))
    task = asyncio.create_task(run_demo(load("demo", args, {}, None), io.StringIO()))
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            try:
                async with session.get(f"{base}/readyz") as resp:
                    if resp.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    try:
        yield base
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def identity(window: dict[str, Any]) -> tuple[str, ...]:
    return tuple(window[k] for k in ("kind", "layer", "server", "name", "type", "value"))


async def test_the_status_api_follows_its_schema_and_the_gauges() -> None:
    port = free_port()
    seen_open: set[tuple[str, ...]] = set()
    async for base in demo(port, "status_limit", "5", duration=25):
        async with aiohttp.ClientSession() as session:
            closed: list[dict[str, Any]] = []
            for _ in range(60):
                async with session.get(f"{base}/api/v1/status") as resp:
                    assert resp.headers["Content-Type"].startswith("application/json")
                    doc = await resp.json()
                async with session.get(f"{base}/metrics") as resp:
                    metrics = await resp.text()
                jsonschema.validate(doc, SCHEMA)
                assert len(doc["open_windows"]) <= 5 and len(doc["closed_windows"]) <= 5
                for w in doc["open_windows"]:
                    seen_open.add(identity(w))
                    # Its gauge names the same server.
                    assert f'server="{w["server"]}"' in metrics
                closed = doc["closed_windows"]
                if len(closed) == 5 and seen_open:
                    break
                await asyncio.sleep(0.4)
            assert seen_open and len(closed) == 5
            assert {w["namespace"] for w in closed} == {"demo"}
            stamps = [w["closed_at"] for w in closed]
            assert stamps == sorted(stamps, reverse=True)
            async with session.get(f"{base}/status") as resp:
                page = await resp.text()
                assert resp.headers["Content-Type"].startswith("text/html")
            assert "Open windows" in page and "Closed windows" in page
            assert doc["layers"] and all(layer["up"] for layer in doc["layers"])
            held = doc["internals"]
            assert held["tasks"] >= 3 and held["services"] >= held["targets"] >= 1, held
            assert held["names"] > held["targets"] and held["cells"] >= held["names"], held
            async with session.get(f"{base}/metrics", headers={"Accept-Encoding": "gzip"},
                                   auto_decompress=False) as resp:
                assert resp.headers["Content-Encoding"] == "gzip"
                body = gzip.decompress(await resp.read()).decode()
            assert "dns_staleness_build_info{" in body and "process_cpu_seconds_total" in body
            openmetrics = {"Accept": "application/openmetrics-text; version=1.0.0"}
            async with session.get(f"{base}/metrics", headers=openmetrics) as resp:
                text = await resp.text()
            exemplars = [line for line in text.splitlines()
                         if line.startswith(("dns_staleness_window_seconds_bucket",
                                             "dns_staleness_propagation_seconds_bucket"))
                         and " # {" in line]
            assert exemplars and all('namespace="demo"' in e and "record=" in e
                                     for e in exemplars)


async def test_the_telemetry_path_moves_the_metrics() -> None:
    port = free_port()
    async for base in demo(port, "telemetry_path", "/probe/metrics", duration=5):
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/probe/metrics") as resp:
                assert resp.status == 200 and "dns_staleness_targets" in await resp.text()
            async with session.get(f"{base}/metrics") as resp:
                assert resp.status == 404
            async with session.get(f"{base}/") as resp:
                assert 'href="probe/metrics"' in await resp.text()


class OpenRows(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: set[tuple[str, ...]] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and (a.get("class") or "").split()[:1] == ["open"]:
            self.rows.add(tuple(str(a[f"data-{k}"]) for k in
                                ("kind", "layer", "server", "name", "type", "value")))


def chromium(*args: str, profile: Path) -> str:
    assert CHROMIUM, "Debian's chromium is needed: scripts/rig-install installs it"
    proc = subprocess.run([CHROMIUM, *HEADLESS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


async def test_the_page_in_a_real_browser_lists_the_open_windows_of_the_api(
        tmp_path: Path) -> None:
    """The DOM as Chromium built it, between two reads of the API: every open window the
    page lists was open in one of them, and every one open in both is on the page."""
    port = free_port()
    async for base in demo(port, duration=30):
        async with aiohttp.ClientSession() as session:
            for _ in range(40):
                async with session.get(f"{base}/api/v1/status") as resp:
                    before = {identity(w) for w in (await resp.json())["open_windows"]}
                dom = await asyncio.to_thread(chromium, "--dump-dom", f"{base}/status",
                                              profile=tmp_path / "profile")
                async with session.get(f"{base}/api/v1/status") as resp:
                    after = {identity(w) for w in (await resp.json())["open_windows"]}
                parser = OpenRows()
                parser.feed(dom)
                assert "dns-staleness-exporter status" in dom
                assert parser.rows <= before | after, (parser.rows, before, after)
                assert before & after <= parser.rows, (parser.rows, before, after)
                if parser.rows and before & after:
                    break
                await asyncio.sleep(0.3)
            else:
                pytest.fail("no moment with open windows on the page and in the API")
            shot = tmp_path / "status.png"
            await asyncio.to_thread(chromium, f"--screenshot={shot}", "--window-size=1400,1000",
                                    f"{base}/status", profile=tmp_path / "profile")
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
