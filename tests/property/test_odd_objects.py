"""Odd API objects through the agent's watch decoder (issue 16, faults): fields missing, of the
wrong type, huge, or of kinds the API server itself would refuse. Each event is counted
INVALID or taken in; none raises past Agent.ingest, and an INVALID one changes nothing."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from exporter.agent import Agent
from exporter.core.events import LISTED, Kind, ObjectEvent, Relisted, Relisting, Synced
from exporter.core.records import Target
from exporter.io.metrics import Metrics
from exporter.settings import load

NS = "odd"


def service(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS, "resourceVersion": "1",
                         "labels": {"app": name}},
            "spec": {"clusterIP": "None", "selector": {"app": name},
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}


def endpoint_slice(name: str, ips: list[str]) -> dict[str, Any]:
    return {"metadata": {"name": f"{name}-abcde", "namespace": NS, "resourceVersion": "2",
                         "labels": {"kubernetes.io/service-name": name,
                                    "service.kubernetes.io/headless": ""},
                         "annotations": {"endpoints.kubernetes.io/last-change-trigger-time":
                                         "2026-12-06T10:00:00Z"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "hostname": f"p{i}", "nodeName": "n",
                           "conditions": {"ready": True, "serving": True,
                                          "terminating": False},
                           "targetRef": {"kind": "Pod", "name": f"p{i}", "namespace": NS}}
                          for i, ip in enumerate(ips)],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}


ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2**63, 2**63), st.floats(allow_nan=True),
    st.text(max_size=20), st.just("x" * 100_000), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.sampled_from(["IPv9", "FQDN", "IPv6", "None", "::1", "10.0.0.1 ", "999.1.1.1",
                     "::ffff:10.0.0.1", "-1", "http", "\x00", "ñ" * 70]))


def paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key or index path into the object."""
    out = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.append((*prefix, key))
            out += paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            out.append((*prefix, index))
            out += paths(value, (*prefix, index))
    return out


@st.composite
def mutated(draw: st.DrawFn, obj: dict[str, Any]) -> dict[str, Any]:
    """The object with one to four of its fields dropped or replaced by odd values."""
    odd = copy.deepcopy(obj)
    for _ in range(draw(st.integers(1, 4))):
        found = paths(odd)
        if not found:
            break
        path = draw(st.sampled_from(found))
        parent = odd
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(ODD_VALUES)
    return odd


def synced_agent() -> tuple[Agent, Metrics]:
    metrics = Metrics(CollectorRegistry())
    agent = Agent(load("run", {}, {}, None), (), metrics)
    for name, ips in (("web", ["10.0.0.1", "10.0.0.2"]), ("db", ["10.0.1.1"])):
        agent.ingest(ObjectEvent(Kind.SERVICE, "ADDED", service(name)))
        agent.ingest(ObjectEvent(Kind.ENDPOINT_SLICE, "ADDED", endpoint_slice(name, ips)))
    agent.ingest(Synced())
    return agent, metrics


def answers(agent: Agent) -> dict[Target, dict[Any, frozenset[str] | None]]:
    return {t: {q: agent.comparator.expected(q) for q in agent.comparator.questions(t)}
            for t in sorted(agent.truth.monitored)}


def invalid(metrics: Metrics) -> float:
    return sum(s.value for f in metrics.registry.collect() for s in f.samples
               if s.name == "dns_staleness_watch_events_total" and s.labels["type"] == "INVALID")


EVENTS = st.one_of(
    st.tuples(st.just(Kind.ENDPOINT_SLICE), st.sampled_from(["ADDED", "MODIFIED", "DELETED"]),
              mutated(endpoint_slice("web", ["10.0.0.1", "10.0.0.2"]))),
    st.tuples(st.just(Kind.SERVICE), st.sampled_from(["ADDED", "MODIFIED", "DELETED"]),
              mutated(service("web"))),
    st.tuples(st.sampled_from([Kind.ENDPOINT_SLICE, Kind.SERVICE, Kind.DNS_ENDPOINT_SLICE,
                               Kind.UNLABELLED_ENDPOINT_SLICE]),
              st.sampled_from(["ADDED", "MODIFIED", "BOOKMARK", "WEIRD"]), ODD_VALUES))


@given(st.lists(EVENTS, min_size=1, max_size=5))
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_no_odd_object_escapes_ingest_and_an_invalid_one_changes_nothing(
        events: list[tuple[Kind, str, Any]]) -> None:
    agent, metrics = synced_agent()
    for kind, kind_of_event, obj in events:
        before, counted = answers(agent), invalid(metrics)
        agent.ingest(ObjectEvent(kind, kind_of_event, obj))
        if invalid(metrics) > counted:
            assert answers(agent) == before
    db = Target(NS, "db")
    assert agent.comparator.expected(
        next(q for q in agent.comparator.questions(db) if q.rtype == "A"
             and q.name.startswith("db."))) == frozenset({"10.0.1.1"})


def test_a_slice_of_5000_endpoints_and_huge_labels_are_taken_in() -> None:
    """The API server refuses more than 1,000 endpoints per slice; the decoder must not care."""
    agent, metrics = synced_agent()
    ips = [f"10.{i // 250}.{i % 250}.1" for i in range(5000)]
    big = endpoint_slice("web", ips)
    big["metadata"]["labels"]["x" * 63] = "y" * 100_000
    agent.ingest(ObjectEvent(Kind.ENDPOINT_SLICE, "MODIFIED", big))
    assert invalid(metrics) == 0
    web = next(q for q in agent.comparator.questions(Target(NS, "web"))
               if q.rtype == "A" and q.name.startswith("web."))
    assert agent.comparator.expected(web) == frozenset(ips)


def test_an_odd_item_of_a_relist_is_left_out_not_the_relist() -> None:
    """A relist comes item by item; one that cannot be read is counted INVALID and the rest
    replace the state. A relist cut off by an error and started again counts only once."""
    agent, metrics = synced_agent()
    agent.ingest(Relisting(Kind.ENDPOINT_SLICE))
    agent.ingest(ObjectEvent(Kind.ENDPOINT_SLICE, LISTED, endpoint_slice("web", ["10.0.0.9"])))
    agent.ingest(Relisting(Kind.ENDPOINT_SLICE))  # the first list broke off: from the start
    agent.ingest(ObjectEvent(Kind.ENDPOINT_SLICE, LISTED, endpoint_slice("web", ["10.0.0.3"])))
    agent.ingest(ObjectEvent(Kind.ENDPOINT_SLICE, LISTED, {"metadata": {"name": 7}}))
    agent.ingest(Relisted(Kind.ENDPOINT_SLICE))
    assert invalid(metrics) == 1
    web, db = (next(q for q in agent.comparator.questions(Target(NS, name))
                    if q.rtype == "A" and q.name.startswith(f"{name}."))
               for name in ("web", "db"))
    assert agent.comparator.expected(web) == frozenset({"10.0.0.3"})
    assert agent.comparator.expected(db) == frozenset()  # db's slice was not in the relist
