"""The watch against a real API server that fails: 410 Gone, a restart, a rotated token, and
RBAC that is too narrow. The agent runs as `run` (tests/integration/agent.py) with a
ServiceAccount token, and everything is read back from its /metrics and its log.

Two of the tests break the API server, so the agent talks to a second kube-apiserver of its own
(`agent_apiserver`) on the session's etcd: it can be stopped and started without touching the
one that the controller manager, CoreDNS and the other tests use. It has no watch cache, so a
watch from a compacted resourceVersion gets 410 Gone from etcd itself.

Changes the agent learns by relisting happened at unknown times: they move the gauges but must
never become window samples. The 410 and restart tests check that on the histograms and on the
agent's own log of closed windows."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import dns.message
import dns.query
import dns.rdatatype
import pytest
import yaml

from exporter.core.events import LISTED, Kind, ObjectEvent, Relisted, Relisting, SourceEvent
from exporter.io.kubeconfig import from_kubeconfig
from exporter.io.watch import KubeApi, Resource, Watcher
from tests.integration.agent import AgentProcess, AgentWindow, Samples, samples, total
from tests.rig import (
    ClusterDNSFactory,
    CoreDNS,
    Etcd,
    KubeApiError,
    KubeApiServer,
    KubeClient,
    NodeLocalDNSFactory,
    RestartableApiServer,
    Rig,
    api_path,
    wait_until,
)

pytestmark = pytest.mark.rig

ROOT = Path(__file__).resolve().parents[2]
RBAC = yaml.safe_load((ROOT / "deploy" / "rbac.yaml").read_text())["rules"]
RBAC_API = "rbac.authorization.k8s.io/v1"
SLICES = "discovery.k8s.io/v1"
WATCH_TIMEOUT = 10
"""The agent's --watch-timeout (its minimum): every watch ends after at most 12 s (+20 %)."""
TTL = 8
"""Record TTL of the cluster CoreDNS and success TTL of the node-local cache: a gap change is
still served by node-local for a while, so it shows in the gauges."""


# -- a second API server that tests may restart -------------------------------------------

@pytest.fixture(scope="module")
def agent_apiserver(rig_bins: Rig, etcd: Etcd, apiserver: KubeApiServer,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartableApiServer]:
    server = RestartableApiServer(
        rig_bins.kube_apiserver, tmp_path_factory.mktemp("agent-apiserver"),
        etcd_url=etcd.client_url, openssl=rig_bins.openssl, name="agent-apiserver",
        extra_args=["--watch-cache=false",
                    # Tokens from the session API server's TokenRequest API are valid here too.
                    f"--service-account-key-file={apiserver.pki.sa_public_key}",
                    "--etcd-compaction-interval=0"])
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Identity:
    namespace: str
    name: str
    role: str


@pytest.fixture(scope="module")
def home(kube: KubeClient) -> Iterator[str]:
    """A namespace for the agents' ServiceAccounts."""
    ns = f"dse-res-{uuid.uuid4().hex[:6]}"
    kube.create_namespace(ns)
    yield ns
    kube.delete(api_path("v1", "namespaces", name=ns), missing_ok=True)


def service_account(kube: KubeClient, ns: str, rules: list[dict[str, Any]]) -> Identity:
    """A ServiceAccount bound to a ClusterRole with `rules`."""
    tag = uuid.uuid4().hex[:6]
    ident = Identity(ns, f"agent-{tag}", f"dse-resilience-{tag}")
    kube.create_service_account(ns, ident.name)
    kube.grant_cluster_role(ident.role, rules, namespace=ns, service_account=ident.name)
    return ident


def drop(kube: KubeClient, ident: Identity) -> None:
    kube.delete(api_path(RBAC_API, "clusterrolebindings", name=ident.role), missing_ok=True)
    kube.delete(api_path(RBAC_API, "clusterroles", name=ident.role), missing_ok=True)


@pytest.fixture(scope="module")
def agent_identity(kube: KubeClient, home: str) -> Iterator[Identity]:
    """Bound to exactly the RBAC the chart ships."""
    ident = service_account(kube, home, RBAC)
    yield ident
    drop(kube, ident)


