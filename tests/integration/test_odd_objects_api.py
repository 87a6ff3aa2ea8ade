"""Odd objects through the real API server (issue 16, faults): 1,000 Services and
EndpointSlices, each with one to three odd choices among those a cluster can hold (no hostname,
conditions missing or null, terminating but serving, FQDN and IPv6 slices, no ports or
unnamed ones, a slice of 1,000 endpoints, duplicated addresses, a slice without its Service
label, a slice without the headless label, made by hand or by some tool, an ExternalName or
non-headless Service, 200 KB of annotations, ...). Some the API server refuses; those go to
the agent's watch decoder instead (Agent.ingest), where each is taken in or counted INVALID,
never raised.

The accepted ones reach the real agent by its real watch while a real CoreDNS serves them.
The agent must stay up, and once CoreDNS has caught up no record may be stale or missing:
what the agent expects for every accepted object is what CoreDNS serves. A disagreement would
be a window that never closes, a phantom."""

from __future__ import annotations

import contextlib
import copy
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.query
import pytest
from prometheus_client import CollectorRegistry

from exporter.agent import Agent
from exporter.core.dnsmsg import QueryWire
from exporter.core.events import Kind, ObjectEvent, Synced
from exporter.core.records import Question, ServerRef
from exporter.io.metrics import Metrics
from exporter.io.probe import Prober
from exporter.settings import load
from tests.integration.agent import AgentProcess, Samples, samples, total
from tests.rig import (
    ClusterDNSFactory,
    CoreDNS,
    KubeApiError,
    KubeApiServer,
    KubeClient,
    api_path,
    wait_until,
)

pytestmark = pytest.mark.rig

SLICES = "discovery.k8s.io/v1"
PAIRS = 500
"""Services, each with one slice: 1,000 objects."""


def service(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name},
            "spec": {"clusterIP": "None", "selector": {"app": name},
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}


def endpoint_slice(name: str, index: int) -> dict[str, Any]:
    return {"metadata": {"name": f"{name}-odd",
                         "labels": {"kubernetes.io/service-name": name,
                                    "endpointslice.kubernetes.io/managed-by": "dse-odd",
                                    "service.kubernetes.io/headless": ""}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [f"10.70.{index // 100}.{index % 100 * 2 + k + 1}"],
                           "hostname": f"p{k}", "conditions": {"ready": True}}
                          for k in range(2)],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}


def thousand(s: dict[str, Any], rng: random.Random) -> None:
    """1,000 endpoints, the most a slice may hold, without hostnames: 2,000 more names."""
    s["endpoints"] = [{"addresses": [f"10.71.{i // 250}.{i % 250 + 1}"],
                       "conditions": {"ready": True}} for i in range(1000)]


BIG = {16, 84, 166}
"""The pairs whose slice also gets `thousand`: it costs the sweep 2,000 names a slice."""


def _endpoints(s: dict[str, Any]) -> list[dict[str, Any]]:
    endpoints: list[dict[str, Any]] = s["endpoints"]
    return endpoints


MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
CONTROLLER = "endpointslice-controller.k8s.io"


def by_controller(s: dict[str, Any]) -> None:
    labels = s["metadata"]["labels"]
    if "service.kubernetes.io/headless" not in labels:
        raise KeyError("the controller labels every slice of a headless Service headless")
    labels[MANAGED_BY] = CONTROLLER


def unlabelled(s: dict[str, Any], managed_by: str | None) -> None:
    """Without the headless label, managed by `managed_by` (None: no such label)."""
    labels = s["metadata"]["labels"]
    if labels.get(MANAGED_BY) == CONTROLLER:
        raise KeyError("the controller labels every slice of a headless Service headless")
    labels.pop("service.kubernetes.io/headless")
    labels.pop(MANAGED_BY)
    if managed_by is not None:
        labels[MANAGED_BY] = managed_by


Oddity = Callable[[dict[str, Any], random.Random], object]
"""Changes an object in place."""

