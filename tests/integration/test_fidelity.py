"""The truth model against the real CoreDNS: for EndpointSlices of every shape the API server
accepts, each answer the agent expects is the answer CoreDNS serves, and every name CoreDNS
serves for them is one the agent expects (docs/design.md, "Semantics").

The slices are hand-made, for selectorless Services, so that each shape is exactly as written
(hostnames, pod names, no names, IPv6 addresses ending in `::`, FQDN slices, no ports); the
agent reads them back from the API server with its own reader. This API server refuses
non-canonical and IPv4-mapped address text on create (objects stored before that validation
may still carry it): tests/unit/test_truth.py covers those through the reader."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from exporter.core.events import Kind
from exporter.core.objects import parse_service, parse_slice
from exporter.core.records import Question, dashed_ip, service_domain
from exporter.core.truth import expected_answers, misconfigurations
from exporter.io.watch import resources
from tests.integration.agent import ask, listed
from tests.rig import CoreDNS, KubeApiServer, KubeClient, Rig, api_path, wait_until

pytestmark = pytest.mark.rig

NS = "fidelity"
ZONE = "cluster.local"
LONG_POD = "p" * 70
"""A targetRef name too long to be a DNS label: CoreDNS ignores it."""


def endpoint(address: str, *, hostname: str | None = None, pod: str | None = None,
             ready: bool | None = True) -> dict[str, Any]:
    out: dict[str, Any] = {"addresses": [address]}
    if ready is not None:
        out["conditions"] = {"ready": ready}
    if hostname:
        out["hostname"] = hostname
    if pod:
        out["targetRef"] = {"kind": "Pod", "namespace": NS, "name": pod}
    return out


NAMED_PORTS = [{"name": "http", "port": 80, "protocol": "TCP"},
               {"name": "", "port": 9000, "protocol": "UDP"}]
"""Slice ports; a Service with two ports must name both, a hand-made slice need not."""
SERVICE_PORTS = [{"name": "http", "port": 80, "protocol": "TCP"},
                 {"name": "gossip", "port": 9000, "protocol": "UDP"}]
SHAPES: dict[str, tuple[list[dict[str, Any]], str, list[dict[str, Any]], list[dict[str, Any]]]] = {
    # service ports, slice address type, slice ports, endpoints
    "names": (SERVICE_PORTS, "IPv4", NAMED_PORTS, [
        endpoint("10.1.0.1", hostname="web-0", pod="web-0"),
        endpoint("10.1.0.2", pod="web-1"),
        endpoint("10.1.0.3"),
        endpoint("10.1.0.4", pod=LONG_POD),
        endpoint("10.1.0.5", pod="web-5", ready=False),
        endpoint("10.1.0.6", pod="web-6", ready=None),
    ]),
    "ipv6": (SERVICE_PORTS, "IPv6", NAMED_PORTS, [
        endpoint("fd00:10:244::"),
        endpoint("fd00::5", pod="v6-5"),
        endpoint("fd00:10:244::7", hostname="v6-7"),
    ]),
    "fqdn": (SERVICE_PORTS, "FQDN", NAMED_PORTS, [endpoint("db.example.com")]),
    "noports": ([], "IPv4", [], [endpoint("10.1.3.1", hostname="np-0"), endpoint("10.1.3.2")]),
}


@pytest.fixture(scope="module")
def fidelity_namespace(kube: KubeClient) -> str:
    kube.create_namespace(NS)
    return NS


@pytest.fixture(scope="module")
def shapes(kube: KubeClient,
           fidelity_namespace: str) -> Iterator[dict[str, tuple[Any, list[Any]]]]:
    """Each shape as the API server stored it: the Service and its slices."""
    stored = {}
    for name, (svc_ports, address_type, slice_ports, endpoints) in SHAPES.items():
        service = kube.create(api_path("v1", "services", NS), {
            "metadata": {"name": name},
            "spec": {"clusterIP": "None", "ports": [
                {**p, "targetPort": p["port"]} for p in svc_ports]}})
        one = kube.create(api_path("discovery.k8s.io/v1", "endpointslices", NS), {
            "metadata": {"name": f"{name}-1", "labels": {"kubernetes.io/service-name": name}},
            "addressType": address_type, "ports": slice_ports, "endpoints": endpoints})
        stored[name] = (service, [one])
    yield stored
    for name in SHAPES:
        kube.delete(api_path("v1", "services", NS, name), missing_ok=True)
        kube.delete(api_path("discovery.k8s.io/v1", "endpointslices", NS, f"{name}-1"),
                    missing_ok=True)


def candidates(domain: str, endpoints: list[dict[str, Any]]) -> set[Question]:
    """Every name an endpoint could plausibly be served under, on the test's own reading."""
    names = {domain}
    for e in endpoints:
        for label in (e.get("hostname"), (e.get("targetRef") or {}).get("name"),
                      *(dashed_ip(a) for a in e["addresses"])):
            if label and len(label) <= 63:  # a longer label cannot even be asked
                names.add(f"{label.lower()}.{domain}")
    return {Question(n, t) for n in names for t in ("A", "AAAA", "SRV")}


