"""`check`'s Corefile parser against the CoreDNS binary itself: for every Corefile of the table,
CoreDNS starts or refuses to start exactly when the parser accepts or refuses it
(docs/check.md, "Bounds")."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import dns.message
import dns.query
import pytest

from exporter.core.corefile import CorefileError, bounds, settings_of
from exporter.core.records import Question
from tests.integration.agent import SCENARIOS, ask
from tests.rig import (
    ClusterDNSFactory,
    CoreDNS,
    KubeApiServer,
    KubeClient,
    NodeLocalDNSFactory,
    Rig,
    api_path,
    free_port,
    next_loopback_address,
    wait_until,
)
from tests.rig.coredns import cluster_corefile

pytestmark = pytest.mark.rig

CACHE = [
    ("cache 30", True),
    ("cache", True),
    ("cache 0", False),
    ("cache 30 cluster.local", True),
    ("cache {\n success 9984 30 10\n }", True),
    ("cache {\n success 9984 0\n }", False),
    ("cache {\n success 9984 30 -1\n }", False),
    ("cache {\n success\n }", False),
    ("cache {\n denial 9984 5 3\n }", True),
    ("cache {\n prefetch\n }", False),
    ("cache {\n prefetch 10 1m 10%\n }", True),
    ("cache {\n prefetch 10 1m 5%\n }", False),
    ("cache {\n serve_stale\n }", True),
    ("cache {\n serve_stale 1h30m\n }", True),
    ("cache {\n serve_stale 3600\n }", False),
    ("cache {\n serve_stale 1h immediate\n }", True),
    ("cache {\n serve_stale 1h bogus\n }", False),
    ("cache {\n serve_stale 1h verify 1s 30s\n }", True),
    ("cache {\n serve_stale 1h immediate 1.5s\n }", False),
    ("cache {\n serve_stale_policy prefer_positive\n }", False),
    ("cache {\n serve_stale 1h\n serve_stale_policy prefer_positive\n }", True),
    ("cache {\n disable success cluster.local\n }", True),
    ("cache {\n disable bogus\n }", False),
    ("cache {\n keepttl\n }", True),
    ("cache {\n keepttl 1\n }", False),
    ("cache {\n servfail 10m\n }", False),
    ("cache {\n bogus\n }", False),
]
KUBERNETES = [
    ("ttl 30", True),
    ("ttl 3601", False),
    ("namespaces a b", True),
    ("namespaces a\n        namespace_labels x=y", False),
    ("labels app in (a, b)", True),
    ("noendpoints", True),
]


def case_id(value: object) -> str:
    return str(value).replace("\n", " ").replace(" ", "")[:40]


def corefile(address: str, port: int, apiserver: KubeApiServer, cache: str = "",
             kubernetes: str = "") -> str:
    return (f".:{port} {{\n    bind {address}\n"
            f"    kubernetes cluster.local {{\n        kubeconfig {apiserver.kubeconfig_path}\n"
            f"        {kubernetes}\n    }}\n    {cache}\n}}\n")


def coredns_accepts(binary: Path, text: str, workdir: Path) -> tuple[bool, str]:
    """Whether CoreDNS starts on this Corefile: a refusal exits at once with the reason."""
    path = workdir / "Corefile"
    path.write_text(text)
    proc = subprocess.Popen([str(binary), "-conf", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=3)
        return False, out.strip().splitlines()[-1] if out.strip() else ""
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return True, ""


def parser_accepts(text: str) -> bool:
    try:
        settings_of(text)
    except CorefileError:
        return False
    return True


@pytest.mark.parametrize(("cache", "kubernetes", "expected"),
                         [(c, "", ok) for c, ok in CACHE] + [("", k, ok) for k, ok in KUBERNETES],
                         ids=case_id)
def test_the_parser_accepts_what_coredns_accepts(
        rig_bins: Rig, apiserver: KubeApiServer, tmp_path: Path, cache: str, kubernetes: str,
        expected: bool) -> None:
    address = next_loopback_address()
    text = corefile(address, free_port(address, udp=True), apiserver, cache, kubernetes)
    started, why = coredns_accepts(rig_bins.coredns, text, tmp_path)
    assert started is expected, f"CoreDNS {'started' if started else 'refused'}: {why}"
    assert parser_accepts(text) is expected, text


def test_the_kubeadm_node_local_bound_holds_and_is_nearly_reached(
        kube: KubeClient, namespace: str, coredns_cluster: ClusterDNSFactory,
        coredns_nodelocal: NodeLocalDNSFactory) -> None:
    """kubeadm's defaults: `ttl 30`, `cache 30`, node-local `success 9984 30`. The worst case
    is a node-local refill just before CoreDNS's entry expires: node-local is handed about 0 s
    and keeps the record for its 5 s minimum, so the bound is 35 s, not 60 s."""
    cluster = coredns_cluster(ttl=30, cache=30)
    nodelocal = coredns_nodelocal(cluster, success_ttl=30, denial_ttl=5)
    computed = bounds(settings_of(cluster.corefile), settings_of(nodelocal.corefile))
    assert computed["node-local"].stale == 35
    # 40 s: a query that raced the informer may have cached NXDOMAIN for 30 s.
    text, remove = serve_two(kube, namespace, cluster, "10.4.0", timeout=40)
    name = Question(text, "A")
    filled = time.monotonic()  # CoreDNS's cache entry lives 30 s from here
    remove()
    removed = time.monotonic()
    time.sleep(max(0.0, filled + 29.0 - time.monotonic()))
    assert ask(nodelocal, name)[1] == {"10.4.0.1", "10.4.0.2"}  # a refill with ~1 s left
    last = time.monotonic()
    while "10.4.0.2" in ask(nodelocal, name)[1] and time.monotonic() - removed < 60:
        last = time.monotonic()
        time.sleep(0.1)
    measured = last - removed
    SCENARIOS.append(("kubeadm defaults, a refill 1 s before expiry", "node-local",
                      f"{computed['node-local'].stale:g} s", f"{measured:.1f} s", "(bound)"))
    assert computed["node-local"].stale - 3 <= measured <= computed["node-local"].stale + 0.5


def test_serve_stale_with_a_healthy_upstream_serves_one_stale_answer_then_refreshes(
        rig_bins: Rig, apiserver: KubeApiServer, kube: KubeClient, namespace: str,
        tmp_path: Path) -> None:
    """docs/runbooks.md: in `immediate` mode the first query after expiry gets the old answer
    with TTL 0 and starts one background refresh, which replaces the entry, so the record
    outlives the cache lifetime by about one query; the bound adds nothing for it."""
    cluster = CoreDNS._on_fresh_address(
        rig_bins.coredns, tmp_path / "stale", "serve-stale",
        lambda address, ready_port: cluster_corefile(
            address=address, ready_port=ready_port, apiserver_url=apiserver.url,
            kubeconfig=apiserver.kubeconfig_path, ttl=5).replace(
            "    loadbalance", "    cache 5 {\n        serve_stale 1h immediate\n    }\n"
            "    loadbalance")).start()
    try:
        assert bounds(settings_of(cluster.corefile), None)["coredns"].stale == 5
        name, remove = serve_two(kube, namespace, cluster, "10.4.1")
        filled = time.monotonic()  # that answer was cached now, for 5 s
        remove()
        removed = time.monotonic()
        answers = []
        while time.monotonic() - filled < 9:
            answers.append((time.monotonic() - removed, *ttl_and_values(cluster, name)))
            time.sleep(0.1)
    finally:
        cluster.stop()
    stale = [(t, ttl) for t, ttl, values in answers if "10.4.1.2" in values]
    expired = [(t, ttl) for t, ttl in stale if ttl == 0]
    assert len(expired) == 1, answers  # one answer served stale, with TTL 0
    last = stale[-1][0]
    assert last <= filled + 5 + 0.5 - removed, answers  # then the refresh replaced it
    SCENARIOS.append(("serve_stale immediate, healthy upstream", "coredns",
                      "5 s", f"{last:.1f} s", f"{len(expired)} stale answer"))


def ttl_and_values(server: CoreDNS, name: str) -> tuple[int, set[str]]:
    reply = dns.query.udp(dns.message.make_query(name, "A"), server.address, port=server.port,
                          timeout=1.0)
    values = {r.to_text() for rrset in reply.answer for r in rrset}
    return min((rrset.ttl for rrset in reply.answer), default=-1), values


ACCEPTED = [c for c, ok in CACHE if ok]


@pytest.mark.parametrize("cache", ACCEPTED, ids=case_id)
def test_each_accepted_cache_keeps_a_removed_record_within_its_bound(
        rig_bins: Rig, apiserver: KubeApiServer, kube: KubeClient, namespace: str,
        tmp_path: Path, cache: str) -> None:
    """The worst case, measured: the entry is filled just before the removal, then the
    record is polled until CoreDNS drops it."""
    address = next_loopback_address()
    port = free_port(address, udp=True)
    text = corefile(address, port, apiserver, cache)
    read = settings_of(text)
    bound = bounds(read, None)["coredns"].stale
    reach = read.cache.lifetime(5) if read.cache else 0
    server = CoreDNS(rig_bins.coredns, tmp_path, text, address=address, port=port,
                     name="bound").start()
    try:
        name, remove = serve_two(kube, namespace, server, "10.4.2")
        remove()
        removed = time.monotonic()
        while "10.4.2.2" in ttl_and_values(server, name)[1] and \
                time.monotonic() - removed < bound + 5:
            time.sleep(0.1)
        measured = time.monotonic() - removed
    finally:
        server.stop()
    SCENARIOS.append((f"bound of {' '.join(cache.split())}"[:44], "coredns", f"{bound:g} s",
                      f"{measured:.1f} s", "(removal)"))
    assert measured <= bound + 0.5, (bound, measured)
    # Filled just before the removal, the entry lives its whole lifetime: the bound is
    # reached, not only respected (prefer_positive adds its stale time only to NXDOMAIN).
    assert measured >= reach - 1.5, (reach, measured)


def serve_two(kube: KubeClient, namespace: str, server: CoreDNS, prefix: str,
              timeout: float = 20.0) -> tuple[str, Callable[[], None]]:
    """Service `db` with the endpoints PREFIX.1 and PREFIX.2, once `server` serves both (its
    cache filled now); returns the name and a function that removes PREFIX.2."""
    kube.create(api_path("v1", "services", namespace), {
        "metadata": {"name": "db"}, "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}})
    endpoints = [{"addresses": [f"{prefix}.1"]}, {"addresses": [f"{prefix}.2"]}]
    path = api_path("discovery.k8s.io/v1", "endpointslices", namespace)
    kube.create(path, {"metadata": {"name": "db-1", "labels": {
        "kubernetes.io/service-name": "db"}}, "addressType": "IPv4", "endpoints": endpoints})
    name = f"db.{namespace}.svc.cluster.local."
    wait_until(lambda: ttl_and_values(server, name)[1] == {f"{prefix}.1", f"{prefix}.2"}
               or None, timeout=timeout, what="CoreDNS to serve both endpoints")

    def remove() -> None:
        kube.update(f"{path}/db-1", {**kube.get(f"{path}/db-1"), "endpoints": endpoints[:1]})

    return name, remove
