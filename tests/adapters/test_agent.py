"""The whole agent pipeline against lab DNS servers: budget on the wire, metrics, shutdown."""

from __future__ import annotations

import asyncio
import json
import logging
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from exporter import REVISION
from exporter.agent import Agent
from exporter.core.events import (
    LISTED,
    Kind,
    ObjectEvent,
    Relisted,
    Relisting,
    SourceEvent,
    Synced,
)
from exporter.core.layers import Discovery
from exporter.core.records import ServerRef, Target
from exporter.io.lab import KubernetesBackend, LabCluster, LabDnsServer, LabPod
from exporter.io.metrics import Metrics
from exporter.io.server import HttpServer
from exporter.settings import load

ZONE = "cluster.local"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[SourceEvent] = asyncio.Queue()
        self.lab = LabCluster(ZONE, lambda k, t, o: self.queue.put_nowait(ObjectEvent(k, t, o)))

    async def events(self) -> AsyncIterator[SourceEvent]:
        while True:
            yield await self.queue.get()


def max_in_any_second(times: list[float]) -> int:
    return max(sum(1 for u in times if t <= u < t + 1.0) for t in times)


COUNTER = r"""
import json, select, socket, struct, sys
SO_TIMESTAMPNS = 35  # Linux's; Python's socket module does not name it
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
sock.bind((sys.argv[1], 0))
print(sock.getsockname()[1], flush=True)
times = []
while True:
    ready, _, _ = select.select([sock, sys.stdin], [], [])
    if sys.stdin in ready:
        break
    # The kernel's arrival time: this process's own scheduling delays cannot bunch them.
    data, ancillary, _, peer = sock.recvmsg(4096, 64)
    seconds, nanos = next(struct.unpack("qq", d[:16]) for level, kind, d in ancillary
                          if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS)
    times.append(seconds + nanos / 1e9)
    # NXDOMAIN for everything: the query itself with QR set and rcode 3.
    flags = struct.unpack_from("!H", data, 2)[0] | 0x8000 | 3
    sock.sendto(data[:2] + struct.pack("!H", flags) + data[4:], peer)
print(json.dumps(times), flush=True)
"""


class CountingServer:
    """A DNS server in its own process that records when each query arrives, by the kernel's
    receive timestamp: neither the agent's loop stalls nor this process's own scheduling can
    bunch or spread the counts."""

    def __init__(self, host: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", COUNTER, host],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.address = f"{host}:{self.proc.stdout.readline().strip()}"

    def times(self) -> list[float]:
        out, _ = self.proc.communicate("stop\n", timeout=10)
        return list(json.loads(out))


async def test_budget_holds_on_the_wire() -> None:
    """Ask for far more than the budget; count packets where the server receives them."""
    cluster = Cluster()
    for s in range(20):
        cluster.lab.add_service("ns", f"svc{s}")
        for i in range(3):
            cluster.lab.set_pod("ns", f"svc{s}", LabPod(f"p{i}", f"10.{s}.0.{i}", hostname=f"p{i}"))
    cluster.queue.put_nowait(Synced())
    servers = [CountingServer(f"127.0.30.{i + 1}") for i in range(2)]
    refs = [ServerRef(f"layer{i}", server.address) for i, server in enumerate(servers)]
    settings = load("run", {"probe_budget_qps": "20", "probe_burst": "5", "sweep_interval": "1",
                            "fast_interval": "0.05"}, {}, None)
    agent = Agent(settings, refs, Metrics(CollectorRegistry()))
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(cluster.events(), stop))
    started = time.monotonic()
    while time.monotonic() - started < 4.0:
        # Changes keep putting targets into fast mode, which wants 20 x 8 names x 20 qps.
        s = int((time.monotonic() - started) * 10) % 20
        cluster.lab.set_pod("ns", f"svc{s}", LabPod("p0", f"10.{s}.1.{s}", hostname="p0"))
        await asyncio.sleep(0.1)
    stop.set()
    await task
    times = sorted(t for server in servers for t in server.times())
    assert max_in_any_second(times) <= 20
    assert len(times) >= 0.8 * 20 * 4, "the test must push against the budget"
    assert agent.scheduler.deferred_total > 0


