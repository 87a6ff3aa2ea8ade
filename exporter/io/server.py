"""The HTTP edge: /metrics (text or OpenMetrics), /healthz, /readyz and a landing page.

A render runs on the event loop, from a snapshot taken there: at 1,000 Services it takes
about 1.5 ms (bench/footprint.py), less than a worker thread costs the loop in waits for the
interpreter lock, which doubled the probe round trip's p99 while scraped.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from exporter import __version__
from exporter.core.records import split_address

LANDING = """<!doctype html>
<html><head><title>dns-staleness-exporter</title></head>
<body><h1>dns-staleness-exporter {version}</h1>
<ul><li><a href="metrics">/metrics</a></li><li><a href="healthz">/healthz</a></li>
<li><a href="readyz">/readyz</a></li></ul></body></html>
"""


class ListenError(Exception):
    """The HTTP server cannot bind its address; the message is the one line to print."""


class HttpServer:
    def __init__(self, registry: CollectorRegistry, before_render: Callable[[], None],
                 is_ready: Callable[[], bool]) -> None:
        self.registry = registry
        self.before_render = before_render
        self.is_ready = is_ready
        self.app = web.Application()
        self.app.add_routes([
            web.get("/", self._landing),
            web.get("/metrics", self._metrics),
            web.get("/healthz", self._healthz),
            web.get("/readyz", self._readyz),
        ])
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _landing(self, request: web.Request) -> web.Response:
        return web.Response(text=LANDING.format(version=__version__), content_type="text/html")

    async def _metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        self.before_render()
        body = encoder(self.registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        if self.is_ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    async def start(self, listen: str) -> None:
        """Bind `listen` (`host:port`; an empty host means every interface)."""
        host, port = split_address(listen, None)
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host or "0.0.0.0", port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ListenError(f"cannot listen on {listen}: {reason}; pass another --listen, "
                              "e.g. 127.0.0.1:0 for a free port") from None
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