def can_list_slices(client: KubeClient) -> bool:
    client.list(api_path(SLICES, "endpointslices"))
    return True


# -- reading the agent ---------------------------------------------------------------------



def counts(found: Samples) -> dict[tuple[str, str], float]:
    """Closed windows per (histogram, layer), on the agent's own clock."""
    out = {}
    for metric in ("window", "propagation"):
        for layer in ("coredns", "node-local"):
            out[(metric, layer)] = total(found, f"dns_staleness_{metric}_seconds_count",
                                         layer=layer, reference="watch")
    return out


class Agent(AgentProcess):
    def launch(self, timeout: float = 20.0) -> Agent:
        """Start without waiting for readiness: only for the HTTP server to answer."""
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: self.get("/metrics")[0] == 200 or None, timeout=timeout,
                   what="the agent's HTTP server", abort=self._exited)
        return self

    def _exited(self) -> str | None:
        assert self.proc is not None
        code = self.proc.poll()
        return None if code is None else f"agent exited {code}:\n{self.tail()}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def samples(self) -> Samples:
        return samples(self.metrics())

    def eventually(self, check: Callable[[Samples], bool], what: str,
                   timeout: float = 20.0) -> Samples:
        def probe() -> Samples | None:
            found = self.samples()
            return found if found and check(found) else None

        try:
            return wait_until(probe, timeout=timeout, interval=0.1, what=what,
                              abort=self._exited)
        except TimeoutError:
            raise AssertionError(f"{what}:\n{self.metrics()}\n--- log ---\n{self.tail()}")\
                from None

    def converged(self, layers: tuple[str, ...] = ("coredns", "node-local")) -> Samples:
        """Every layer answers, and nothing is stale or missing."""
        return self.eventually(lambda f: all(
            total(f, "dns_staleness_layer_up", layer=layer) >= 1 for layer in layers) and not [
            n for n, _, _ in f if n in ("dns_staleness_stale_records",
                                        "dns_staleness_missing_records")],
            "the agent to converge")

    def window(self, since: int, kind: str, layer: str, ip: str,
               timeout: float = 20.0) -> AgentWindow:
        """The first window about the pod's A record or SRV target (a layer that is faster
        than the watch ends the other one as a race, which is no window)."""
        def probe() -> AgentWindow | None:
            return next((w for w in self.windows()[since:] if (w.kind, w.layer, w.reference) ==
                         (kind, layer, "watch") and about(w, ip)), None)

        try:
            return wait_until(probe, timeout=timeout, interval=0.1, abort=self._exited,
                              what=f"a {kind} window on {layer} for {ip}")
        except TimeoutError:
            raise AssertionError(f"no {kind} window on {layer} for {ip}:\n{self.tail()}")\
                from None


def agent_args(namespace: str, cluster: CoreDNS | None, nodelocal: CoreDNS | None,
               *extra: str) -> list[str]:
    args = ["--namespaces", namespace, "--watch-timeout", str(WATCH_TIMEOUT),
            "--fast-interval", "0.1", "--sweep-interval", "2", "--probe-timeout", "0.5",
            "--probe-budget-qps", "200", "--probe-burst", "20", "--node-name", "rig-node-0"]
    # Never the kube-dns layer (a virtual ClusterIP) nor resolv-conf (this machine's resolver).
    args += ["--layers", "node-local" if nodelocal else "coredns"]
    if cluster is not None:
        args += ["--static-servers", f"coredns={cluster.hostport}"]
    if nodelocal is not None:
        args += ["--node-local-address", nodelocal.hostport]
    return [*args, *extra]


# -- the cluster side ------------------------------------------------------------------------