async def test_metrics_text_and_openmetrics_and_probes() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    cluster = Cluster()
    cluster.lab.add_service("ns", "web")
    cluster.lab.set_pod("ns", "web", LabPod("web-0", "10.0.0.1", hostname="web-0"))
    cluster.queue.put_nowait(Synced())
    lab = LabDnsServer(KubernetesBackend(cluster.lab), ZONE)
    ref = ServerRef("coredns", await lab.start("127.0.30.5"))
    settings = load("demo", {"sweep_interval": "1"}, {}, None)
    agent = Agent(settings, [ref], metrics)
    http = HttpServer(registry, lambda: setattr(metrics, "snapshot", agent.snapshot()),
                      lambda: agent.ready)
    await http.start("127.0.0.1:0")
    base = f"http://127.0.0.1:{http.port}"
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(cluster.events(), stop))
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            async with session.get(f"{base}/readyz") as resp:
                if resp.status == 200:
                    break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)
        cluster.lab.delete_pod("ns", "web", "web-0")
        await asyncio.sleep(0.5)
        async with session.get(f"{base}/metrics") as resp:
            text = await resp.text()
            assert resp.headers["Content-Type"].startswith("text/plain")
        async with session.get(f"{base}/metrics",
                               headers={"Accept": "application/openmetrics-text"}) as resp:
            assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
            assert (await resp.text()).endswith("# EOF\n")
        async with session.get(f"{base}/") as resp:
            assert 'href="metrics"' in await resp.text()
        async with session.get(f"{base}/healthz") as resp:
            assert resp.status == 200
    stop.set()
    await task
    await http.stop()
    lab.close()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("dns_staleness_probes_total",
                    (("layer", "coredns"), ("result", "noerror")))] > 0
    assert samples[("dns_staleness_layer_up", (("layer", "coredns"), ("server", ref.address)))] == 1
    assert samples[("dns_staleness_targets", ())] == 1
    assert samples[("dns_staleness_record_ttl_seconds", (("layer", "coredns"),))] == 5
    assert samples[("dns_staleness_build_info", (
        ("pythonversion", platform.python_version()), ("revision", REVISION),
        ("version", "0.1.0")))] == 1
    assert REVISION != "unknown"  # this checkout's HEAD
    assert samples[("process_resident_memory_bytes", ())] > 0
    assert samples[("dns_staleness_watch_events_total",
                    (("kind", "EndpointSlice"), ("type", "MODIFIED")))] >= 2
    for le in ("0.05", "60.0"):
        assert ("dns_staleness_window_seconds_bucket",
                (("layer", "coredns"), ("le", le), ("reference", "watch"))) in samples
    # The deleted pod left the kubernetes-like server at once: its window is closed, so no
    # per-service gauge remains.
    assert not [k for k in samples if k[0] == "dns_staleness_stale_records"]
    closed = samples[("dns_staleness_window_seconds_count",
                      (("layer", "coredns"), ("reference", "watch")))]
    assert closed >= 2


def test_sigterm_drops_readiness_and_exits_within_two_seconds(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "demo", "--duration", "120",
         "--listen", f"127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                    sock.sendall(b"GET /readyz HTTP/1.0\r\n\r\n")
                    if b"200" in sock.recv(100):
                        break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            pytest.fail("the demo never became ready")
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        elapsed = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert elapsed < 2.0
    assert "closed windows lie within" in out



async def fifty_services(flags: dict[str, object], address: str, seconds: float) -> int:
    """The agent on one lab server; 50 one-pod Services arrive after its probe loop first
    slept, then it runs for `seconds`. Returns the queries the server got."""
    cluster = Cluster()
    lab = LabDnsServer(KubernetesBackend(cluster.lab), ZONE)
    ref = ServerRef("coredns", await lab.start(address))
    agent = Agent(load("run", flags, {}, None), [ref], Metrics(CollectorRegistry()))
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(cluster.events(), stop))
    await asyncio.sleep(0.2)
    for s in range(50):
        cluster.lab.add_service("ns", f"svc{s}")
        cluster.lab.set_pod("ns", f"svc{s}", LabPod("p0", f"10.{s}.0.1", hostname="p0"))
    cluster.queue.put_nowait(Synced())
    await asyncio.sleep(seconds)
    stop.set()
    await task
    lab.close()
    return lab.queries


