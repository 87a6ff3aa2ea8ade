"""The Kubernetes truth source: list-and-watch over aiohttp, reading raw JSON.

Each watched resource lists once (from the watch cache, resourceVersion=0), then watches from
the list's resourceVersion with bookmarks, and resumes from the last one it saw when the server
ends a watch normally. On 410 Gone it relists at once; on any other failure it backs off like
client-go (0.8 s doubling to 30 s, with jitter) and relists. A relist is delivered as one
Relisted event, so the agent can treat what it missed as a gap rather than invent windows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

import aiohttp

from exporter.core.events import (
    LISTED,
    Kind,
    ObjectEvent,
    Relisted,
    Relisting,
    RestartReason,
    SourceEvent,
    Synced,
)
from exporter.core.objects import (
    HEADLESS_LABEL,
    MANAGED_BY_LABEL,
    SERVICE_NAME_LABEL,
    SLICE_CONTROLLER,
    ListDecoder,
    parse_status,
    parse_watch_event,
)
from exporter.core.records import Target
from exporter.io.kubeconfig import ClusterAccess
from exporter.io.tasks import Background

log = logging.getLogger(__name__)

HEADLESS_SERVICES = "spec.clusterIP=None"
LIST_CHUNK = 64 * 1024
"""Bytes of a list body read at a time: about 30 slices parsed at once, at most."""
RBAC_HINT = ("the chart's ClusterRole grants get, list and watch on services and "
             "discovery.k8s.io/endpointslices")


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message


@dataclass(frozen=True)
class Resource:
    """One list-and-watch: a kind for the agent, an API path, and selectors."""

    kind: Kind
    group: str
    """API group for RBAC messages; "" is the core group."""
    resource: str
    namespace: str | None = None
    label_selector: str = ""
    field_selector: str = ""
    optional_field_selector: bool = False
    """The field selector only saves bytes: drop it if the API server does not support it."""

    @property
    def path(self) -> str:
        base = f"/apis/{self.group}/v1" if self.group else "/api/v1"
        scope = f"/namespaces/{self.namespace}" if self.namespace else ""
        return f"{base}{scope}/{self.resource}"

    def describe(self, verb: str) -> str:
        what = f"{self.group}/{self.resource}" if self.group else self.resource
        where = f"in namespace {self.namespace}" if self.namespace else "at cluster scope"
        # Two watches share the slice resource: the kind tells their log lines apart.
        return f"{verb} {what} {where} ({self.kind} watch)"


def resources(namespaces: tuple[str, ...], dns_namespace: str,
              dns_service: str, namespace_labels: str = "", *, dns: bool = True,
              members: Target | None = None) -> list[Resource]:
    """Headless slices (the controller labels them), the slices without that label that the
    controller did not make (the mirroring controller's and hand-made ones, which CoreDNS
    serves too; the selectors are disjoint, so no slice comes twice), all Services (headless
    is a spec field, not a label), the kube-dns pieces (with `dns`), with `namespace_labels`
    (the kubernetes plugin's option of that name) the Namespaces that CoreDNS exposes, and
    with `members` the slices of the agents' own Service."""
    scopes: tuple[str | None, ...] = namespaces or (None,)
    out = [Resource(Kind.ENDPOINT_SLICE, "discovery.k8s.io", "endpointslices", ns,
                    HEADLESS_LABEL) for ns in scopes]
    out += [Resource(Kind.UNLABELLED_ENDPOINT_SLICE, "discovery.k8s.io", "endpointslices", ns,
                     f"{MANAGED_BY_LABEL}!={SLICE_CONTROLLER},!{HEADLESS_LABEL}")
            for ns in scopes]
    # Kubernetes 1.31+ can select headless Services server-side; older servers answer 400.
    out += [Resource(Kind.SERVICE, "", "services", ns, field_selector=HEADLESS_SERVICES,
                     optional_field_selector=True) for ns in scopes]
    if namespace_labels:
        out.append(Resource(Kind.NAMESPACE, "", "namespaces", label_selector=namespace_labels))
    if dns:  # without the kube-dns and coredns layers, nothing outside `namespaces` is read
        out.append(Resource(Kind.DNS_SERVICE, "", "services", dns_namespace,
                            field_selector=f"metadata.name={dns_service}"))
        out.append(Resource(Kind.DNS_ENDPOINT_SLICE, "discovery.k8s.io", "endpointslices",
                            dns_namespace,
                            f"{SERVICE_NAME_LABEL}={dns_service}"))
    if members is not None:
        out.append(Resource(Kind.MEMBER_ENDPOINT_SLICE, "discovery.k8s.io", "endpointslices",
                            members.namespace, f"{SERVICE_NAME_LABEL}={members.service}"))
    return out


@dataclass
class Backoff:
    """client-go's shape: 0.8 s doubling to a 30 s cap, each wait stretched by up to 100 %."""

    initial: float = 0.8
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    _next: float = 0.0

    def next(self) -> float:
        self._next = self.initial if self._next == 0 else min(self.cap, self._next * 2)
        return self._next * (1 + self.rng.random())

    def reset(self) -> None:
        self._next = 0.0


class KubeApi:
    def __init__(self, access: ClusterAccess, session: aiohttp.ClientSession) -> None:
        self.access, self.session = access, session
        self.ssl = access.ssl_context()

    async def _options(self) -> dict[str, Any]:
        """Per-request options; the credential comes from a thread when it may run an exec
        plugin, which can take a second (a cloud CLI)."""
        access = self.access
        value = await asyncio.to_thread(access.authorization) if access.refreshes \
            else access.authorization()
        headers = {"Accept": "application/json"}
        if value:
            headers["Authorization"] = value
        options: dict[str, Any] = {"headers": headers, "ssl": self.ssl}
        if access.proxy:
            options["proxy"] = access.proxy
        if access.tls_server_name:
            options["server_hostname"] = access.tls_server_name
        return options

    async def _check(self, resp: aiohttp.ClientResponse) -> None:
        if resp.status < 400:
            return
        try:
            body = await resp.json(content_type=None)
        except (ValueError, aiohttp.ClientError):
            body = None
        status = parse_status(body, resp.status, str(resp.reason or ""))
        raise ApiError(resp.status, status.reason, status.message)

    async def get(self, path: str, params: Mapping[str, str]) -> Any:
        url = f"{self.access.server}{path}?{urlencode(params)}"
        async with self.session.get(url, **await self._options()) as resp:
            await self._check(resp)
            return await resp.json(content_type=None)

    async def list(self, path: str, params: Mapping[str, str],
                   each: Callable[[Any], None]) -> str:
        """A list whose items go to `each` as they arrive; returns its resourceVersion. The
        loop turns after every chunk, so the agent takes in what came before the next is read:
        only a chunk's items are ever parsed and waiting (docs/scale.md)."""
        url = f"{self.access.server}{path}?{urlencode(params)}"
        decoder = ListDecoder()
        async with self.session.get(url, **await self._options()) as resp:
            await self._check(resp)
            async for chunk in resp.content.iter_chunked(LIST_CHUNK):
                for item in decoder.feed(chunk):
                    each(item)
                await asyncio.sleep(0)
        for item in decoder.feed(b"", final=True):
            each(item)
        return decoder.resource_version

    async def post(self, path: str, body: Mapping[str, Any]) -> Any:
        options = await self._options()
        async with self.session.post(f"{self.access.server}{path}", json=body,
                                     **options) as resp:
            await self._check(resp)
            return await resp.json(content_type=None)

    async def stream(self, path: str, params: Mapping[str, str],
                     silence: float) -> AsyncIterator[Any]:
        """Watch events, one JSON object per line; ends when the server closes the watch.
        `silence` seconds without a byte means the connection died without closing."""
        url = f"{self.access.server}{path}?{urlencode(params)}"
        timeout = aiohttp.ClientTimeout(total=None, sock_read=silence)
        async with self.session.get(url, timeout=timeout, **await self._options()) as resp:
            await self._check(resp)
            # A line can be a megabyte (a slice of 5,000 endpoints): look for its end only in
            # what arrived, not again in all of it at every chunk.
            buffer = bytearray()
            async for chunk in resp.content.iter_any():
                start, end = 0, chunk.find(b"\n")
                while end >= 0:
                    buffer += chunk[start:end]
                    if buffer.strip():
                        yield json.loads(buffer)
                    buffer.clear()
                    start, end = end + 1, chunk.find(b"\n", end + 1)
                buffer += chunk[start:]


Emit = Callable[[SourceEvent], None]


class Watcher:
    def __init__(self, api: KubeApi, resource: Resource, emit: Emit,
                 on_restart: Callable[[RestartReason], None], watch_timeout: float,
                 rng: random.Random | None = None) -> None:
        self.api, self.resource, self.emit = api, resource, emit
        self.on_restart = on_restart
        self.watch_timeout = watch_timeout
        self.rng = rng or random.Random()
        self.backoff = Backoff(rng=self.rng)
        self.listed = asyncio.Event()
        self.resource_version: str | None = None

    def _selectors(self) -> dict[str, str]:
        params = {}
        if self.resource.label_selector:
            params["labelSelector"] = self.resource.label_selector
        if self.resource.field_selector:
            params["fieldSelector"] = self.resource.field_selector
        return params

    async def _list(self) -> None:
        first = not self.listed.is_set()
        params = {**self._selectors(), "resourceVersion": "0" if first else ""}
        kind = self.resource.kind
        if first:
            self.resource_version = await self.api.list(
                self.resource.path, params, lambda obj: self.emit(ObjectEvent(kind, "ADDED", obj)))
            self.listed.set()
        else:
            self.emit(Relisting(kind))
            self.resource_version = await self.api.list(
                self.resource.path, params, lambda obj: self.emit(ObjectEvent(kind, LISTED, obj)))
            self.emit(Relisted(kind, namespace=self.resource.namespace))

    async def _watch(self) -> None:
        timeout = int(self.watch_timeout * self.rng.uniform(0.8, 1.2))
        params = {**self._selectors(), "watch": "1", "allowWatchBookmarks": "true",
                  "resourceVersion": self.resource_version or "",
                  "timeoutSeconds": str(max(1, timeout))}
        # The server ends the watch after timeoutSeconds: silence past that is a dead peer.
        async for line in self.api.stream(self.resource.path, params, timeout + 30.0):
            event = parse_watch_event(line)
            if event.type == "ERROR":
                status = parse_status(event.obj)
                raise ApiError(status.code, status.reason, status.message)
            if event.resource_version:
                self.resource_version = event.resource_version
            self.emit(ObjectEvent(self.resource.kind, event.type, event.obj))
            if event.type != "BOOKMARK":
                self.backoff.reset()

    async def run(self) -> None:
        while True:
            try:
                if self.resource_version is None:
                    await self._list()
                await self._watch()
                # The server ended the watch after its timeout: it is healthy, so the next
                # failure backs off from the start again, even on a watch that saw no events.
                self.backoff.reset()
                continue  # resume from the last version
            except ApiError as exc:
                if exc.status == 410:
                    self.on_restart(RestartReason.GONE)
                    self.resource_version = None
                    continue
                if exc.status == 400 and self.resource.optional_field_selector:
                    log.info("%s: the API server does not take fieldSelector %s (%s); watching "
                             "without it", self.resource.describe("watch"),
                             self.resource.field_selector, exc.message)
                    self.resource = replace(self.resource, field_selector="",
                                            optional_field_selector=False)
                    self.resource_version = None
                    continue
                reason = self._explain(exc)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                # ValueError is undecodable JSON, or (ObjectError) an envelope that is neither
                # a list nor a watch event: a broken stream either way, so relist.
                log.warning("%s: %s; reconnecting", self.resource.describe("watch"),
                            f"{type(exc).__name__}: {exc}")
                reason = RestartReason.ERROR
            self.on_restart(reason)
            self.resource_version = None
            await asyncio.sleep(self.backoff.next())

    def _explain(self, exc: ApiError) -> RestartReason:
        if exc.status == 403:
            log.error("RBAC denied: cannot %s (%s); %s", self.resource.describe("list/watch"),
                      exc.message, RBAC_HINT)
            return RestartReason.FORBIDDEN
        if exc.status == 401:
            log.error("the API server rejected the credentials from %s (401 %s); check the "
                      "token or certificate", self.api.access.source, exc.message)
            return RestartReason.UNAUTHORIZED
        log.warning("%s: %s; retrying", self.resource.describe("watch"), exc)
        return RestartReason.ERROR


class KubeSource:
    """Every watcher feeding one queue; Synced once all initial lists are in."""

    def __init__(self, api: KubeApi, watch_resources: list[Resource],
                 on_restart: Callable[[RestartReason], None], watch_timeout: float = 300.0,
                 start_jitter: float = 0.0, rng: random.Random | None = None) -> None:
        self.queue: asyncio.Queue[SourceEvent | Exception] = asyncio.Queue()
        self.rng = rng or random.Random()
        self.start_jitter = start_jitter
        self.watchers = [Watcher(api, r, self.queue.put_nowait, on_restart, watch_timeout,
                                 self.rng) for r in watch_resources]

    async def events(self) -> AsyncGenerator[SourceEvent, None]:
        # Jitter spreads a DaemonSet's first lists, so a rollout does not hit the API at once.
        await asyncio.sleep(self.rng.uniform(0, self.start_jitter))
        async with Background() as tasks:
            for watcher in self.watchers:
                tasks.start(self._supervise(watcher), f"watch {watcher.resource.kind}")
            tasks.start(self._await_lists(), "lists")
            while True:
                event = await self.queue.get()
                if isinstance(event, BaseException):
                    raise event
                yield event

    async def _supervise(self, watcher: Watcher) -> None:
        """A watcher only ends by a bug: hand it to the consumer rather than lose it."""
        try:
            await watcher.run()
        except Exception as exc:
            self.queue.put_nowait(exc)

    async def _await_lists(self) -> None:
        await asyncio.gather(*(w.listed.wait() for w in self.watchers))
        self.queue.put_nowait(Synced())