@pytest.fixture(scope="module", params=["plain", "endpoint_pod_names"])
def coredns(request: pytest.FixtureRequest, rig_bins: Rig, apiserver: KubeApiServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CoreDNS, bool]]:
    pod_names = request.param == "endpoint_pod_names"
    server = CoreDNS.cluster(rig_bins.coredns, tmp_path_factory.mktemp("fidelity"),
                             apiserver=apiserver, name=f"fidelity-{request.param}",
                             kubernetes_options=["endpoint_pod_names"] if pod_names else [])
    server.start()
    try:
        yield server, pod_names
    finally:
        server.stop()


@pytest.mark.parametrize("shape", list(SHAPES))
def test_the_truth_is_what_coredns_serves(shape: str, shapes: dict[str, Any],
                                          coredns: tuple[CoreDNS, bool]) -> None:
    server, pod_names = coredns
    raw_service, raw_slices = shapes[shape]
    service = parse_service(raw_service)
    slices = [parse_slice(s, pod_names=pod_names) for s in raw_slices]
    assert not any(s.invalid_addresses for s in slices), "no address of these is invalid"
    expected = expected_answers(service, slices, ZONE)
    domain = service_domain(service.target, ZONE)
    # The informer may lag the create: wait until CoreDNS knows the Service at all.
    deadline = time.monotonic() + 20
    while ask(server, Question(domain, "A"))[0] == "NXDOMAIN" and time.monotonic() < deadline \
            and expected[Question(domain, "A")]:
        time.sleep(0.2)
    wrong = {}
    for question in sorted(set(expected) | candidates(domain, SHAPES[shape][3])):
        rcode, served = ask(server, question)
        want = expected.get(question, frozenset())
        if served != want or rcode not in ("NOERROR", "NXDOMAIN"):
            wrong[str(question)] = (rcode, sorted(served), sorted(want))
    assert not wrong, f"served (rcode, values) against expected values: {wrong}"


def test_fqdn_slices_are_no_misconfiguration(shapes: dict[str, Any]) -> None:
    raw_service, raw_slices = shapes["fqdn"]
    assert misconfigurations(parse_service(raw_service),
                             [parse_slice(s) for s in raw_slices]) == frozenset()


async def test_mirrored_slices_are_what_coredns_serves(
        apiserver: KubeApiServer, kube: KubeClient, fidelity_namespace: str,
        coredns: tuple[CoreDNS, bool]) -> None:
    """A selectorless Service backed by hand-written Endpoints: CoreDNS serves the slice that
    the real mirroring controller makes, which has no headless label; the agent's own watch
    must read it, or the Service looks empty and selectorless for ever."""
    server, pod_names = coredns
    name = f"mirrored-{'pods' if pod_names else 'plain'}"
    kube.create_endpoints_service(NS, name, {"10.2.0.1": "primary", "10.2.0.2": "replica"})
    watches = {r.kind: r for r in resources((NS,), "kube-system", "kube-dns")}
    raw_services, _ = await listed(apiserver, watches[Kind.SERVICE])
    raw_slices, _ = await listed(apiserver, watches[Kind.UNLABELLED_ENDPOINT_SLICE])
    [service] = [parse_service(s) for s in raw_services if s["metadata"]["name"] == name]
    slices = [s for s in (parse_slice(o, pod_names=pod_names) for o in raw_slices)
              if s.service == name]
    assert slices and all(s.unlabelled for s in slices)
    assert misconfigurations(service, slices) == frozenset()
    expected = expected_answers(service, slices, ZONE)
    domain = service_domain(service.target, ZONE)
    wait_until(lambda: ask(server, Question(domain, "A"))[1] == expected[Question(domain, "A")]
               or None, timeout=20, what="CoreDNS to serve the mirrored slice")
    wrong = {}
    for question, want in expected.items():
        rcode, served = ask(server, question)
        if served != want:
            wrong[str(question)] = (rcode, sorted(served), sorted(want))
    assert not wrong, f"served (rcode, values) against expected values: {wrong}"
