"""`demo`: the stale-record incident, reproduced on loopback and measured by the real pipeline.

The lab plays a headless Service with three StatefulSet pods, a CoreDNS-like server (kubernetes
plugin TTL 5 behind `cache 30`) and a NodeLocal-like cache (`success 30`, `denial 5`, 5 s
floor) that forwards to it. Clients keep both caches warm: the rest of the cluster asks CoreDNS,
this node's pods ask node-local, out of step. The scenario deletes web-2, recreates it with a
new IP, and scales a second Service up from zero, each right after a CoreDNS cache refill.
The same agent as `run` probes both layers; each closed window is printed beside the window
the lab's caches imply.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TextIO

from prometheus_client import CollectorRegistry

from exporter.agent import Agent
from exporter.core.clients import FOREVER
from exporter.core.comparator import PROPAGATION, STALE, Outcome, Window
from exporter.core.events import Kind, ObjectEvent, SourceEvent, Synced
from exporter.core.records import (
    Question,
    ServerRef,
    Target,
    join_address,
    service_domain,
    split_address,
)
from exporter.io.lab import CacheBackend, KubernetesBackend, LabCluster, LabDnsServer, LabPod
from exporter.io.metrics import Metrics
from exporter.io.server import ListenError
from exporter.io.tasks import Background
from exporter.io.webconfig import WebConfigError
from exporter.settings import Settings

NAMESPACE = "demo"
CLIENT_INTERVAL = 0.5
"""How often the lab's clients ask for every name, keeping the caches warm."""
NODE_CLIENTS_START = 2.5
"""This node's pods start asking later than the rest of the cluster."""
FRESH = 0.3
"""A scenario step waits for a CoreDNS cache entry younger than this."""


@dataclass(frozen=True, slots=True)
class Step:
    at: float
    """Fraction of the run's duration."""
    text: str
    apply: Callable[[LabCluster], None]
    service: str
    """Its Service name's A record is the one whose cache refill the step waits for."""


SCENARIO = (
    Step(0.10, "delete pod web-2 (10.0.0.12)",
         lambda c: c.delete_pod(NAMESPACE, "web", "web-2"), "web"),
    Step(0.32, "recreate pod web-2 with a new IP (10.0.0.22)",
         lambda c: c.set_pod(NAMESPACE, "web", LabPod("web-2", "10.0.0.22", hostname="web-2")),
         "web"),
    Step(0.55, "scale queue from 0 to 1 (queue-0, 10.0.1.10)",
         lambda c: c.set_pod(NAMESPACE, "queue", LabPod("queue-0", "10.0.1.10",
                                                        hostname="queue-0")), "queue"),
)


@dataclass(frozen=True, slots=True)
class Measured:
    window: Window
    implied: float | None

    @property
    def diff(self) -> float | None:
        return None if self.implied is None else self.window.seconds - self.implied