@dataclass
class Web:
    kube: KubeClient
    namespace: str
    ips: dict[str, str]

    @property
    def name(self) -> str:
        return f"web.{self.namespace}.svc.cluster.local."

    def slice_has(self, count: int) -> None:
        self.kube.wait_for_endpointslice(self.namespace, "web", lambda s: sum(
            len(x.get("endpoints") or []) for x in s) == count)

    def delete(self, pod: str) -> str:
        self.kube.delete_pod(self.namespace, pod, grace_seconds=0)
        return self.ips.pop(pod)

    def add(self, pod: str, ip: str) -> None:
        self.kube.create_pod(self.namespace, pod, {"app": "web"})
        self.kube.set_pod_ready(self.namespace, pod, ip)
        self.ips[pod] = ip


def make_web(kube: KubeClient, namespace: str, count: int = 3) -> Web:
    web = Web(kube, namespace, {})
    kube.create_headless_service(namespace, "web", {"app": "web"})
    for i in range(count):
        web.add(f"web-{i}", f"10.244.77.{10 + i}")
    web.slice_has(count)
    return web


def answer(server: CoreDNS, name: str, rtype: str = "A") -> set[str]:
    response = dns.query.udp(dns.message.make_query(name, rtype), server.address,
                             port=server.port, timeout=2)
    return {r.to_text() for rrset in response.answer
            if rrset.rdtype == dns.rdatatype.from_text(rtype) for r in rrset}


def serves(server: CoreDNS, web: Web) -> None:
    wait_until(lambda: answer(server, web.name) == set(web.ips.values()) or None, timeout=15,
               what=f"{server.name} to serve {sorted(web.ips.values())}")


def about(window: AgentWindow, ip: str) -> bool:
    """The window is about this pod's A record or its SRV target."""
    return window.value == ip or ip.replace(".", "-") + "." in window.value


@dataclass
class Stage:
    kube: KubeClient
    web: Web
    cluster: CoreDNS
    nodelocal: CoreDNS

    def fill(self) -> float:
        """Have node-local cache `web` (A and SRV) now, when it holds nothing: it then serves
        these answers, whatever happens, until the returned time + TTL."""
        filled = time.monotonic()
        assert answer(self.nodelocal, self.web.name) == set(self.web.ips.values())
        assert len(answer(self.nodelocal, f"_http._tcp.{self.web.name}", "SRV")) == len(
            self.web.ips)
        return filled


@pytest.fixture
def stage(kube: KubeClient, namespace: str, coredns_cluster: ClusterDNSFactory,
          coredns_nodelocal: NodeLocalDNSFactory) -> Stage:
    """`web` with three ready pods, the cluster CoreDNS serving them, and a node-local cache
    in front of it."""
    web = make_web(kube, namespace)
    cluster = coredns_cluster(ttl=TTL)
    nodelocal = coredns_nodelocal(cluster, success_ttl=TTL, denial_ttl=5)
    serves(cluster, web)
    return Stage(kube, web, cluster, nodelocal)


# -- 410 Gone ------------------------------------------------------------------------------

