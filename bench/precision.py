"""Precision per query: the agent's windows and queries beside a fixed 100 ms poller.

Starts etcd, kube-apiserver and a real CoreDNS pair from the rig (docs/rig.md): cluster CoreDNS
with `kubernetes ttl 30` and `cache 30`, and node-local with `success 9984 30` and
`denial 9984 5` forwarding to it. In one process it runs the agent (`exporter.agent.Agent` on
its real watch and probe engine, default budget and settings) and the peer, a poller that asks
the same names of the same servers every 100 ms, the way ClusterLoader2's DNS probe does. A
checker in a process of its own, with its own DNS code, asks every name of each server every
20 ms and owns the truth of each window: when each layer really stopped serving a removed
record or started serving an added one.

Scenarios, each on a Service of its own, slices written through the API: a scale-down of one
pod of 3 and back up; a rolling restart of a 50-pod StatefulSet (each pod gone, then back with a
new IP); a scale-up from zero behind a cached NXDOMAIN and back down. Per scenario and layer it
prints the agent's closed windows, the median and p99 error of the agent's and the poller's
window ends against the checker, and queries per closed window with the poller's ratio to the
agent. Queries are also counted at the servers, by CoreDNS's own `prometheus` plugin: the agent
asks over IPv4, everyone else (checker, poller, node-local's upstream) over IPv6, so the IPv4
count is the agent's alone.

    .venv/bin/python -m bench.precision            # about 12 minutes
    .venv/bin/python -m bench.precision --quick    # about 6 minutes: one round, 10-pod restart
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import select
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import dns.message
import dns.rcode
import dns.rdatatype
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bench.report import section, table
from bench.rig import start_api
from exporter.agent import Agent
from exporter.core.comparator import Outcome, Window
from exporter.core.dnsmsg import QueryWire
from exporter.core.records import Question, ServerRef, Target
from exporter.io.kubeconfig import discover
from exporter.io.metrics import Metrics
from exporter.io.probe import Prober, ProbeResult
from exporter.io.watch import KubeApi, KubeSource, resources
from exporter.settings import Settings
from tests.dnsref import reference_reduce
from tests.rig import (
    CoreDNS,
    KubeApiServer,
    KubeClient,
    Rig,
    api_path,
    cluster_corefile,
    free_port,
    next_loopback_address,
    nodelocal_corefile,
)

NS = "precision"
DOMAIN = f"{NS}.svc.cluster.local."
POLL = 0.1
CHECK = 0.02
STAGGER = 30.0
"""The checker and the poller each start asking a name at a random instant in their first
30 s: asking every name at once would refetch every expired cache entry in the same tick,
and then all of them expire together for ever after, a pattern of the measurement's own
making (see "Synchronized expiries" in docs/benchmarks.md)."""
SETTLE = 40.0
"""Seconds after a change until every layer serves it: cache 30 over ttl 30, then node-local's
own entry, fetched from the upstream's with its remaining TTL (docs/check.md)."""
LAYERS = ("coredns", "node-local")

History = dict[tuple[str, str, str], list[tuple[float, frozenset[str]]]]
"""Per (layer, name, type): (receipt time, answer) at every change of the answer."""


def log(text: str) -> None:
    print(f"precision: {text}", file=sys.stderr, flush=True)


def record(history: History, key: tuple[str, str, str], at: float,
           values: frozenset[str]) -> None:
    """Keep `values` if the answer changed."""
    seen = history.setdefault(key, [])
    if not seen or seen[-1][1] != values:
        seen.append((at, values))


# -- the checker: a process of its own, with dnspython's parser, not the agent's ------------


