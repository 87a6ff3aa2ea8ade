"""The probe budget and the scheduler, on an injected clock."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.core.budget import Budget
from exporter.core.records import Question, ServerRef, Target
from exporter.core.schedule import ProbeKey, Scheduler

T = Target("ns", "web")
QS = tuple(Question(f"q{i}.web.ns.svc.cluster.local.", "A") for i in range(3))
SERVERS = (ServerRef("coredns", "10.0.0.1:53"), ServerRef("node-local", "10.0.0.2:53"))


def max_in_any_second(times: list[float]) -> int:
    return max((sum(1 for u in times if t <= u < t + 1.0) for t in times), default=0)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 50), st.data(),
       st.lists(st.floats(0.0, 0.3), min_size=1, max_size=400))
def test_budget_never_exceeds_qps_in_any_one_second_window(
        qps: int, data: st.DataObject, gaps: list[float]) -> None:
    burst = data.draw(st.integers(1, qps))
    budget = Budget(qps, burst)
    now, sent = 0.0, []
    for gap in gaps:
        now += gap
        while budget.try_take(now):
            sent.append(now)
    assert max_in_any_second(sent) <= qps
    # Back to back, never more than the burst.
    assert max(sum(1 for u in sent if u == t) for t in sent) <= burst


def test_budget_sustains_its_rate_and_says_when_it_is_free() -> None:
    budget = Budget(10, 2)
    now, sent = 0.0, 0
    while now < 10.0:
        if budget.try_take(now):
            sent += 1
        else:
            free = budget.next_free(now)
            assert free > now
            now = free
    assert 95 <= sent <= 101


@pytest.mark.parametrize(("qps", "burst"), [(0.5, 1), (10, 0), (10, 11)])
def test_budget_rejects_impossible_settings(qps: float, burst: int) -> None:
    with pytest.raises(ValueError):
        Budget(qps, burst)


def scheduler(qps: float = 100, burst: int = 4) -> Scheduler:
    s = Scheduler(Budget(qps, burst), random.Random(7), fast_interval=0.1, fast_cap=5.0,
                  sweep_interval=3.0)
    s.set_servers(SERVERS)
    s.set_plan(T, QS, 0.0)
    return s


def run(s: Scheduler, until: float, start: float = 0.0) -> list[tuple[float, ProbeKey]]:
    now, sent = start, list[tuple[float, ProbeKey]]()
    while now < until:
        sent += [(now, key) for key in s.due(now)]
        now = max(s.next_wake(now), now + 1e-4)
    return sent


def test_steady_sweep_covers_every_pair_once_per_interval() -> None:
    sent = run(scheduler(), 3.0 * 4)
    keys = [k for _, k in sent]
    assert set(keys) == {ProbeKey(T, q, s) for q in QS for s in SERVERS}
    assert 6 * 2 <= len(keys) <= 6 * 8


def test_fast_mode_probes_every_interval_until_settled_or_capped() -> None:
    s = scheduler()
    run(s, 1.0)
    s.changed(T, 1.0)
    sent = run(s, 2.0, start=1.0)
    fast = [(t, k) for t, k in sent if k.server == SERVERS[0] and k.question == QS[0]]
    assert 9 <= len(fast) <= 12
    s.settle(T, SERVERS[0])
    after = run(s, 3.0, start=2.0)
    assert sum(1 for _, k in after if k.server == SERVERS[0]) <= 3
    assert sum(1 for _, k in after if k.server == SERVERS[1]) >= 25
    late = [k for t, k in run(s, 8.0, start=3.0) if t >= 6.5]
    assert len(late) <= 6


def test_fast_mode_over_budget_is_deferred_and_counted() -> None:
    s = scheduler(qps=10, burst=2)
    s.changed(T, 0.0)
    sent = run(s, 2.0)
    assert max_in_any_second([t for t, _ in sent]) <= 10
    assert s.deferred_total > 0


def test_jitter_differs_between_agents() -> None:
    a, b = scheduler(), scheduler()
    b.rng = random.Random(8)
    assert [k for _, k in run(a, 3.0)] != [k for _, k in run(b, 3.0)]


def test_steady_sweep_starts_promptly_when_the_plan_arrives_late() -> None:
    s = Scheduler(Budget(20, 4), random.Random(3), sweep_interval=30.0)
    s.set_servers(SERVERS)
    assert s.due(0.0) == []  # nothing to probe yet: no plan
    for i in range(100):
        s.set_plan(Target("ns", f"svc{i}"), QS, 0.5)
    sent = run(s, 10.0, start=0.5)
    # 600 pairs over a 30 s sweep, capped at half the budget: 10 per second.
    assert 70 <= len(sent) <= 110


def test_fast_mode_entries_go_when_settled_expired_or_forgotten() -> None:
    s = scheduler()
    s.changed(T, 0.0)
    other = Target("ns", "other")
    s.set_plan(other, QS, 0.0)
    s.changed(other, 0.0)
    s.settle(T, SERVERS[0])
    assert s.in_fast_mode(T, SERVERS[1], 1.0) and not s.in_fast_mode(T, SERVERS[0], 1.0)
    assert not s.in_fast_mode(T, SERVERS[1], 6.0)  # the 5 s cap passed
    s.set_plan(other, (), 6.0)
    assert s._fast_until == {}
