"""The kubernetes plugin's scope options on the real CoreDNS: `namespaces`, `labels`,
`namespace_labels` and `noendpoints` (docs/design.md, "Semantics").

Each CoreDNS runs one option. The agent's reading of that Corefile (`check`'s parser, mapped
onto the `coredns_*` settings) and its truth must expect exactly what CoreDNS serves: NXDOMAIN
for a Service out of scope, with a misconfiguration that names the option, and the served
slices only for one in scope. Before these options were modelled, every out-of-scope name was
a missing window that never closed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from exporter.core.corefile import settings_of
from exporter.core.events import Kind
from exporter.core.objects import namespace_name, parse_service, parse_slice
from exporter.core.records import Question, Target, service_domain
from exporter.core.selection import PluginScope
from exporter.core.truth import Truth
from exporter.io.watch import resources
from tests.integration.agent import ask, listed
from tests.rig import CoreDNS, KubeApiServer, KubeClient, Rig, api_path, wait_until

pytestmark = pytest.mark.rig

ZONE = "cluster.local"
EXPOSED, HIDDEN = "scope-exposed", "scope-hidden"
OPTIONS = {
    "namespaces": f"namespaces {EXPOSED}",
    "labels": "labels dns=on",
    "namespace_labels": "namespace_labels dns in (exposed)",
    "noendpoints": "noendpoints",
}
IPS = {(EXPOSED, "labelled"): ("10.3.0.1", "10.3.0.2"),
       (EXPOSED, "plain"): ("10.3.0.3", "10.3.0.4"),
       (HIDDEN, "labelled"): ("10.3.1.1", "10.3.1.2"),
       (HIDDEN, "plain"): ("10.3.1.3", "10.3.1.4")}
"""Per Service, its slices' addresses, one slice each."""


@pytest.fixture(scope="module")
def objects(kube: KubeClient) -> Iterator[None]:
    """Two namespaces, one labelled dns=exposed; in each, a Service labelled dns=on and one
    without labels, each with a first slice labelled dns=on and a second one without."""
    for ns, labels in ((EXPOSED, {"dns": "exposed"}), (HIDDEN, {})):
        kube.create(api_path("v1", "namespaces"), {"metadata": {"name": ns, "labels": labels}})
    for (ns, name), ips in IPS.items():
        labels = {"dns": "on"} if name == "labelled" else {}
        kube.create(api_path("v1", "services", ns), {
            "metadata": {"name": name, "labels": labels},
            "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}})
        for i, ip in enumerate(ips):
            kube.create(api_path("discovery.k8s.io/v1", "endpointslices", ns), {
                "metadata": {"name": f"{name}-{i}", "labels": {
                    "kubernetes.io/service-name": name, "service.kubernetes.io/headless": "",
                    **({"dns": "on"} if i == 0 else {})}},
                "addressType": "IPv4", "ports": [{"name": "http", "port": 80}],
                "endpoints": [{"addresses": [ip], "hostname": f"{name}-{i}"}]})
    yield
    for ns in (EXPOSED, HIDDEN):
        kube.delete(api_path("v1", "namespaces", ns), missing_ok=True)


@pytest.fixture(scope="module", params=list(OPTIONS))
def coredns(request: pytest.FixtureRequest, rig_bins: Rig, apiserver: KubeApiServer,
            objects: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoreDNS]:
    server = CoreDNS.cluster(rig_bins.coredns, tmp_path_factory.mktemp("scope"),
                             apiserver=apiserver, name=f"scope-{request.param}",
                             kubernetes_options=[OPTIONS[request.param]])
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def agent_truth(apiserver: KubeApiServer, corefile: str) -> Truth:
    """The truth as `run` builds it, with the scope `check` reads from this Corefile, fed by
    the agent's own watchers."""
    read = settings_of(corefile, ZONE)
    scope = PluginScope(frozenset(read.namespaces), read.labels, read.namespace_labels,
                        read.noendpoints)
    truth = Truth(ZONE, lambda s: True, 100, scope=scope)
    watches = {r.kind: r for r in resources((), "kube-system", "kube-dns",
                                            scope.namespace_labels)}
    if scope.namespace_labels:
        found, _ = await listed(apiserver, watches[Kind.NAMESPACE])
        truth.replace_namespaces(map(namespace_name, found), 0.0)
    services, _ = await listed(apiserver, watches[Kind.SERVICE])
    for raw in services:
        if raw["metadata"]["namespace"] in (EXPOSED, HIDDEN):
            truth.apply_service(parse_service(raw), 0.0)
    slices, _ = await listed(apiserver, watches[Kind.ENDPOINT_SLICE])
    for raw in slices:
        if raw["metadata"]["namespace"] in (EXPOSED, HIDDEN):
            truth.apply_slice(parse_slice(raw, plugin_labels=scope.labels_matcher), 0.0, 0.0)
    return truth


def served_by(server: CoreDNS, truth: Truth, target: Target) -> dict[str, Any]:
    """Every question of the target, and every per-endpoint name of its slices, where
    CoreDNS and the truth disagree."""
    expected = truth._answers(target)
    domain = service_domain(target, ZONE)
    names = {domain} | {f"{target.service}-{i}.{domain}" for i in range(2)}
    wrong = {}
    for question in set(expected) | {Question(n, "A") for n in names}:
        rcode, values = ask(server, question)
        if values != expected.get(question, frozenset()):
            wrong[str(question)] = (rcode, sorted(values), sorted(expected.get(question, ())))
    return wrong


async def test_out_of_scope_services_are_nxdomain_and_named_as_such(
        apiserver: KubeApiServer, coredns: CoreDNS) -> None:
    truth = await agent_truth(apiserver, coredns.corefile)
    # CoreDNS's informers may lag the creates: wait until it serves some name at all.
    served = [t for t in truth.monitored if any(truth._answers(t).values())]
    if served:
        first = service_domain(served[0], ZONE)
        wait_until(lambda: ask(coredns, Question(first, "A"))[1] or None, timeout=20,
                   what=f"{coredns.name} to serve {first}")
    wrong = {str(t): served_by(coredns, truth, t) for t in sorted(truth.monitored)}
    assert not any(wrong.values()), wrong
    reasons = truth.misconfigurations()
    out = {t for t in truth.monitored if not any(truth._answers(t).values())}
    assert out, "every option puts some Service out of scope"
    for target in out:
        assert reasons[target] & {"outside_namespaces", "outside_labels",
                                  "outside_namespace_labels", "noendpoints"}, target