def test_410_gone_relists_and_the_gap_makes_no_windows(
        agent_apiserver: RestartableApiServer, etcd: Etcd, kube: KubeClient,
        agent_identity: Identity, stage: Stage, tmp_path: Path) -> None:
    token = kube.request_token(agent_identity.namespace, agent_identity.name)
    wait_until(lambda: can_list_slices(agent_apiserver.client().with_token(token)), timeout=10,
               what="the grant to reach the agent's API server")
    kubeconfig = agent_apiserver.write_kubeconfig(tmp_path / "kc", token=token, user="agent")
    web = stage.web
    agent = Agent(tmp_path, kubeconfig, agent_args(web.namespace, stage.cluster,
                                                   stage.nodelocal))
    agent.start()
    ready = time.monotonic()
    try:
        before = agent.converged()
        since = len(agent.windows())
        # Freeze the agent (a long GC pause, a throttled container) before any watch renews.
        # The API server ends every watch after its timeoutSeconds; the agent, frozen, will
        # resume from the last resourceVersion it saw, which etcd then no longer has.
        os.kill(agent.pid, signal.SIGSTOP)
        try:
            frozen = time.monotonic()
            assert frozen - ready < 0.8 * WATCH_TIMEOUT - 0.5, "too slow to freeze"
            # Wait until every watch has ended and node-local's entries from the agent's own
            # probes have expired; then refill node-local now, so that its expiry is known.
            time.sleep(max(0.0, max(ready + 1.2 * WATCH_TIMEOUT + 0.8, frozen + TTL + 0.3)
                           - time.monotonic()))
            filled = stage.fill()
            gone = web.delete("web-2")  # the gap: the agent will only learn it by relisting
            web.slice_has(2)
            serves(stage.cluster, web)
            etcd.compact()
        finally:
            os.kill(agent.pid, signal.SIGCONT)
        after = agent.eventually(lambda f: total(
            f, "dns_staleness_watch_restarts_total", reason="gone") >= 1 and total(
            f, "dns_staleness_watch_events_total", kind="EndpointSlice", type="RELIST") > total(
            before, "dns_staleness_watch_events_total", kind="EndpointSlice", type="RELIST"),
            "a 410 Gone and a relist")
        assert total(after, "dns_staleness_watch_restarts_total", reason="error") == 0
        # node-local still serves the removed pod, CoreDNS no longer does: the gauges show it,
        # with no window behind. (The two layers' first probes after the relist answer in
        # either order, so the state is awaited, not one scrape.)
        stale = agent.eventually(lambda f: total(
            f, "dns_staleness_stale_records", layer="node-local", namespace=web.namespace,
            service="web") >= 1 and total(
            f, "dns_staleness_stale_records", layer="coredns") == 0,
            "the gap change to show as stale on node-local only")
        assert time.monotonic() < filled + TTL, "too slow: node-local expired the answer"
        assert counts(stale) == counts(before), "the gap made window samples"

        # Still correct afterwards: a pod deleted now is measured on the fresh layer.
        removed = web.delete("web-1")
        measured = agent.window(since, "stale", "coredns", removed)
        assert measured.seconds < 5, measured
        assert time.monotonic() < filled + TTL, "too slow: node-local expired the answer"
        # node-local drops both at its cache expiry: only the deletion the watch saw is a
        # window; the gap change closes without a sample.
        agent.window(since, "stale", "node-local", removed, timeout=TTL + 5)
        done = agent.eventually(lambda f: not total(f, "dns_staleness_stale_records"),
                                "node-local to catch up", timeout=15)
        windows = agent.windows()[since:]
        assert not [w for w in windows if about(w, gone)], windows
        assert all(about(w, removed) for w in windows), windows
        for (metric, layer), value in counts(done).items():
            logged = [w for w in windows if w.layer == layer and w.reference == "watch" and (
                w.kind == "stale") == (metric == "window")]
            assert value - counts(before)[(metric, layer)] == len(logged), (metric, layer)
        assert len([w for w in windows if w.layer == "node-local"]) >= 2  # A and SRV
    finally:
        code = agent.stop()
    assert code == 0, agent.tail()


