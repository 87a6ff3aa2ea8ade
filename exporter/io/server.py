"""The HTTP edge: the metrics (text or OpenMetrics, gzip when asked), /status and
/api/v1/status, /healthz, /readyz and a landing page.

A render runs on the event loop, from a snapshot taken there: at 1,000 Services it takes
about 1.5 ms (bench/footprint.py), less than a worker thread costs the loop in waits for the
interpreter lock, which doubled the probe round trip's p99 while scraped.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from exporter import __version__
from exporter.core.records import split_address
from exporter.io.statuspage import render
from exporter.io.webconfig import Served

LANDING = """<!doctype html>
<html><head><title>dns-staleness-exporter</title></head>
<body><h1>dns-staleness-exporter {version}</h1>
<ul><li><a href="{metrics}">{metrics}</a></li><li><a href="status">/status</a>: what is stale
now</li><li><a href="api/v1/status">/api/v1/status</a></li>
<li><a href="healthz">/healthz</a></li><li><a href="readyz">/readyz</a></li></ul></body></html>
"""
GZIP_LEVEL = 1
"""Compression on the event loop: level 1 gives most of the gain at a fraction of the cost
of the default 6 (bench/footprint.py)."""


UNGUARDED = frozenset({"/healthz", "/readyz"})
"""The kubelet's probes carry no credential, and these say nothing but ok."""


class ListenError(Exception):
    """The HTTP server cannot bind its address; the message is the one line to print."""


class HttpServer:
    def __init__(self, registry: CollectorRegistry, before_render: Callable[[], None],
                 is_ready: Callable[[], bool],
                 status: Callable[[], Mapping[str, Any]] | None = None,
                 telemetry_path: str = "/metrics", web_config: Served | None = None,
                 authorize: Callable[[str | None, str], Awaitable[int]] | None = None) -> None:
        self.registry = registry
        self.before_render = before_render
        self.is_ready = is_ready
        self.status = status
        self.telemetry_path = telemetry_path
        self.web_config = web_config
        self.authorize = authorize
        """The Kubernetes check of a request's bearer token and path: 200, 401 or 403."""
        self.app = web.Application(
            middlewares=[self._guard] if web_config or authorize else [])
        self.app.add_routes([
            web.get("/", self._landing),
            web.get(telemetry_path, self._metrics),
            web.get("/healthz", self._healthz),
            web.get("/readyz", self._readyz),
        ])
        if status is not None:
            self.app.add_routes([web.get("/status", self._status_page),
                                 web.get("/api/v1/status", self._status_api)])
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def scheme(self) -> str:
        return "https" if self.web_config and self.web_config.ssl_context else "http"

    @web.middleware
    async def _guard(self, request: web.Request,
                     handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        """Basic auth or the Kubernetes check on every path but the probes', and the
        configured headers on every answer."""
        served = self.web_config
        if served is not None:
            served.refresh()
        header = request.headers.get("Authorization")
        status = 200
        if request.path not in UNGUARDED:
            if served is not None:
                allowed = served.check(header)
                if allowed is None and header is not None:
                    allowed = await asyncio.to_thread(served.verify, header)
                status = 200 if allowed else 401
            if status == 200 and self.authorize is not None:
                status = await self.authorize(header, request.path)
        response: web.StreamResponse
        if status == 200:
            response = await handler(request)
        elif status == 401:
            scheme = "Bearer" if self.authorize is not None else \
                'Basic realm="dns-staleness-exporter"'
            response = web.Response(status=401, text="401 Unauthorized\n",
                                    headers={"WWW-Authenticate": scheme})
        else:
            response = web.Response(status=403, text="403 Forbidden\n")
        if served is not None:
            response.headers.update(served.config.headers)
        return response

    async def _landing(self, request: web.Request) -> web.Response:
        return web.Response(text=LANDING.format(version=__version__,
                                                metrics=self.telemetry_path.lstrip("/")),
                            content_type="text/html")

    @staticmethod
    def _reply(request: web.Request, body: bytes, content_type: str) -> web.Response:
        headers = {"Content-Type": content_type, "Vary": "Accept-Encoding"}
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body, GZIP_LEVEL)
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

    async def _metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        self.before_render()
        return self._reply(request, encoder(self.registry), content_type)

    async def _status_api(self, request: web.Request) -> web.Response:
        assert self.status is not None
        return self._reply(request, json.dumps(self.status()).encode(),
                           "application/json; charset=utf-8")

    async def _status_page(self, request: web.Request) -> web.Response:
        assert self.status is not None
        return self._reply(request, render(self.status()).encode(), "text/html; charset=utf-8")

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
        context = self.web_config.ssl_context if self.web_config else None
        site = web.TCPSite(self._runner, host or "0.0.0.0", port, ssl_context=context)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ListenError(f"cannot listen on {listen}: {reason}; pass another "
                              "--web.listen-address, e.g. 127.0.0.1:0 for a free port") from None
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