def checker_main(conn: Connection, servers: list[tuple[str, int, str]],
                 names: list[tuple[str, str]], interval: float, stagger: float) -> None:
    """Every `interval`, every name of every server, each from a random instant in the first
    `stagger` seconds; sends back its history and tick count when told to stop."""
    socks: dict[int, tuple[str, socket.socket]] = {}
    for host, port, layer in servers:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.connect((host, port))
        sock.setblocking(False)
        socks[sock.fileno()] = (layer, sock)
    wires = [dns.message.make_query(n, t, use_edns=0, payload=4096).to_wire() for n, t in names]
    history: History = {}
    questions = [Question(n, t) for n, t in names]
    qid, ticks, started = 0, 0, time.monotonic()
    tick = started
    rng = random.Random(0)
    first = [started + rng.uniform(0, stagger) for _ in names]
    conn.send("ready")
    while not conn.poll():
        pending: dict[tuple[str, int], int] = {}
        for layer, sock in socks.values():
            for i, wire in enumerate(wires):
                if tick < first[i]:
                    continue
                qid = (qid + 1) & 0xFFFF
                sock.send(qid.to_bytes(2, "big") + wire[2:])
                pending[(layer, qid)] = i
        deadline = tick + interval
        while pending and (wait := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([s for _, s in socks.values()], [], [], wait)
            for sock in readable:
                layer = socks[sock.fileno()][0]
                while True:
                    try:
                        data = sock.recv(65535)
                    except BlockingIOError:
                        break
                    at = time.monotonic()
                    i = pending.pop((layer, int.from_bytes(data[:2], "big")), -1)
                    if i < 0:
                        continue
                    msg = dns.message.from_wire(data)
                    if msg.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                        continue
                    record(history, (layer, *names[i]), at,
                           reference_reduce(msg, questions[i]).values)
        ticks += 1
        tick = max(tick + interval, time.monotonic())
        time.sleep(max(0.0, tick - time.monotonic()))
    conn.send((history, ticks, time.monotonic() - started))


@contextmanager
def checker(servers: dict[str, tuple[str, int]], names: list[Question],
            result: list[Any]) -> Iterator[None]:
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(target=checker_main, daemon=True, args=(
        theirs, [(h, p, layer) for layer, (h, p) in servers.items()],
        [(q.name, q.rtype) for q in names], CHECK, STAGGER))
    proc.start()
    if ours.recv() != "ready":
        raise RuntimeError("the checker did not start")
    try:
        yield
    finally:
        ours.send("stop")
        result.append(ours.recv())
        proc.join(10)


# -- the peer: a fixed 100 ms poller in the agent's process -----------------------------------

@dataclass
class Poller:
    probers: dict[str, Prober]
    names: list[Question]
    history: History = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def _one(self, layer: str, prober: Prober, question: Question) -> None:
        result: ProbeResult = await prober.probe(question)
        self.sent[layer] = self.sent.get(layer, 0) + 1
        if result.answer is None:
            return
        record(self.history, (layer, question.name, question.rtype), result.received,
               result.answer.values)

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        tick = loop.time()
        rng = random.Random(1)
        first = {q: tick + rng.uniform(0, STAGGER) for q in self.names}
        while not stop.is_set():
            for layer, prober in self.probers.items():
                for question in self.names:
                    if tick < first[question]:
                        continue
                    task = asyncio.create_task(self._one(layer, prober, question))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            tick += POLL
            await asyncio.sleep(max(0.0, tick - loop.time()))
        await asyncio.gather(*self._tasks)


# -- the cluster -------------------------------------------------------------------------------

def with_prometheus(corefile: str, address: str, port: int) -> str:
    """The rig's Corefile, also listening on ::1 and exporting CoreDNS's metrics."""
    return corefile.replace(f"    bind {address}\n",
                            f"    bind {address} ::1\n    prometheus {address}:{port}\n", 1)


@dataclass
class Server:
    dns: CoreDNS
    metrics_port: int

    def requests(self) -> dict[tuple[str, str], float]:
        """CoreDNS's own count of A and SRV queries received, by address family and protocol."""
        url = f"http://{self.dns.address}:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        out: dict[tuple[str, str], float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "coredns_dns_requests_total" and s.labels["type"] in ("A", "SRV"):
                    key = (s.labels["family"], s.labels["proto"])
                    out[key] = out.get(key, 0.0) + s.value
        return out


def start_server(rig: Rig, work: Path, name: str, corefile: Any) -> Server:
    address = next_loopback_address()
    ready, metrics = free_port(address), free_port(address)
    text = with_prometheus(corefile(address, ready), address, metrics)
    server = CoreDNS(rig.coredns, work / name, text, address=address,
                     port=free_port(address, udp=True), ready_port=ready, name=name)
    return Server(server.start(), metrics)


@contextmanager
def cluster(rig: Rig, work: Path) -> Iterator[tuple[KubeApiServer, Server, Server]]:
    with ExitStack() as stack:
        api = start_api(rig, work, stack)
        core = start_server(rig, work, "cluster", lambda address, ready: cluster_corefile(
            address=address, ready_port=ready, apiserver_url=api.url,
            kubeconfig=api.kubeconfig_path, ttl=30, cache=30))
        stack.callback(core.dns.stop)
        local = start_server(rig, work, "nodelocal", lambda address, ready: nodelocal_corefile(
            address=address, ready_port=ready, upstream=f"[::1]:{core.dns.port}",
            success_ttl=30, denial_ttl=5))
        stack.callback(local.dns.stop)
        yield api, core, local


# -- the scenarios -----------------------------------------------------------------------------

@dataclass
class Service:
    kube: KubeClient
    name: str
    pods: dict[str, str] = field(default_factory=dict)
    """Hostname to IP of the endpoints in its slice."""
    next_ip: int = 10

    def ip(self) -> str:
        self.next_ip += 1
        return f"10.77.{self.next_ip // 250}.{self.next_ip % 250}"

    def create(self, pods: int) -> None:
        self.kube.create_headless_service(NS, self.name, {"app": self.name})
        self.pods = {f"{self.name}-{i}": self.ip() for i in range(pods)}
        self.kube.create(api_path("discovery.k8s.io/v1", "endpointslices", NS), {
            "metadata": {"name": f"{self.name}-x", "labels": {
                "kubernetes.io/service-name": self.name,
                "service.kubernetes.io/headless": ""}},
            "addressType": "IPv4", "endpoints": self._endpoints(),
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]})

    def _endpoints(self) -> list[dict[str, Any]]:
        return [{"addresses": [ip], "hostname": host, "conditions": {"ready": True}}
                for host, ip in sorted(self.pods.items())]

    def write(self) -> None:
        self.kube.patch(api_path("discovery.k8s.io/v1", "endpointslices", NS,
                                 f"{self.name}-x"), {"endpoints": self._endpoints()})

    def names(self, hosts: list[str], srv: bool = True) -> list[Question]:
        domain = f"{self.name}.{DOMAIN}"
        out = [Question(domain, "A"), *(Question(f"{h}.{domain}", "A") for h in hosts)]
        if srv:
            out += [Question(domain, "SRV"), Question(f"_http._tcp.{domain}", "SRV"),
                    *(Question(f"{h}.{domain}", "SRV") for h in hosts)]
        return out