async def test_watcher_from_a_compacted_version_gets_410_and_relists(
        agent_apiserver: RestartableApiServer, etcd: Etcd, kube: KubeClient,
        namespace: str) -> None:
    """The same path, on one Watcher in this process: a resume from a resourceVersion the
    server no longer has gets 410 Gone, then one Relisted with the current objects, then live
    events. And a watch that simply ran to its timeout resets the backoff.

    (The session API server's watch cache holds every event since it started, so it would
    replay them instead; the agent's API server has no cache, and etcd is compacted.)"""
    await asyncio.to_thread(kube.create_headless_service, namespace, "web", {"app": "web"})
    compacted = etcd.compact()
    found: list[SourceEvent] = []
    restarts: list[str] = []
    access = from_kubeconfig(str(agent_apiserver.kubeconfig_path))

    async def until(check: Callable[[], bool], what: str) -> None:
        for _ in range(150):
            if check():
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{what}: {restarts} {found}")

    async with aiohttp.ClientSession() as session:
        watcher = Watcher(KubeApi(access, session),
                          Resource(Kind.SERVICE, "", "services", namespace),
                          found.append, restarts.append, watch_timeout=1)
        watcher.listed.set()
        watcher.resource_version = str(compacted - 2)  # etcd no longer has it
        task = asyncio.create_task(watcher.run())
        try:
            await until(lambda: any(isinstance(e, Relisted) for e in found), "no relist")
            assert restarts == ["gone"]
            # The list comes item by item between its start and its end, nothing replayed.
            end = next(i for i, e in enumerate(found) if isinstance(e, Relisted))
            assert found[0] == Relisting(Kind.SERVICE) and found[end] == Relisted(
                Kind.SERVICE, namespace=namespace)
            assert [(e.type, e.obj["metadata"]["name"]) for e in found[1:end]
                    if isinstance(e, ObjectEvent)] == [(LISTED, "web")] and end == 2
            await asyncio.to_thread(kube.create_headless_service, namespace, "db", {"app": "db"})
            await until(lambda: any(isinstance(e, ObjectEvent) and e.type == "ADDED" and
                                    e.obj["metadata"]["name"] == "db" for e in found),
                        "no live event")
            for _ in range(6):  # as after a long outage
                watcher.backoff.next()
            await asyncio.sleep(2.5)  # quiet watches of 1 s end and resume meanwhile
            assert 0.8 <= watcher.backoff.next() <= 1.6
            assert restarts == ["gone"]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


# -- an API server restart -------------------------------------------------------------------

RETRY = re.compile(r"^watch (?P<what>.+?): .*; (reconnecting|retrying)$")


def test_api_server_restart_reconnects_with_backoff_and_invents_no_windows(
        agent_apiserver: RestartableApiServer, kube: KubeClient, agent_identity: Identity,
        stage: Stage, tmp_path: Path) -> None:
    token = kube.request_token(agent_identity.namespace, agent_identity.name)
    wait_until(lambda: can_list_slices(agent_apiserver.client().with_token(token)), timeout=10,
               what="the grant to reach the agent's API server")
    kubeconfig = agent_apiserver.write_kubeconfig(tmp_path / "kc", token=token, user="agent")
    web = stage.web
    agent = Agent(tmp_path, kubeconfig, agent_args(web.namespace, stage.cluster,
                                                   stage.nodelocal))
    agent.start()
    try:
        before = agent.converged()
        since = len(agent.windows())
        # A crash: connections break mid-stream. (A graceful stop first waits for the open
        # watches to time out, up to 12 s here, and then refuses connections.)
        assert agent_apiserver.pid is not None
        os.killpg(agent_apiserver.pid, signal.SIGKILL)
        agent_apiserver.stop()
        try:
            down = agent.eventually(lambda f: total(
                f, "dns_staleness_watch_restarts_total", reason="error") >= 1,
                "the agent to notice", timeout=10)
            gone = web.delete("web-2")  # while the agent cannot watch
            web.slice_has(2)
            serves(stage.cluster, web)
            time.sleep(2.5)
            outage = agent.samples()
            for layer in ("coredns", "node-local"):  # the DNS layers are still probed
                assert total(outage, "dns_staleness_probes_total", layer=layer) > total(
                    down, "dns_staleness_probes_total", layer=layer), layer
        finally:
            agent_apiserver.start()
        back = agent.eventually(lambda f: total(
            f, "dns_staleness_watch_events_total", kind="EndpointSlice", type="RELIST") > total(
            before, "dns_staleness_watch_events_total", kind="EndpointSlice", type="RELIST"),
            "the agent to relist", timeout=40)
        assert total(back, "dns_staleness_watch_restarts_total", reason="gone") == 0
        # Backoff, not a hot loop: each watcher's retries at growing intervals from 0.8 s.
        retries: dict[str, list[float]] = {}
        for line in agent.log_lines():
            match = RETRY.match(line.msg)
            if match and line.level == "warn" and line.logger == "exporter.io.watch":
                retries.setdefault(match.group("what"), []).append(line.wall)
        # Headless and mirrored slices and Services: no layer here needs the kube-dns Service,
        # so it is not watched (the coredns layer is a static server).
        assert len(retries) == 3, list(retries)
        for what, times in retries.items():
            gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
            assert 2 <= len(times) <= 7, (what, times)
            assert all(gap >= 0.75 for gap in gaps), (what, gaps)
        errors = total(back, "dns_staleness_watch_restarts_total", reason="error")
        assert errors == sum(len(t) for t in retries.values()), errors

        time.sleep(1.5)  # fast mode probes the relisted target meanwhile
        settled = agent.samples()
        assert counts(settled) == counts(before), "the outage made window samples"
        assert not [w for w in agent.windows()[since:] if about(w, gone)]

        # Watching again: a pod that comes now is measured as a propagation on coredns.
        web.add("web-3", "10.244.77.30")
        measured = agent.window(since, "propagation", "coredns", "10.244.77.30")
        assert measured.seconds < 5, measured
        assert agent.alive()
    finally:
        if not agent_apiserver.running:
            agent_apiserver.start()
        code = agent.stop()
    assert code == 0, agent.tail()