SLICE_ODDITIES: dict[str, Oddity] = {
    "no hostname": lambda s, r: _endpoints(s)[0].pop("hostname"),
    "conditions missing": lambda s, r: _endpoints(s)[0].pop("conditions"),
    "ready null": lambda s, r: _endpoints(s)[0].update(conditions={"ready": None}),
    "terminating, serving": lambda s, r: _endpoints(s)[0].update(
        conditions={"ready": False, "serving": True, "terminating": True}),
    "not ready": lambda s, r: _endpoints(s)[1].update(conditions={"ready": False}),
    "no endpoints": lambda s, r: s.update(endpoints=[]),
    "one address twice": lambda s, r: _endpoints(s)[1].update(
        addresses=_endpoints(s)[0]["addresses"]),
    "two endpoints, one hostname": lambda s, r: _endpoints(s)[1].update(hostname="p0"),
    "FQDN": lambda s, r: s.update(addressType="FQDN", endpoints=[
        {"addresses": ["db.example.com"], "conditions": {"ready": True}}]),
    "IPv6": lambda s, r: s.update(addressType="IPv6", endpoints=[
        {"addresses": [f"fd00:70::{r.randrange(1, 9999):x}"], "hostname": "p6",
         "conditions": {"ready": True}}]),
    "no ports": lambda s, r: s.pop("ports"),
    "empty ports": lambda s, r: s.update(ports=[]),
    "unnamed port": lambda s, r: s.update(ports=[{"port": 80, "protocol": "TCP"}]),
    "all ports (port null)": lambda s, r: s.update(ports=[{"name": "", "port": None}]),
    "UDP port": lambda s, r: s.update(ports=[{"name": "dns", "port": 53, "protocol": "UDP"}]),
    "no Service label": lambda s, r: s["metadata"]["labels"].pop(
        "kubernetes.io/service-name"),
    "managed by the controller": lambda s, r: by_controller(s),
    "no headless label": lambda s, r: unlabelled(s, "dse-odd"),
    "made by hand": lambda s, r: unlabelled(s, None),
    "targetRef to a Node": lambda s, r: _endpoints(s)[0].update(
        targetRef={"kind": "Node", "name": "n1"}),
    "zone and hints": lambda s, r: _endpoints(s)[0].update(
        zone="z-1", nodeName="n-1", hints={"forZones": [{"name": "z-1"}]}),
    "hostname of 63": lambda s, r: _endpoints(s)[0].update(hostname="h" * 63),
    "uppercase hostname": lambda s, r: _endpoints(s)[0].update(hostname="P0"),
    "address with spaces": lambda s, r: _endpoints(s)[0].update(addresses=["10.70.0.1 "]),
    "loopback address": lambda s, r: _endpoints(s)[0].update(addresses=["127.0.0.5"]),
    "200 KB of annotations": lambda s, r: s["metadata"].update(
        annotations={f"a{i}": "x" * 20_000 for i in range(10)}),
    "100 labels": lambda s, r: s["metadata"]["labels"].update(
        {f"l{i}.example.com/k": "v" * 63 for i in range(100)}),
    "wrong type": lambda s, r: s.update(endpoints="many"),
}


SERVICE_ODDITIES: dict[str, Oddity] = {
    "no ports": lambda s, r: s["spec"].pop("ports"),
    "unnamed port": lambda s, r: s["spec"].update(ports=[{"port": 80, "protocol": "TCP"}]),
    "two ports": lambda s, r: s["spec"]["ports"].append(
        {"name": "grpc", "port": 9090, "protocol": "TCP"}),
    "publishNotReadyAddresses": lambda s, r: s["spec"].update(publishNotReadyAddresses=True),
    "not headless": lambda s, r: s["spec"].pop("clusterIP"),
    "ExternalName": lambda s, r: s.update(spec={"type": "ExternalName",
                                                "externalName": "db.example.com"}),
    "no selector": lambda s, r: s["spec"].pop("selector"),
    "IPv6 family": lambda s, r: s["spec"].update(ipFamilies=["IPv6"]),
    "dual-stack preferred": lambda s, r: s["spec"].update(ipFamilyPolicy="PreferDualStack"),
    "200 KB of annotations": lambda s, r: s["metadata"].update(
        annotations={f"a{i}": "x" * 20_000 for i in range(10)}),
    "label of 63": lambda s, r: s["metadata"].update(labels={"k" * 63: "v" * 63}),
    "port name too long": lambda s, r: s["spec"]["ports"][0].update(name="p" * 64),
    "wrong type": lambda s, r: s["spec"].update(ports="http"),
}