async def test_steady_probes_start_soon_after_the_first_sync() -> None:
    """The plan arrives after the probe loop first slept: it must wake for it."""
    # 50 targets x 5 names on one server over the 30 s sweep: 8 probes a second.
    assert await fifty_services({}, "127.0.30.9", 2.0) >= 5


def test_a_missing_dns_service_is_logged_once_and_shown(
        caplog: pytest.LogCaptureFixture) -> None:
    settings = load("run", {"kube_dns_service": "cluster-dns"}, {}, None)
    discovery = Discovery(node="n", replicas_per_node=1, enabled=frozenset({"coredns"}))
    agent = Agent(settings, (), Metrics(CollectorRegistry()), discovery=discovery)
    agent.ingest(Synced())
    agent.ingest(Synced())
    gauge = [(s.labels, s.value) for f in agent.metrics.collect()
             for s in f.samples if s.name == "dns_staleness_dns_service_found"]
    assert gauge == []  # the snapshot is taken at render time
    agent.metrics.snapshot = agent.snapshot()
    gauge = [(s.labels, s.value) for f in agent.metrics.collect()
             for s in f.samples if s.name == "dns_staleness_dns_service_found"]
    assert gauge == [({"namespace": "kube-system", "service": "cluster-dns"}, 0)]
    warned = [r.getMessage() for r in caplog.records if "no cluster DNS Service" in r.message]
    assert warned == ["no cluster DNS Service kube-system/cluster-dns: the kube-dns and "
                      "coredns layers have no servers; set kube_dns_namespace and "
                      "kube_dns_service to the cluster's DNS Service"]
    agent.ingest(ObjectEvent(Kind.DNS_SERVICE, "ADDED", {
        "metadata": {"name": "cluster-dns", "namespace": "kube-system"},
        "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "dns", "port": 53,
                                                       "protocol": "UDP"}]}}))
    agent.metrics.snapshot = agent.snapshot()
    assert [s.value for f in agent.metrics.collect() for s in f.samples
            if s.name == "dns_staleness_dns_service_found"] == [1]


async def test_a_budget_too_small_for_the_sweep_is_logged_once_with_the_arithmetic(
        caplog: pytest.LogCaptureFixture) -> None:
    await fifty_services({"probe_budget_qps": 4, "probe_burst": 2}, "127.0.30.10", 0.5)
    warned = [r.getMessage() for r in caplog.records if "cannot sweep" in r.message]
    # 50 targets x 5 names on one server every 30 s with half of 4 qps: 250 pairs, 125 s.
    assert warned == ["the probe budget cannot sweep every name every 30s: 250 name-server "
                      "pairs need 16.7 qps for steady sweeps at 50% of the budget, which is "
                      "4 qps; a sweep takes about 125s (raise probe_budget_qps, or narrow "
                      "namespaces)"]