# -- token rotation --------------------------------------------------------------------------

def test_rotated_token_file_is_picked_up_without_a_restart(
        apiserver: KubeApiServer, kube: KubeClient, home: str, namespace: str,
        coredns_cluster: ClusterDNSFactory, tmp_path: Path) -> None:
    web = make_web(kube, namespace, 2)
    cluster = coredns_cluster(ttl=5)
    ident = service_account(kube, home, RBAC)
    try:
        # A token that is no longer valid: its ServiceAccount was deleted and made again
        # (a new UID), as after a namespace restore. The new account gets a new token.
        with pytest.raises(KubeApiError, match="less than 10 minutes"):
            kube.request_token(home, ident.name, expiration_seconds=599)
        stale_token = kube.request_token(home, ident.name, expiration_seconds=600)
        kube.delete(api_path("v1", "serviceaccounts", home, ident.name))
        kube.create_service_account(home, ident.name)
        with pytest.raises(KubeApiError) as denied:
            kube.with_token(stale_token).list(api_path("v1", "services", namespace))
        assert denied.value.status == 401

        (tmp_path / "secrets").mkdir()
        token_file = tmp_path / "secrets" / "token"
        token_file.write_text(stale_token)
        kubeconfig = tmp_path / "kc"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "rig",
            "clusters": [{"name": "rig", "cluster": {
                "server": apiserver.url,
                "certificate-authority-data": base64.b64encode(
                    apiserver.ca_file.read_bytes()).decode()}}],
            "users": [{"name": "agent", "user": {"tokenFile": "secrets/token"}}],
            "contexts": [{"name": "rig", "context": {"cluster": "rig", "user": "agent"}}]}))
        agent = Agent(tmp_path, kubeconfig, agent_args(namespace, cluster, None)).launch()
        try:
            refused = agent.eventually(lambda f: total(
                f, "dns_staleness_watch_restarts_total", reason="unauthorized") >= 1,
                "the agent to be refused")
            assert agent.get("/readyz")[0] != 200
            log = agent.log_path.read_text()
            assert any(line.level == "error" and line.logger == "exporter.io.watch"
                       and line.msg.startswith("the API server rejected the credentials from "
                                               f"{kubeconfig} (401 Unauthorized")
                       for line in agent.log_lines()), agent.tail()
            assert "Traceback" not in log

            # The kubelet writes the new token the way it updates projected volumes: a new
            # file renamed over the old one.
            fresh = kube.request_token(home, ident.name, expiration_seconds=600)
            (tmp_path / "secrets" / ".token.new").write_text(fresh)
            os.replace(tmp_path / "secrets" / ".token.new", token_file)
            wait_until(lambda: agent.get("/readyz")[0] == 200 or None, timeout=20,
                       what="the agent to recover", abort=agent._exited)
            found = agent.converged(("coredns",))
            assert total(found, "dns_staleness_targets") == 1
            assert total(found, "dns_staleness_watch_restarts_total", reason="unauthorized") \
                >= total(refused, "dns_staleness_watch_restarts_total", reason="unauthorized")
            assert agent.alive()
            assert agent.log_path.read_text().count("initial sync done") == 1

            # And it keeps measuring with the new token, once a whole sweep has asked every
            # name: a removal of a name not yet asked since the sync opens no window.
            agent.eventually(lambda f: any(n == "dns_staleness_sweep_period_seconds"
                                           for n, _, _ in f), "a whole sweep")
            since = len(agent.windows())
            removed = web.delete("web-1")
            agent.window(since, "stale", "coredns", removed)
        finally:
            code = agent.stop()
        assert code == 0, agent.tail()
    finally:
        drop(kube, ident)