class Incident:
    """The incident staged on the lab: its cluster, both caches, their servers and clients."""

    def __init__(self, zone: str) -> None:
        self.queue: asyncio.Queue[SourceEvent] = asyncio.Queue()
        self.cluster = LabCluster(zone, self._emit)
        kube = KubernetesBackend(self.cluster, ttl=5)
        self.caches = {
            "coredns": CacheBackend(kube, success=30, denial=30),
            "node-local": CacheBackend(kube, success=30, denial=5),
        }
        self.caches["node-local"].upstream = self.caches["coredns"]
        self.servers = {layer: LabDnsServer(cache, zone) for layer, cache in self.caches.items()}

    def _emit(self, kind: Kind, type_: str, obj: dict[str, Any]) -> None:
        self.queue.put_nowait(ObjectEvent(kind, type_, obj))

    async def events(self) -> AsyncIterator[SourceEvent]:
        while True:
            yield await self.queue.get()

    async def start(self) -> list[ServerRef]:
        refs = []
        for index, (layer, server) in enumerate(self.servers.items()):
            host = f"127.0.10.{index + 1}"
            try:
                refs.append(ServerRef(layer, await server.start(host)))
            except OSError as exc:
                raise ListenError(f"the demo's {layer} server cannot listen on {host}: "
                                  f"{exc.strerror or exc}; the demo needs the loopback range "
                                  "127.0.0.0/8") from None
        self.cluster.add_service(NAMESPACE, "web")
        for i in range(3):
            self.cluster.set_pod(NAMESPACE, "web",
                                 LabPod(f"web-{i}", f"10.0.0.{10 + i}", hostname=f"web-{i}"))
        self.cluster.add_service(NAMESPACE, "queue")
        self.queue.put_nowait(Synced())
        return refs

    def names(self) -> list[Question]:
        """Every name a client of the lab's Services may ask for, including retired ones."""
        cluster, names = self.cluster, set()
        for service in cluster.services.values():
            domain = cluster.domain(service)
            names |= set(cluster.answers(service)) | {
                Question(domain, "A"), Question(domain, "SRV")} | {
                Question(f"_{name}._{proto.lower()}.{domain}", "SRV")
                for name, _, proto in service.ports}
            names |= {c.question for c in cluster.changes if c.question.name.endswith(domain)}
        return sorted(names)

    async def clients(self) -> None:
        """Applications: the rest of the cluster asks CoreDNS directly, this node's pods ask
        node-local, starting a little later, so the two caches refill out of step as they do
        in a real cluster."""
        started = time.monotonic()
        while True:
            for question in self.names():
                self.caches["coredns"].resolve(question)
                if time.monotonic() - started >= NODE_CLIENTS_START:
                    self.caches["node-local"].resolve(question)
            await asyncio.sleep(CLIENT_INTERVAL)

    async def fresh_fill(self, question: Question, limit: float = 6.0) -> None:
        """Wait until CoreDNS's cache has just refilled `question`: a change right after a
        refill is served stale for the cache's whole lifetime, the case worth showing."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            entry = self.caches["coredns"].entries.get(question)
            if entry is not None and time.monotonic() - entry[1] < FRESH:
                return
            await asyncio.sleep(0.01)

    def implied(self, window: Window) -> float | None:
        """The window the lab's caches imply for the change behind a measured window."""
        added = window.kind == PROPAGATION
        changes = [c for c in self.cluster.changes if c.question == window.question]
        behind = [c for c in changes if c.value == window.value and c.added == added]
        if not behind:
            return None
        change = behind[-1]
        later = [c.time for c in changes if c.time > change.time]
        end = self.caches[window.server.layer].implied_end(
            window.question, window.value, served=not added, since=change.time,
            until=min(later, default=float("inf")))
        return 0.0 if end is None else max(0.0, end - change.time)

    def close(self) -> None:
        for server in self.servers.values():
            server.close()


def _short(window: Window) -> str:
    name = window.question.name.removesuffix(f".{NAMESPACE}.svc.cluster.local.")
    return f"{name} {window.question.rtype} {window.value.replace('.svc.cluster.local.', '')}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:6.2f}s"


