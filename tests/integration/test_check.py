"""`check` against the real API server and CoreDNS: one test per failure cause, each asserting
the exact verdict lines, and a healthy Service that gets all ok."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import jsonschema
import pytest

from tests.integration.agent import SCENARIOS, Checker
from tests.rig import CoreDNS, KubeApiServer, KubeClient, Rig, api_path, next_loopback_address

pytestmark = pytest.mark.rig

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "check-output.schema.json").read_text())
NS = "checked"


class Env:
    def __init__(self, kube: KubeClient, kubeconfig: Path, cluster: CoreDNS,
                 nodelocal: CoreDNS, workdir: Path) -> None:
        self.kube, self.kubeconfig, self.workdir = kube, kubeconfig, workdir
        self.cluster, self.nodelocal = cluster, nodelocal
        self.next_ip = 10

    def pod(self, service: str, name: str, *, hostname: str | None = "",
            subdomain: str | None = "", ready: bool = True) -> str:
        self.next_ip += 1
        ip = f"10.244.9.{self.next_ip}"
        self.kube.create_pod(NS, name, {"app": service},
                             hostname=name if hostname == "" else hostname,
                             subdomain=service if subdomain == "" else subdomain)
        self.kube.set_pod_ready(NS, name, ip, ready=ready)
        return ip

    def service(self, name: str, pods: int, **kwargs: Any) -> list[str]:
        self.kube.create_headless_service(NS, name, {"app": name}, **kwargs)
        ips = [self.pod(name, f"{name}-{i}") for i in range(pods)]
        if pods:
            self.kube.wait_for_endpointslice(NS, name, lambda s: sum(
                len(x.get("endpoints") or []) for x in s) == pods)
        return ips

    def check(self, service: str, *args: str,
              cluster: CoreDNS | None = None) -> tuple[int, dict[str, Any]]:
        resolv = self.workdir / "resolv.conf"
        resolv.write_text(f"nameserver {self.nodelocal.address}\n"
                          f"search {NS}.svc.cluster.local svc.cluster.local cluster.local\n"
                          "options ndots:5\n")
        proc = subprocess.run(
            [sys.executable, "-m", "exporter", "check", f"{NS}/{service}", "--output", "json",
             "--kubeconfig", str(self.kubeconfig), "--layers", "node-local",
             "--static-servers", f"coredns={(cluster or self.cluster).hostport}",
             "--node-local-address", self.nodelocal.hostport, "--resolv-conf", str(resolv),
             *args], capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode in (0, 1), proc.stderr
        report = json.loads(proc.stdout)
        jsonschema.validate(report, SCHEMA)
        return proc.returncode, report


def lines(report: dict[str, Any], section: str | None = None) -> list[tuple[str, str]]:
    return [(c["status"], c["message"]) for c in report["checks"]
            if section is None or c["section"] == section]


@pytest.fixture(scope="module")
def env(rig_bins: Rig, apiserver: KubeApiServer, kube: KubeClient,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    work = tmp_path_factory.mktemp("check")
    cluster = CoreDNS.cluster(rig_bins.coredns, work / "cluster", apiserver=apiserver, ttl=5,
                              cache=5, name="check-cluster").start()
    nodelocal = CoreDNS.nodelocal(rig_bins.coredns, work / "nodelocal", upstream=cluster,
                                  success_ttl=30, denial_ttl=5, name="check-nodelocal").start()
    kube.create_namespace(NS)
    configmaps = api_path("v1", "configmaps", "kube-system")
    for name, server in (("coredns", cluster), ("node-local-dns", nodelocal)):
        kube.create(configmaps, {"metadata": {"name": name},
                                 "data": {"Corefile": server.corefile}})
    try:
        yield Env(kube, apiserver.kubeconfig_path, cluster, nodelocal, work)
    finally:
        nodelocal.stop()
        cluster.stop()
        for name in ("coredns", "node-local-dns"):
            kube.delete(api_path("v1", "configmaps", "kube-system", name), missing_ok=True)
        for pod in kube.list(api_path("v1", "pods", NS)):
            kube.delete_pod(NS, pod["metadata"]["name"], grace_seconds=0)


def test_healthy_service_is_all_ok(env: Env) -> None:
    env.service("healthy", 3)
    time.sleep(1)
    code, report = env.check("healthy")
    assert code == 0 and report["verdict"] == "ok", report["checks"]
    assert lines(report, "service") == [("ok", "headless (clusterIP: None), with a selector")]
    assert lines(report, "ports") == [("ok", "SRV records: _http._tcp")]
    assert lines(report, "endpoints") == [("ok", "3 ready, 0 not ready (0 terminating) in "
                                                 "1 EndpointSlice")]
    assert lines(report, "pods") == [("ok", "3 pods: hostnames and subdomains match")]
    # The Service's A, bare SRV and _http._tcp SRV, and each pod's A and SRV: 9 names.
    assert lines(report, "dns") == [
        ("ok", f"coredns {env.cluster.hostport}: 9 names agree with the truth (TTL 5, "
               f"{_rtt(report, 'coredns')})"),
        ("ok", f"node-local {env.nodelocal.hostport}: 9 names agree with the truth (TTL 5, "
               f"{_rtt(report, 'node-local')})")]
    assert ("ok", "coredns can serve a removed record for up to 5 s, a cached NXDOMAIN for up "
                  "to 5 s") in lines(report, "cluster-dns")
    assert ("ok", "node-local can serve a removed record for up to 10 s, a cached NXDOMAIN for "
                  "up to 10 s") in lines(report, "cluster-dns")
    assert report["bounds"]["node-local"] == {"stale": 10, "negative": 10}
    # What each client profile can see: the bound plus its hold (kubernetes plugin TTL 5).
    assert lines(report, "clients") == [
        ("ok", "jvm clients can dial a deleted pod for up to 40 s through node-local (bound "
               "10 s), a new pod unknown for up to 20 s; for up to 35 s through coredns (bound "
               "5 s), a new pod unknown for up to 15 s"),
        ("ok", "grpc clients can dial a deleted pod for up to 40 s through node-local (bound "
               "10 s), a new pod unknown for up to 40 s; for up to 35 s through coredns (bound "
               "5 s), a new pod unknown for up to 35 s")]
    assert lines(report, "resolver") == [
        ("ok", f"{form!r} takes {n} queries per address family (ndots:5); a lost packet on "
               "any costs 5 s")
        for form, n in (("healthy.checked", 2), ("healthy.checked.svc", 3),
                        ("healthy.checked.svc.cluster.local", 4))
    ] + [("ok", "one query: healthy, healthy.checked.svc.cluster.local.; write "
                "healthy.checked.svc.cluster.local. (trailing dot) in client configuration")]


def _rtt(report: dict[str, Any], layer: str) -> str:
    message = next(m for s, m in lines(report, "dns") if m.startswith(layer))
    return message.rsplit(", ", 1)[1].rstrip(")")


def test_unnamed_ports_mean_no_srv(env: Env) -> None:
    env.service("unnamed", 1, ports=(("", 8080, "TCP"),))
    code, report = env.check("unnamed")
    assert ("warn", "no named port (8080/TCP): no SRV records") in lines(report, "ports")
    assert report["verdict"] == "warn" and code == 0


def test_hostname_without_subdomain(env: Env) -> None:
    env.service("nosub", 1)
    env.pod("nosub", "nosub-x", subdomain=None)
    code, report = env.check("nosub")
    assert ("fail", "nosub-x sets hostname 'nosub-x' but no subdomain: it gets no per-pod "
                    "record") in lines(report, "pods")
    assert code == 1


def test_a_pod_without_hostname_is_what_the_agent_calls_it(env: Env) -> None:
    env.service("mixed", 1)
    env.pod("mixed", "mixed-plain", hostname=None, subdomain=None)
    env.kube.wait_for_endpointslice(NS, "mixed", lambda s: sum(
        len(x.get("endpoints") or []) for x in s) == 2)
    code, report = env.check("mixed")
    assert ("warn", "endpoint_without_hostname: some endpoints have no hostname (mixed-plain), "
                    "so only those with one get a per-pod record by name") in lines(
        report, "pods")
    assert code == 0


def test_a_resolver_that_does_not_serve_the_zone_is_no_node_local(
        env: Env, rig_bins: Rig) -> None:
    """It answers, but NXDOMAIN for everything: taking it as node-local would fail every
    name of the Service as missing."""
    address = next_loopback_address()
    wrong = CoreDNS(rig_bins.coredns, env.workdir / "wrong",
                    f". {{\n    bind {address}\n    template IN ANY . {{\n        rcode NXDOMAIN"
                    "\n    }\n}\n", address=address, name="check-wrong").start()
    try:
        env.service("misrouted", 1)
        code, report = env.check("misrouted", "--node-local-address", wrong.hostport)
    finally:
        wrong.stop()
    assert ("warn", f"node-local at {wrong.hostport} answers NXDOMAIN with no SOA for "
                    "cluster.local: it does not serve the cluster zone; not probed") in lines(
        report, "dns")
    assert not [c for c in report["checks"] if c["status"] == "fail"], report["checks"]
    assert code == 0


def test_subdomain_mismatch(env: Env) -> None:
    env.service("db", 1)
    env.pod("db", "db-x", subdomain="database")
    code, report = env.check("db")
    assert ("fail", "db-x has subdomain 'database', not 'db': no db-x.db record") in lines(
        report, "pods")
    assert code == 1


def test_not_ready_pod(env: Env) -> None:
    env.service("flaky", 1)
    env.pod("flaky", "flaky-1", ready=False)
    code, report = env.check("flaky")
    assert [line for line in lines(report, "pods") if "flaky-1" in line[1]] == [
        ("warn", "flaky-1 not Ready (no reason given)")]
    assert ("ok", "1 ready, 1 not ready (0 terminating) in 1 EndpointSlice") in lines(
        report, "endpoints")


def test_selectorless_service_without_slices(env: Env) -> None:
    env.kube.create(api_path("v1", "services", NS), {
        "metadata": {"name": "external"},
        "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}})
    code, report = env.check("external")
    assert lines(report, "endpoints") == [
        ("fail", "selectorless Service without EndpointSlices: no DNS records")]
    assert code == 1


def ask(server: CoreDNS, name: str) -> None:
    dns.query.udp(dns.message.make_query(name, "A"), server.address, port=server.port,
                  timeout=2)


def test_node_local_holding_a_deleted_ip(env: Env) -> None:
    ips = env.service("cached", 2)
    name = f"cached.{NS}.svc.cluster.local."
    time.sleep(6)  # let any earlier cache entries for the name expire
    ask(env.cluster, name)  # CoreDNS caches the answer for 5 s
    time.sleep(4)
    ask(env.nodelocal, name)  # node-local re-caches it with 1 s left, clamped up to 5 s
    env.kube.delete_pod(NS, "cached-1", grace_seconds=0)
    stale = (f"node-local {env.nodelocal.hostport}: stale cached.checked.svc.cluster.local. A "
             f"{ips[1]}")
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        code, report = env.check("cached")
        dns_lines = lines(report, "dns")
        coredns_ok = [s for s, m in dns_lines if m.startswith("coredns")] == ["ok"]
        if ("fail", stale) in dns_lines and coredns_ok:
            assert code == 1 and report["verdict"] == "fail"
            return
        time.sleep(0.3)
    pytest.fail(f"node-local never showed {ips[1]} as stale while CoreDNS was fresh")


def test_coredns_ttl_30_against_a_bound_of_5(env: Env, rig_bins: Rig,
                                             apiserver: KubeApiServer) -> None:
    slow = CoreDNS.cluster(rig_bins.coredns, env.workdir / "slow", apiserver=apiserver, ttl=30,
                           cache=30, name="check-slow").start()
    path = api_path("v1", "configmaps", "kube-system", "coredns")
    try:
        env.kube.patch(path, {"data": {"Corefile": slow.corefile}})
        env.service("strict", 1)
        code, report = env.check("strict", "--max-staleness", "5", cluster=slow)
    finally:
        env.kube.patch(path, {"data": {"Corefile": env.cluster.corefile}})
        slow.stop()
    assert ("ok", "kubernetes ttl 30, cache 30 s (min 5 s), denials 30 s (min 5 s)") in lines(
        report, "cluster-dns")
    assert ("fail", "coredns can serve a removed record for up to 30 s, a cached NXDOMAIN for "
                    "up to 30 s, over the expected 5 s") in lines(report, "cluster-dns")
    assert code == 1


def test_watch_reports_windows_and_a_100_pod_service_is_fast(env: Env) -> None:
    env.service("big", 100)
    time.sleep(1)
    started = time.monotonic()
    code, report = env.check("big")
    elapsed = time.monotonic() - started
    SCENARIOS.append(("check runtime, 100-pod Service", "all", "-", "-", f"{elapsed:.2f}s"))
    assert code == 0, report["checks"]
    # The Service's A, bare SRV and _http._tcp SRV, and each pod's A and SRV.
    assert len(report["servers"][0]["names"]) == 203
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "check", f"{NS}/big", "--output", "json",
         "--kubeconfig", str(env.kubeconfig), "--layers", "node-local", "--follow", "18",
         # Every name is probed on both layers before the deletion, so each layer's stale
         # answer is seen from its start (the default 30 s sweep might not reach it first).
         "--sweep-interval", "2",
         "--static-servers", f"coredns={env.cluster.hostport}", "--probe-budget-qps", "400",
         "--node-local-address", env.nodelocal.hostport], stdout=subprocess.PIPE, text=True)
    # Clients keep both caches warm, so the deletion leaves a stale answer to watch expire.
    clients = Checker({"coredns": (env.cluster.address, env.cluster.port),
                       "node-local": (env.nodelocal.address, env.nodelocal.port)},
                      [(f"big.{NS}.svc.cluster.local.", "A")], interval=0.2).start()
    try:
        time.sleep(6)
        env.kube.delete_pod(NS, "big-7", grace_seconds=0)
        out, _ = proc.communicate(timeout=120)
    finally:
        clients.stop()
    report = json.loads(out)
    jsonschema.validate(report, SCHEMA)
    closed = {(w["layer"], w["kind"]) for w in report["windows"] if w["event"] == "closed"}
    assert {("coredns", "stale"), ("node-local", "stale")} <= closed, report["windows"]


@pytest.mark.parametrize("case", ["credentials rejected", "no RBAC grant"])
def test_api_failures_end_in_one_line(env: Env, apiserver: KubeApiServer, tmp_path: Path,
                                      case: str) -> None:
    if case == "credentials rejected":
        token, user = "not-a-token", "nobody"
        expected = (f"check {NS}/web: the API server at {apiserver.url} rejected the "
                    "credentials from ")
    else:
        user = "no-grants"
        env.kube.create_service_account(NS, user)
        token = env.kube.request_token(NS, user)
        expected = (f"check {NS}/web: RBAC denies get /api/v1/namespaces/{NS}/services/web (")
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "kubeconfig", token=token, user=user)
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "check", f"{NS}/web", "--kubeconfig",
         str(kubeconfig), "--layers", "node-local"],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(expected) and proc.stderr.count("\n") == 1, proc.stderr
    assert "listen" not in proc.stderr and not proc.stdout