async def test_info_logs_say_what_an_operator_needs(caplog: pytest.LogCaptureFixture) -> None:
    """A layer frozen at the start keeps a removed record past its bound (said once, when
    it crosses), a Service over the cap is named, a misconfiguration is said as it appears;
    windows that close say so with their facts."""
    cluster = Cluster()
    frozen = LabCluster(ZONE, lambda k, t, o: None)
    for lab in (cluster.lab, frozen):
        lab.add_service("ns", "web")
        for i in range(2):
            lab.set_pod("ns", "web", LabPod(f"web-{i}", f"10.1.0.{i}", hostname=f"web-{i}"))
    cluster.queue.put_nowait(Synced())
    live = LabDnsServer(KubernetesBackend(cluster.lab, ttl=1), ZONE)
    stuck = LabDnsServer(KubernetesBackend(frozen, ttl=1), ZONE)
    refs = [ServerRef("coredns", await live.start("127.0.30.6")),
            ServerRef("stuck", await stuck.start("127.0.30.7"))]
    agent = Agent(load("run", {"max_targets": "2", "sweep_interval": "1",
                               "probe_budget_qps": "200"}, {}, None),
                  refs, Metrics(CollectorRegistry()))
    stop = asyncio.Event()
    caplog.set_level(logging.INFO, logger="exporter.agent")
    task = asyncio.create_task(agent.run(cluster.events(), stop))
    await asyncio.wait_for(agent.synced.wait(), 5)
    await asyncio.sleep(1.5)  # both layers have served their TTL
    cluster.lab.delete_pod("ns", "web", "web-1")
    cluster.lab.add_service("ns", "portless", ports=(("", 80, "TCP"),))
    cluster.lab.set_pod("ns", "portless", LabPod("p-0", "10.2.0.1"))
    cluster.lab.add_service("ns", "over")
    await asyncio.sleep(8.5)  # the stuck layer's bound is its TTL of 1 s plus 5 s
    stop.set()
    await task
    live.close()
    stuck.close()
    said = [(r.getMessage(), getattr(r, "kv", {})) for r in caplog.records
            if r.name == "exporter.agent" and r.levelno == logging.INFO]
    closed = [kv for msg, kv in said if msg == "stale window closed"]
    assert any(kv["layer"] == "coredns" and kv["value"] == "10.1.0.1" and kv["bound"] == 6.0
               and kv["seconds"] <= 1.5 for kv in closed), said
    past = [kv for msg, kv in said if msg == "stale window open past the layer's bound"]
    assert {(kv["layer"], kv["name"], kv["value"]) for kv in past} >= {
        ("stuck", "web.ns.svc.cluster.local.", "10.1.0.1")}, said
    assert len(past) == len({(kv["layer"], kv["name"], kv["type"], kv["value"]) for kv in past})
    assert all(kv["age"] > kv["bound"] == 6.0 and kv["caused_by_truth"] for kv in past)
    dropped = [kv for msg, kv in said if msg == "target dropped by the cap (max_targets)"]
    assert [(kv["namespace"], kv["service"]) for kv in dropped] == [("ns", "over")], said
    misconfigured = [kv for msg, kv in said if msg.startswith("Service misconfigured")]
    assert [(kv["service"], kv["reason"]) for kv in misconfigured] == [
        ("portless", "no_named_ports")], said
    [sync] = [kv for msg, kv in said if msg == "initial sync done"]
    assert sync["objects"] > 0 and (sync["targets"], sync["dropped"]) == (1, 0)


def member_slice(*nodes: str, name: str = "agents-a") -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": "monitoring",
                         "labels": {"kubernetes.io/service-name": "agents"}},
            "endpoints": [{"addresses": [f"10.1.0.{i}"], "nodeName": node,
                           "conditions": {"ready": True}} for i, node in enumerate(nodes)]}


def test_a_fleet_whose_slices_list_nobody_is_a_fleet_of_one() -> None:
    """No slice of the agents' Service (none ready yet, or no Service): once the lists are
    in, the agent measures everything, as unsharded."""
    settings = load("run", {"shard_service": "monitoring/agents", "static_servers": (
        "coredns=10.0.0.53",)}, {}, None)
    agent = Agent(settings, [ServerRef("coredns", "10.0.0.53:53")],
                  Metrics(CollectorRegistry()), node="node-a")
    agent.ingest(ObjectEvent(Kind.SERVICE, "ADDED", {
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}}))
    agent.ingest(ObjectEvent(Kind.ENDPOINT_SLICE, "ADDED", {
        "metadata": {"name": "web-x", "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.2.0.1"], "conditions": {"ready": True}}]}))
    assert agent.scheduler.pairs == 0
    agent.ingest(Synced())
    assert agent.shard is not None and agent.shard.fleet == {"node-a"}
    assert agent.scheduler.pairs == len(agent.comparator.questions(Target("shop", "web"))) > 0