class View:
    """The live terminal view; plain lines when the output is not a terminal."""

    def __init__(self, out: TextIO, incident: Incident, agent: Agent, started: float) -> None:
        self.out, self.incident, self.agent, self.started = out, incident, agent, started
        self.live = out.isatty()
        self.timeline: list[str] = []
        self.closed: list[Measured] = []
        self.races = 0

    def stamp(self) -> str:
        return f"[{time.monotonic() - self.started:5.1f}s]"

    def event(self, text: str) -> None:
        self._line(f"{self.stamp()} event: {text}")

    def _line(self, text: str) -> None:
        self.timeline.append(text)
        if not self.live:
            print(text, file=self.out, flush=True)

    def on_outcome(self, outcome: Outcome) -> None:
        self.races += len(outcome.races)
        for window in outcome.windows:
            if window.reference != "watch":
                continue
            measured = Measured(window, self.incident.implied(window))
            self.closed.append(measured)
            self._line(
                f"{self.stamp()} closed {window.kind:<11} {window.server.layer:<10} "
                f"{_short(window):<44} measured {_seconds(window.seconds)} "
                f"implied {_seconds(measured.implied)}")

    def open_rows(self) -> list[str]:
        rows = []
        for w in sorted(self.agent.comparator.open_detail(time.monotonic()),
                        key=lambda w: (w.server.layer, w.kind, str(w.question), w.value)):
            kind = "stale" if w.kind == STALE else "missing"
            rows.append(f"  {w.server.layer:<10} {kind:<8} {w.question.name:<40} "
                        f"{w.question.rtype:<4} {w.value:<38} {w.age:6.1f}s")
        return rows

    def redraw(self, remaining: float) -> None:
        lines = [f"dns-staleness-exporter demo: {remaining:4.0f}s left "
                 f"(stale = served but gone from the truth; missing = in the truth, not served)",
                 "", "timeline:", *self.timeline[-14:], "", "open windows now:",
                 *(self.open_rows() or ["  none: every layer agrees with the truth"])]
        self.out.write("\x1b[H\x1b[J" + "\n".join(lines) + "\n")
        self.out.flush()

    def client_rows(self) -> list[str]:
        """The longest closed stale window per layer, as each client profile sees it."""
        stale = [m.window for m in self.closed if m.window.kind == STALE]
        layers = sorted({w.server.layer for w in stale})
        if not stale or not self.agent.clients:
            return []
        rows = ["", "what clients see: the longest stale window per layer, with the client's "
                "own cache (docs/metrics.md, \"Client profiles\")",
                f"{'client':<22}" + "".join(f"{layer:>12}" for layer in layers)]
        for profile in (None, *self.agent.clients):
            cells = []
            for layer in layers:
                worst = max((w.seconds if profile is None else profile.seconds(w))
                            for w in stale if w.server.layer == layer)
                cells.append(f"{'forever' if worst == FOREVER else f'{worst:.2f}s':>12}")
            rows.append(f"{'(the layer itself)' if profile is None else profile.name:<22}"
                        + "".join(cells))
        return rows

    def summary(self, fast_interval: float) -> str:
        header = (f"{'layer':<10} {'kind':<11} {'record':<46} {'measured':>9} "
                  f"{'implied':>9} {'diff':>8}")
        rows = [header, "-" * len(header)]
        within = 0
        for m in self.closed:
            w = m.window
            ok = m.diff is not None and -0.05 <= m.diff <= fast_interval + 0.05
            within += ok
            rows.append(f"{w.server.layer:<10} {w.kind:<11} {_short(w):<46} "
                        f"{_seconds(w.seconds):>9} {_seconds(m.implied):>9} "
                        f"{_seconds(m.diff):>8}{'' if ok else '  <- off'}")
        rows += self.client_rows()
        open_now = list(self.agent.comparator.open_detail(time.monotonic()))
        rows += ["", f"{within} of {len(self.closed)} closed windows lie within one fast-mode "
                 f"interval ({fast_interval:g}s) of the window the lab's caches imply.",
                 f"races (windows ended by the truth moving again): {self.races}; "
                 f"windows still open: {len(open_now)}; "
                 f"probes deferred by the budget: {self.agent.scheduler.deferred_total}"]
        return "\n".join(rows)


async def run_demo(settings: Settings, out: TextIO = sys.stdout,
                   stop: asyncio.Event | None = None) -> list[Measured]:
    stop = stop or asyncio.Event()
    incident = Incident(settings.zone)
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    servers = await incident.start()
    agent = Agent(settings, servers, metrics)
    agent.node = "demo"
    try:
        http = agent.http_server(registry)
        await http.start(settings.listen)
    except (ListenError, WebConfigError):
        incident.close()
        raise
    started = time.monotonic()
    view = View(out, incident, agent, started)
    agent.outcome_listeners.append(view.on_outcome)
    host = split_address(settings.listen, None)[0] or "127.0.0.1"
    print(f"demo: lab DNS servers {', '.join(f'{s.layer}={s.address}' for s in servers)}; "
          f"metrics at {http.scheme}://{join_address(host, http.port)}{settings.telemetry_path}, "
          f"what is stale now at {http.scheme}://{join_address(host, http.port)}/status; running "
          f"{settings.duration:g}s at {settings.probe_budget_qps:g} qps", file=out, flush=True)

    async def script() -> None:
        for step in SCENARIO:
            await asyncio.sleep(max(0.0, started + step.at * settings.duration - time.monotonic()))
            target = Target(NAMESPACE, step.service)
            await incident.fresh_fill(Question(service_domain(target, settings.zone), "A"))
            step.apply(incident.cluster)
            view.event(step.text)

    deadline = started + settings.duration
    try:
        async with Background() as tasks:
            tasks.start(agent.run(incident.events(), stop), "agent")
            tasks.start(incident.clients(), "clients")
            tasks.start(script(), "script")
            while not stop.is_set() and time.monotonic() < deadline:
                if view.live:
                    view.redraw(deadline - time.monotonic())
                await tasks.wait(stop, min(0.5, max(0.0, deadline - time.monotonic())))
    finally:
        stop.set()
        await http.stop()
        incident.close()
    print("\n" + view.summary(settings.fast_interval), file=out, flush=True)
    return view.closed