@dataclass
class Run:
    scenario: str
    service: str
    names: list[Question]
    started: float = 0.0
    ended: float = 0.0
    agent_sent: dict[str, float] = field(default_factory=dict)
    poller: Poller | None = None
    checker: History = field(default_factory=dict)
    checker_tick: float = 0.0
    deferred: int = 0


def end_in(history: History, key: tuple[str, str, str], value: str, present: bool,
           since: float) -> float | None:
    """The first receipt at or after `since` of an answer in the new state (`value` present
    or not); `since` itself if the answer was already in it."""
    changes = history.get(key, [])
    before = [values for t, values in changes if t <= since]
    if before and (value in before[-1]) == present:
        return since
    return next((t for t, values in changes if t > since and (value in values) == present),
                None)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def main_async(args: argparse.Namespace, api: KubeApiServer, core: Server,
                     local: Server) -> None:
    kube = api.client()
    kube.create_namespace(NS, wait_for_default_sa=False)
    ipv4 = {"coredns": core.dns, "node-local": local.dns}
    ipv6 = {layer: ("::1", server.port) for layer, server in ipv4.items()}
    settings = replace(Settings(), namespaces=(NS,), layers=(), watch_start_jitter=0.0,
                       probe_budget_qps=args.qps).validate({})
    registry = CollectorRegistry()
    agent = Agent(settings, [ServerRef(layer, s.hostport) for layer, s in ipv4.items()],
                  Metrics(registry))
    closed: list[tuple[float, Window]] = []

    def listen(outcome: Outcome) -> None:
        now = agent.clock()
        closed.extend((now, w) for w in outcome.windows if w.reference == "watch")
    agent.outcome_listeners.append(listen)
    probes: list[tuple[float, float, str, Question, frozenset[str], int | None]] = []
    if args.trace:
        answered = agent.scheduler.answered

        def record(key: Any, sent: float, received: float, values: frozenset[str],
                   ttl: int | None, settled: bool) -> None:
            probes.append((sent, received, key.server.layer, key.question, values, ttl))
            answered(key, sent, received, values, ttl, settled)
        agent.scheduler.answered = record  # type: ignore[method-assign]

    def agent_probes() -> dict[str, float]:
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(generate_latest(registry).decode()):
            for s in family.samples:
                if s.name == "dns_staleness_probes_total":
                    out[s.labels["layer"]] = out.get(s.labels["layer"], 0.0) + s.value
        return out

    three, fifty, zero = (Service(kube, "three"), Service(kube, "fifty"),
                          Service(kube, "zero"))
    restart = 10 if args.quick else 50
    three.create(3)
    fifty.create(restart)
    zero.create(0)
    rounds = 1 if args.quick else 2
    stop = asyncio.Event()
    servers_before = {layer: s.requests() for layer, s in (("coredns", core),
                                                           ("node-local", local))}
    probes_before = agent_probes()
    runs: list[Run] = []
    async with aiohttp.ClientSession() as session:
        source = KubeSource(KubeApi(discover(str(api.kubeconfig_path)), session),
                            resources(settings.namespaces, settings.kube_dns_namespace,
                                      settings.kube_dns_service),
                            on_restart=lambda reason: None,
                            watch_timeout=settings.watch_timeout, start_jitter=0.0)
        agent_task = asyncio.create_task(agent.run(source.events(), stop))
        await asyncio.wait_for(agent.synced.wait(), 60)
        log("agent synced; letting the sweep learn every name's TTL for 35 s")
        await asyncio.sleep(35)

        async def scenario(name: str, service: Service, names: list[Question],
                           steps: Any) -> None:
            run = Run(name, service.name, names)
            wire = QueryWire()
            poller = Poller({layer: Prober(ServerRef(layer, f"[::1]:{port}"), 1.0, wire)
                             for layer, (_, port) in ipv6.items()}, names)
            result: list[Any] = []
            log(f"{name}: {len(names)} names, checker every {CHECK * 1000:g} ms, "
                f"poller every {POLL * 1000:g} ms")
            with checker(ipv6, names, result):
                poll_stop = asyncio.Event()
                poll_task = asyncio.create_task(poller.run(poll_stop))
                await asyncio.sleep(STAGGER + 3.0)
                before, deferred = agent_probes(), agent.scheduler.deferred_total
                run.started = agent.clock()
                await steps()
                run.ended = agent.clock()
                after = agent_probes()
                run.deferred = agent.scheduler.deferred_total - deferred
                poll_stop.set()
                await poll_task
            history, ticks, seconds = result[0]
            run.checker, run.checker_tick = history, seconds / max(ticks, 1)
            run.agent_sent = {layer: after.get(layer, 0) - before.get(layer, 0)
                              for layer in LAYERS}
            run.poller = poller
            for prober in poller.probers.values():
                prober.close()
            runs.append(run)

        async def change(service: Service, what: str) -> None:
            await asyncio.to_thread(service.write)
            log(f"  {what}")

        async def scale_down() -> None:
            for _ in range(rounds):
                ip = three.pods.pop("three-2")
                await change(three, f"three: removed three-2 ({ip})")
                await asyncio.sleep(SETTLE)
                three.pods["three-2"] = three.ip()
                await change(three, f"three: three-2 back as {three.pods['three-2']}")
                await asyncio.sleep(SETTLE)

        async def rolling_restart() -> None:
            for i in reversed(range(restart)):
                host = f"fifty-{i}"
                old = fifty.pods.pop(host)
                await change(fifty, f"fifty: {host} ({old}) terminated")
                await asyncio.sleep(1.0)
                fifty.pods[host] = fifty.ip()
                await change(fifty, f"fifty: {host} ready as {fifty.pods[host]}")
                await asyncio.sleep(1.0)
            await asyncio.sleep(SETTLE)

        async def from_zero() -> None:
            for _ in range(rounds):
                await asyncio.sleep(5.0)  # the checker's queries cache the NXDOMAINs
                zero.pods["zero-0"] = zero.ip()
                await change(zero, f"zero: scaled up to zero-0 ({zero.pods['zero-0']})")
                await asyncio.sleep(SETTLE)
                zero.pods.clear()
                await change(zero, "zero: scaled down to 0")
                await asyncio.sleep(SETTLE)

        await scenario("scale-down 1 of 3", three, three.names(sorted(three.pods)), scale_down)
        await scenario(f"{restart}-pod rolling restart", fifty,
                       fifty.names(sorted(fifty.pods), srv=False), rolling_restart)
        await scenario("scale-up from zero", zero, zero.names(["zero-0"]), from_zero)
        stop.set()
        await agent_task
    print(f"\nthe agent at probe_budget_qps {settings.probe_budget_qps:g}, probe_burst "
          f"{settings.probe_burst}", flush=True)
    report(runs, closed, restart, probes)
    agent_total = {layer: agent_probes().get(layer, 0) - probes_before.get(layer, 0)
                   for layer in LAYERS}
    rows = []
    for layer, server in (("coredns", core), ("node-local", local)):
        after = server.requests()
        udp, tcp = (after.get(("1", proto), 0.0) - servers_before[layer].get(("1", proto), 0.0)
                    for proto in ("udp", "tcp"))
        rows.append([layer, f"{agent_total[layer]:,.0f}", f"{udp:,.0f}",
                     f"{udp - agent_total[layer]:+,.0f}", f"{tcp:,.0f}"])
    section("Queries counted at the servers (CoreDNS prometheus plugin, IPv4: the agent's)",
            table(["layer", "agent probes_total", "server UDP", "difference",
                   "server TCP (retries of truncated answers)"], rows))