def odd(base: dict[str, Any], oddities: dict[str, Oddity], rng: random.Random) -> tuple[
        dict[str, Any], list[str]]:
    """The object with one to three oddities, and the names of those that applied (an
    earlier one may have taken away what a later one changes)."""
    obj = copy.deepcopy(base)
    applied = []
    for name in rng.sample(sorted(oddities), rng.randint(1, 3)):
        with contextlib.suppress(KeyError, IndexError, TypeError, AttributeError):
            oddities[name](obj, rng)
            applied.append(name)
    return obj, applied


def post(kube: KubeClient, path: str, obj: dict[str, Any]) -> bool:
    try:
        kube.create(path, obj)
    except KubeApiError as exc:
        assert exc.status in (400, 422), exc  # refused as invalid, nothing else
        return False
    return True


def refused_through_the_decoder(refused: list[tuple[Kind, dict[str, Any]]]) -> None:
    """What the API server refused, as a watch could still bring it (an old server, a proxy):
    taken in or counted INVALID, never raised."""
    agent = Agent(load("run", {}, {}, None), (), Metrics(CollectorRegistry()))
    agent.ingest(Synced())
    for kind, obj in refused:
        obj = {**obj, "metadata": {**obj.get("metadata", {}), "namespace": "odd",
                                   "resourceVersion": "1"}}
        agent.ingest(ObjectEvent(kind, "ADDED", obj))


@pytest.mark.timeout(600)
def test_odd_objects_the_api_server_accepts_are_expected_as_coredns_serves_them(
        apiserver: KubeApiServer, kube: KubeClient, namespace: str,
        coredns_cluster: ClusterDNSFactory, tmp_path: Path) -> None:
    cluster = coredns_cluster(ttl=5)
    agent = AgentProcess(tmp_path, apiserver.kubeconfig_path, [
        "--namespaces", namespace, "--static-servers", f"coredns={cluster.hostport}",
        "--layers", "", "--probe-budget-qps", "1000", "--probe-burst", "50",
        "--sweep-interval", "5", "--max-targets", str(2 * PAIRS)]).start()
    rng = random.Random(16)
    accepted: dict[str, int] = {}
    chosen_for: dict[str, list[str]] = {}
    refused: list[tuple[Kind, dict[str, Any]]] = []
    try:
        for i in range(PAIRS):
            name = f"odd-{i:03d}"
            svc, svc_odd = (odd(service(name), SERVICE_ODDITIES, rng) if i % 2 else
                            (service(name), []))
            eps, eps_odd = odd(endpoint_slice(name, i), SLICE_ODDITIES, rng)
            if i in BIG:
                thousand(eps, rng)
                eps_odd.append("1,000 endpoints")
            for kind, path, obj, chosen in (
                    (Kind.SERVICE, api_path("v1", "services", namespace), svc, svc_odd),
                    (Kind.ENDPOINT_SLICE, api_path(SLICES, "endpointslices", namespace), eps,
                     eps_odd)):
                if post(kube, path, obj):
                    chosen_for.setdefault(name, []).extend(
                        f"{kind.value}: {what}" for what in chosen)
                    for what in chosen:
                        accepted[what] = accepted.get(what, 0) + 1
                else:
                    refused.append((kind, obj))
        posted = time.monotonic()
        # CoreDNS has caught up (ttl 5, no cache) and the agent has swept every name since.
        try:
            found = wait_until(lambda: settled(agent, posted), timeout=180, interval=1.0,
                               what="no record stale or missing")
        except TimeoutError:
            left = agent.status()["open_windows"]
            found = samples(agent.metrics())
            assert left, ("no open window, yet: sweep period "
                          f"{total(found, 'dns_staleness_sweep_period_seconds')}, stale "
                          f"{total(found, 'dns_staleness_stale_records')}, missing "
                          f"{total(found, 'dns_staleness_missing_records')}")
            first = left[0]
            served = ask(cluster, first["name"], first["type"])
            raise AssertionError(
                f"{len(left)} records disagree, first {first} of {first['service']} with "
                f"{chosen_for.get(first['service'])}; CoreDNS serves {served}") from None
        assert agent.proc is not None and agent.proc.poll() is None, agent.tail()
    finally:
        code = agent.stop()
    assert code == 0, agent.tail()
    print(f"\n{2 * PAIRS} objects: {2 * PAIRS - len(refused)} accepted, {len(refused)} "
          f"refused; settled {time.monotonic() - posted:.0f} s after the last")
    print("accepted oddities: " + ", ".join(f"{k} {v}" for k, v in sorted(accepted.items())))
    assert len(refused) < PAIRS and len(accepted) >= 20, accepted
    assert total(found, "dns_staleness_targets") >= PAIRS / 2
    assert "Traceback" not in agent.log_path.read_text()
    refused_through_the_decoder(refused)