# -- RBAC --------------------------------------------------------------------------------------

def test_rbac_denied_names_the_verb_and_resource(
        apiserver: KubeApiServer, kube: KubeClient, home: str, agent_identity: Identity,
        tmp_path: Path) -> None:
    services_only = [rule for rule in RBAC if rule["apiGroups"] == [""]]
    assert services_only and len(services_only) < len(RBAC)
    ident = service_account(kube, home, services_only)
    try:
        token = kube.request_token(home, ident.name)
        kubeconfig = apiserver.write_kubeconfig(tmp_path / "kc", token=token, user="limited")
        agent = Agent(tmp_path, kubeconfig, [
            # Cluster scope (no --namespaces), and a layer that needs the denied slices: it
            # has no server to probe.
            "--layers", "coredns", "--node-name", "rig-node-0"]).launch()
        try:
            first = agent.eventually(lambda f: total(
                f, "dns_staleness_watch_restarts_total", reason="forbidden") >= 2,
                "the agent to be denied")
            agent.eventually(lambda f: total(
                f, "dns_staleness_watch_restarts_total", reason="forbidden") > total(
                first, "dns_staleness_watch_restarts_total", reason="forbidden"),
                "the agent to keep retrying")
            log = agent.log_path.read_text()
            said = next((li for li in agent.log_lines()
                         if "cannot list/watch discovery.k8s.io/endpointslices at cluster "
                            "scope" in li.msg), None)
            assert said is not None, agent.tail()
            assert said.level == "error", said
            assert "RBAC denied" in said.msg
            assert f"system:serviceaccount:{home}:{ident.name}" in said.msg
            assert ("the chart's ClusterRole grants get, list and watch on services and "
                    "discovery.k8s.io/endpointslices") in said.msg
            assert "cannot list/watch discovery.k8s.io/endpointslices in namespace kube-system" \
                in log
            assert "RBAC denied: cannot list/watch services" not in log  # those are granted
            assert "Traceback" not in log
            assert agent.get("/readyz")[0] == 503
            found = agent.samples()
            assert total(found, "dns_staleness_probes_total") == 0
            assert total(found, "dns_staleness_watch_restarts_total", reason="error") == 0
            assert agent.alive()
        finally:
            code = agent.stop()
        assert code == 0, agent.tail()
    finally:
        drop(kube, ident)

    # The chart's grants and nothing more: the same kind of token reads what it needs and
    # is refused everything else.
    chart = kube.with_token(kube.request_token(agent_identity.namespace, agent_identity.name))
    assert isinstance(chart.list(api_path("v1", "services")), list)
    assert isinstance(chart.list(api_path(SLICES, "endpointslices", "kube-system")), list)
    denied: dict[str, Callable[[], object]] = {
        "create a Service": lambda: chart.create(api_path("v1", "services", home), {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
            "spec": {"ports": [{"port": 80}]}}),
        "delete an EndpointSlice": lambda: chart.delete(
            api_path(SLICES, "endpointslices", home, "x")),
        "list pods": lambda: chart.list(api_path("v1", "pods")),
        "get a Secret": lambda: chart.get(api_path("v1", "secrets", home, "x")),
        "list nodes": lambda: chart.list(api_path("v1", "nodes")),
    }
    for what, call in denied.items():
        with pytest.raises(KubeApiError) as info:
            call()
        assert info.value.status == 403, (what, info.value)