def report(runs: list[Run], closed: list[tuple[float, Window]], restart: int,
           probes: list[tuple[float, float, str, Question, frozenset[str], int | None]]) -> None:
    rows, summary, worst_rows = [], {}, []
    total_agent = total_poller = 0.0
    for run in runs:
        assert run.poller is not None
        names = set(run.names)
        for layer in LAYERS:
            windows = [(at, w) for at, w in closed
                       if run.started <= at <= run.ended and w.server.layer == layer
                       and w.target == Target(NS, run.service) and w.question in names]
            agent_err, poller_err, missed = [], [], 0
            worst_window: tuple[float, Window, float] | None = None
            for at, w in windows:
                key = (layer, w.question.name, w.question.rtype)
                present = w.kind == "propagation"
                cause = at - w.seconds
                truth = end_in(run.checker, key, w.value, present, cause)
                peer = end_in(run.poller.history, key, w.value, present, cause)
                if truth is None:
                    missed += 1
                    continue
                agent_err.append(abs(at - truth))
                if worst_window is None or abs(at - truth) > abs(worst_window[0]):
                    worst_window = (at - truth, w, cause)
                if peer is not None:
                    poller_err.append(abs(peer - truth))
            n = len(windows)
            if worst_window is not None:
                error, w, cause = worst_window
                worst_rows.append([run.scenario, layer, f"{w.kind} {w.question.name} "
                                   f"{w.question.rtype} {w.value}", f"{error * 1000:+.0f}",
                                   f"{w.resolution * 1000:.0f}",
                                   f"{(cause - run.started):.3f}"])
                if probes:
                    trace(run, layer, w, cause, error, probes)
            agent_q = run.agent_sent.get(layer, 0) / max(n, 1)
            poller_q = run.poller.sent.get(layer, 0) / max(n, 1)
            total_agent += run.agent_sent.get(layer, 0)
            total_poller += run.poller.sent.get(layer, 0)
            p99 = quantile(agent_err, 0.99)
            summary[(run.scenario, layer)] = p99
            rows.append([run.scenario, layer, f"{n}", f"{missed}",
                         f"{statistics.median(agent_err) * 1000:.0f}" if agent_err else "-",
                         f"{p99 * 1000:.0f}" if agent_err else "-",
                         f"{statistics.median(poller_err) * 1000:.0f}" if poller_err else "-",
                         f"{quantile(poller_err, 0.99) * 1000:.0f}" if poller_err else "-",
                         f"{agent_q:.1f}", f"{poller_q:.1f}",
                         f"{poller_q / agent_q:.1f}x" if agent_q else "-"])
    section("Window ends against the checker (ms) and queries per closed window", table(
        ["scenario", "layer", "windows", "unseen", "agent p50", "agent p99", "poller p50",
         "poller p99", "agent q/window", "poller q/window", "ratio"], rows))
    section("The largest error per row (signed: + is after the checker; ms)", table(
        ["scenario", "layer", "window", "error", "resolution", "change at (s)"], worst_rows))
    print("\n" + "\n".join(
        f"{run.scenario}: the checker asked every name every {run.checker_tick * 1000:.1f} "
        f"ms; the agent deferred {run.deferred} probes for the budget" for run in runs))

    def worst(prefix: str) -> str:
        values = [v for (s, _), v in summary.items() if s.startswith(prefix)]
        return f"{max(values) * 1000:.0f}" if values else "-"
    ratio = total_poller / total_agent if total_agent else float("nan")
    print(f"\nprecision: p99 error {worst('scale-down')} ms (3 pods), "
          f"{worst(f'{restart}-pod')} ms ({restart}-pod restart); "
          f"{ratio:.0f} x fewer queries per window than the 100 ms poller", flush=True)