def settled(agent: AgentProcess, posted: float) -> Samples | None:
    """The agent's metrics once two whole sweeps since `posted` found nothing stale or
    missing."""
    found = samples(agent.metrics())
    period = total(found, "dns_staleness_sweep_period_seconds")
    open_now = total(found, "dns_staleness_stale_records") + total(
        found, "dns_staleness_missing_records")
    late_enough = period > 0 and time.monotonic() > posted + 5 + 2 * period
    return found if late_enough and open_now == 0 else None


def ask(server: CoreDNS, name: str, rtype: str) -> str:
    query = dns.message.make_query(name, rtype, use_edns=0, payload=1232)
    reply, tcp = dns.query.udp_with_fallback(query, server.address, port=server.port,
                                             timeout=5)
    values = [r.to_text() for rrset in reply.answer for r in rrset]
    return (f"{len(values)} values over {'TCP' if tcp else 'UDP'}, TC "
            f"{bool(reply.flags & dns.flags.TC)}: {values[:3]}")


async def test_srv_records_past_64_kb_come_cut_with_tc_even_over_tcp(
        kube: KubeClient, namespace: str, coredns_cluster: ClusterDNSFactory) -> None:
    """What the first run of the test above found: the agent read a cut answer as whole, and
    the records cut off as missing for good. SRV targets are never compressed, so 1,000
    endpoints' records at a long name pass 64 KB; CoreDNS cuts the answer and sets TC over
    TCP too (request.Scrub). The prober marks such an answer incomplete."""
    name = "a-service-whose-srv-records-are-long"
    kube.create(api_path("v1", "services", namespace), service(name))
    big = endpoint_slice(name, 0)
    thousand(big, random.Random(0))
    kube.create(api_path(SLICES, "endpointslices", namespace), big)
    cluster = coredns_cluster(ttl=5)
    domain = f"{name}.{namespace}.svc.cluster.local."
    prober = Prober(ServerRef("coredns", cluster.hostport), 5.0, QueryWire())
    try:
        a = await prober.probe(Question(domain, "A"))
        srv = await prober.probe(Question(f"_http._tcp.{domain}", "SRV"))
    finally:
        prober.close()
    assert a.answer is not None and a.answer.complete and len(a.answer.values) == 1000, a
    assert srv.result == "noerror" and srv.tcp and srv.answer is not None, srv
    assert not srv.answer.complete and 500 < len(srv.answer.values) < 1000, len(
        srv.answer.values)