def test_a_sharded_agent_measures_its_shard_and_hands_it_over(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    settings = load("run", {"shard_service": "monitoring/agents", "shard_owners": 1,
                            "shard_node_local_extra": 0}, {}, None)
    discovery = Discovery(node="node-a", replicas_per_node=1, enabled=frozenset({"coredns"}))
    agent = Agent(settings, (), Metrics(CollectorRegistry()), discovery=discovery,
                  node="node-a")
    agent.ingest(ObjectEvent(Kind.DNS_ENDPOINT_SLICE, "ADDED", {
        "metadata": {"name": "kube-dns-a", "namespace": "kube-system"},
        "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}],
        "endpoints": [{"addresses": ["10.0.0.53"], "conditions": {"ready": True}}]}))
    for i in range(20):
        agent.ingest(ObjectEvent(Kind.SERVICE, "ADDED", {
            "metadata": {"name": f"svc-{i}", "namespace": "shop"},
            "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}}))
        agent.ingest(ObjectEvent(Kind.ENDPOINT_SLICE, "ADDED", {
            "metadata": {"name": f"svc-{i}-x", "namespace": "shop",
                         "labels": {"kubernetes.io/service-name": f"svc-{i}"}},
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            "endpoints": [{"addresses": [f"10.2.0.{i}"], "conditions": {"ready": True}}]}))
    assert agent.scheduler.pairs == 0  # no membership list yet: nothing of its own
    agent.ingest(Relisting(Kind.MEMBER_ENDPOINT_SLICE))
    agent.ingest(ObjectEvent(Kind.MEMBER_ENDPOINT_SLICE, LISTED, member_slice("node-a", "node-b")))
    agent.ingest(Relisted(Kind.MEMBER_ENDPOINT_SLICE))
    agent.ingest(Synced())
    assert agent.shard is not None
    owned = agent.shard.owned()
    assert 2 <= len(owned) <= 18
    names = {t: len(agent.comparator.questions(t)) for t in agent.truth.monitored}
    assert agent.scheduler.pairs == sum(names[t] for t in owned)  # one server: the replica
    # node-b goes: node-a takes everything over, and says so.
    agent.ingest(ObjectEvent(Kind.MEMBER_ENDPOINT_SLICE, "MODIFIED", member_slice("node-a")))
    assert agent.scheduler.pairs == sum(names.values())
    # A slice that cannot be read is counted and changes nothing.
    agent.ingest(ObjectEvent(Kind.MEMBER_ENDPOINT_SLICE, "MODIFIED", {
        "metadata": {"name": "agents-a", "namespace": "monitoring"},
        "endpoints": [{"nodeName": "node-b", "conditions": "yes"}]}))
    agent.metrics.snapshot = agent.snapshot()
    found = {(s.name, tuple(sorted(s.labels.items()))): s.value
             for f in agent.metrics.collect() for s in f.samples}
    assert found[("dns_staleness_fleet_members", ())] == 1
    assert found[("dns_staleness_shard_targets", (("scope", "cluster"),))] == 20
    assert found[("dns_staleness_shard_handovers_total", (("direction", "in"),))] == \
        20 - len(owned)
    assert found[("dns_staleness_shard_handovers_total", (("direction", "out"),))] == 0
    invalid = [s.value for f in agent.metrics.watch_events.collect() for s in f.samples
               if s.name.endswith("_total")
               and s.labels == {"kind": "AgentEndpointSlice", "type": "INVALID"}]
    assert invalid == [1.0]
    said = [r.getMessage() for r in caplog.records if r.getMessage() == "fleet changed"]
    assert len(said) == 2