def trace(run: Run, layer: str, w: Window, cause: float, error: float,
          probes: list[tuple[float, float, str, Question, frozenset[str], int | None]]) -> None:
    """The agent's probes of the worst window's name and the checker's answers, from the
    change on, in seconds from the change."""
    key = (layer, w.question.name, w.question.rtype)
    print(f"\ntrace: {run.scenario} {layer} {w.kind} {w.question.name} {w.value}: "
          f"error {error * 1000:+.0f} ms")
    for sent, _, at_layer, question, values, ttl in probes:
        if at_layer == layer and question == w.question and cause - 1 <= sent <= cause + 70:
            print(f"  agent   {sent - cause:8.3f} ttl {ttl} {sorted(values)}")
    for at, values in run.checker.get(key, []):
        if cause - 35 <= at <= cause + 70:
            print(f"  checker {at - cause:8.3f} {sorted(values)}")
    others = [(sent, at_layer, question, ttl) for sent, _, at_layer, question, _, ttl in probes
              if cause <= sent <= cause + 2.5 and question != w.question]
    print(f"  the agent's {len(others)} other probes in the 2.5 s after the change:")
    for sent, at_layer, question, ttl in others:
        print(f"    {sent - cause:8.3f} {at_layer} {question.name.split('.')[0]} "
              f"{question.rtype} ttl {ttl}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true",
                        help="one round per scenario and a 10-pod restart (about 6 minutes)")
    parser.add_argument("--trace", action="store_true",
                        help="print the agent's probes and the checker's answers for the worst "
                        "window of each row")
    parser.add_argument("--qps", type=float, default=Settings().probe_budget_qps,
                        help="the agent's probe_budget_qps (default: the agent's default, "
                        "%(default)g)")
    args = parser.parse_args()
    if not 4 <= args.qps <= 10000:
        parser.error("--qps must be between 4 (the burst) and 10000")
    rig = Rig.load()
    with tempfile.TemporaryDirectory() as tmp, cluster(rig, Path(tmp)) as (api, core, local):
        asyncio.run(main_async(args, api, core, local))


if __name__ == "__main__":
    main()
