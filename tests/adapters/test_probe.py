"""The probe engine against the lab's DNS servers on loopback, with faults switched on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from exporter.core.budget import Budget
from exporter.core.dnsmsg import QueryWire
from exporter.core.records import Question, ServerRef
from exporter.core.resolvconf import ResolvConf
from exporter.io.lab import KubernetesBackend, LabCluster, LabDnsServer, LabPod, closed_port
from exporter.io.probe import Prober, SearchProber

ZONE = "cluster.local"
SVC = Question("web.lab.svc.cluster.local.", "A")


@pytest.fixture
async def server() -> AsyncIterator[LabDnsServer]:
    cluster = LabCluster(ZONE, lambda *args: None)
    cluster.add_service("lab", "web")
    cluster.add_service("lab", "big")
    for i in range(3):
        cluster.set_pod("lab", "web", LabPod(f"web-{i}", f"10.0.0.{i + 1}", hostname=f"web-{i}"))
    for i in range(100):
        cluster.set_pod("lab", "big", LabPod(f"big-{i}", f"10.1.{i // 200}.{i % 200 + 1}"))
    lab = LabDnsServer(KubernetesBackend(cluster), ZONE)
    await lab.start("127.0.20.1")
    yield lab
    lab.close()


def prober(address: str, timeout: float = 0.5) -> Prober:
    return Prober(ServerRef("lab", address), timeout, QueryWire())


async def test_answers_are_sets_with_ttl(server: LabDnsServer) -> None:
    p = prober(server.address)
    result = await p.probe(SVC)
    assert result.result == "noerror" and result.answer is not None
    assert result.answer.values == {"10.0.0.1", "10.0.0.2", "10.0.0.3"}
    assert result.answer.ttl == 5
    srv = await p.probe(Question("_http._tcp.web.lab.svc.cluster.local.", "SRV"))
    assert srv.answer is not None and "80 web-1.web.lab.svc.cluster.local." in srv.answer.values
    p.close()


async def test_nxdomain_is_an_answer_with_negative_ttl(server: LabDnsServer) -> None:
    p = prober(server.address)
    result = await p.probe(Question("nope.lab.svc.cluster.local.", "A"))
    assert result.result == "nxdomain" and result.answer is not None
    assert result.answer.values == frozenset() and result.answer.ttl == 5
    p.close()


async def test_many_queries_in_flight_on_one_socket(server: LabDnsServer) -> None:
    p = prober(server.address)
    names = [Question(f"web-{i % 3}.web.lab.svc.cluster.local.", "A") for i in range(200)]
    results = await asyncio.gather(*(p.probe(q) for q in names))
    assert [r.answer.values for r in results if r.answer] == [
        {f"10.0.0.{i % 3 + 1}"} for i in range(200)]
    assert p.unmatched == 0
    p.close()


async def test_large_answer_is_truncated_then_fetched_over_tcp(server: LabDnsServer) -> None:
    p = prober(server.address)
    result = await p.probe(Question("big.lab.svc.cluster.local.", "A"))
    assert result.tcp and result.result == "noerror" and result.answer is not None
    assert len(result.answer.values) == 100
    p.close()


async def test_forced_truncation_retries_over_tcp(server: LabDnsServer) -> None:
    server.faults.truncate = True
    result = await prober(server.address).probe(SVC)
    assert result.tcp and result.answer is not None and len(result.answer.values) == 3


@pytest.mark.parametrize(("fault", "expected"), [
    ("servfail", "servfail"), ("wrong_id", "timeout"), ("drop", "timeout"),
    ("garbage", "malformed"),
])
async def test_faults_become_error_classes(server: LabDnsServer, fault: str,
                                           expected: str) -> None:
    setattr(server.faults, fault, True)
    p = prober(server.address, timeout=0.3)
    result = await p.probe(SVC)
    assert result.result == expected and result.answer is None
    if fault == "wrong_id":
        assert p.unmatched == 1
    p.close()


async def test_slow_server_times_out(server: LabDnsServer) -> None:
    server.faults.delay = 0.5
    result = await prober(server.address, timeout=0.1).probe(SVC)
    assert result.result == "timeout"
    assert 0.09 <= result.received - result.sent < 0.4


async def test_closed_port_is_refused_at_once() -> None:
    p = prober(closed_port("127.0.20.2"), timeout=2.0)
    result = await p.probe(SVC)
    assert result.result == "refused"
    assert result.received - result.sent < 0.5
    again = await p.probe(SVC)
    assert again.result == "refused"
    p.close()


async def test_a_search_takes_each_name_tried_from_the_budget(server: LabDnsServer) -> None:
    """`web.lab` under ndots:2 with two search domains before the right one: three queries,
    the result the written question's, and the two extra ones paid for by the budget (2 qps,
    burst 1): they cannot go out before the budget refills."""
    conf = ResolvConf(search=("corp.svc.cluster.local", "nope.svc.cluster.local",
                              "svc.cluster.local"), ndots=2)
    budget = Budget(2, 1)
    clock = asyncio.get_running_loop().time
    assert budget.try_take(clock())  # the scheduler's query for the first name
    search = SearchProber(prober(server.address), conf, budget)
    started = clock()
    result = await search.probe(Question("web.lab", "A"))
    took = clock() - started
    assert result.question == Question("web.lab", "A")
    assert result.answer is not None and result.answer.values == {
        "10.0.0.1", "10.0.0.2", "10.0.0.3"}
    assert took >= 0.9, took  # two more queries at 2 qps after the first
    absolute = await search.probe(SVC)  # an FQDN is asked as it is, without a search
    assert absolute.answer is not None and absolute.question == SVC
    search.close()
