"""The probe budget and the scheduler, on an injected clock."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.core.budget import Budget
from exporter.core.expiry import MARGIN, PRECISION
from exporter.core.records import Question, ServerRef, Target
from exporter.core.schedule import ERROR, FIRST, LOST, WAIT, ProbeKey, Scheduler

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


@pytest.mark.parametrize(("qps", "burst"), [(0, 1), (0.5, 2), (10, 0), (10, 11)])
def test_budget_rejects_impossible_settings(qps: float, burst: int) -> None:
    with pytest.raises(ValueError):
        Budget(qps, burst)


def test_a_budget_below_one_query_a_second_sends_at_its_rate() -> None:
    """A fleet's budget shared by many agents gives each less than one query a second."""
    budget = Budget(0.25, 1)
    sent = [t / 10 for t in range(0, 400) if budget.try_take(t / 10)]
    assert sent[:3] == [0.0, 4.0, 8.0] and len(sent) == 10


def scheduler(qps: float = 100, burst: int = 4, sweep: float = 3.0,
              cap: float = 5.0) -> Scheduler:
    s = Scheduler(Budget(qps, burst), random.Random(7), fast_interval=0.1, fast_cap=cap,
                  sweep_interval=sweep)
    s.set_servers(SERVERS)
    s.set_plan(T, QS)
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


def fast_run(s: Scheduler, until: float, start: float,
             serve: Callable[[ProbeKey, float], tuple[frozenset[str], int]],
             settled: Callable[[ProbeKey, frozenset[str]], bool]) -> list[tuple[float, ProbeKey]]:
    """`run`, with every probe answered at once by `serve` (values, TTL at that time)."""
    now, sent = start, list[tuple[float, ProbeKey]]()
    while now < until:
        for key in s.due(now):
            sent.append((now, key))
            values, ttl = serve(key, now)
            s.answered(key, now, now + RTT, values, ttl, settled(key, values))
        now = max(s.next_wake(now), now + 1e-4)
    return sent


RTT = 0.001
OLD, NEW = frozenset({"10.1.1.1"}), frozenset({"10.1.1.2"})


def cache(expires: float, ttl: int = 30) -> Callable[[ProbeKey, float], tuple[frozenset[str], int]]:
    """A CoreDNS cache that holds OLD until `expires`, then fetches NEW at the first query."""
    stored: list[float] = []

    def serve(key: ProbeKey, t: float) -> tuple[frozenset[str], int]:
        if t < expires:
            return OLD, math.ceil(expires - t)
        if not stored:
            stored.append(t)
        return NEW, ttl - math.floor(t - stored[0])
    return serve


def new_served(key: ProbeKey, values: frozenset[str]) -> bool:
    return values == NEW


def fast(sent: list[tuple[float, ProbeKey]], question: Question = QS[0],
         server: ServerRef = SERVERS[0]) -> list[float]:
    return [t for t, k in sent if k.question == question and k.server == server]


def test_only_the_names_that_changed_are_probed_fast() -> None:
    s = scheduler()
    s.changed(T, {QS[0]}, 0.0)
    sent = fast_run(s, 1.0, 0.0, lambda k, t: (OLD, 30), new_served)
    assert len(fast(sent)) >= 4 and len(fast(sent, server=SERVERS[1])) >= 4
    # The other names get the sweep's share only: 6 pairs over a 3 s sweep.
    assert sum(1 for _, k in sent if k.question != QS[0]) <= 3


def test_a_layer_without_a_cache_is_probed_often_at_first_then_less() -> None:
    s = scheduler(sweep=600.0)
    s.changed(T, {QS[0]}, 0.0)
    sent = fast(fast_run(s, 6.0, 0.0, lambda k, t: (OLD, 30), new_served))
    # Each gap counts from the answer, a round trip after the send.
    gaps = [round(b - a - RTT, 3) for a, b in zip(sent, sent[1:], strict=False)]
    assert gaps[:4] == [0.1, 0.2, 0.4, 0.8]
    assert max(gaps) == gaps[-1] == 1.0


@pytest.mark.parametrize("expires", [7.337, 12.0, 3.9991, 29.5])
@pytest.mark.parametrize("swept", [True, False])
def test_a_cache_entry_is_bracketed_at_its_expiry_with_a_handful_of_probes(
        expires: float, swept: bool) -> None:
    """`swept`: the sweep saw the name's full TTL before, so the first fast answer, lower,
    is known to come from a cache; without it, the countdown shows within a second."""
    s = scheduler(sweep=600.0, cap=60.0)
    for server in SERVERS if swept else ():
        s.answered(ProbeKey(T, QS[0], server), -20.0, -20.0, OLD, 30, True)
    s.changed(T, {QS[0]}, 0.0)
    sent = fast(fast_run(s, expires + 5, 0.0, cache(expires), new_served))
    after = [t for t in sent if t >= expires]
    before = [t for t in sent if t < expires]
    assert len(after) == 1, "the first probe after the expiry settles the name"
    assert after[0] - expires <= PRECISION + MARGIN + RTT
    assert expires - before[-1] <= PRECISION + 2 * MARGIN + RTT
    # An entry just fetched shows the full TTL too: its countdown is what tells.
    known = swept and math.ceil(expires) < 30
    assert len(sent) <= (8 if known else 11), sent


def test_a_refetch_of_stale_upstream_data_is_bracketed_without_a_second_bisection() -> None:
    """node-local behind a cache: at its own expiry it refetches the old answer from the
    upstream cache, with the upstream's remaining TTL, and serves that until it expires."""
    first, second = 4.42, 9.0

    def serve(key: ProbeKey, t: float) -> tuple[frozenset[str], int]:
        if t < first:
            return OLD, math.ceil(first - t)
        if not refetched:
            refetched.append(t + math.ceil(second - t))
        if t < refetched[0]:
            return OLD, math.ceil(refetched[0] - t)
        return NEW, 30
    refetched: list[float] = []
    s = scheduler(sweep=600.0, cap=60.0)
    s.changed(T, {QS[0]}, 0.0)
    sent = fast(fast_run(s, 15.0, 0.0, serve, new_served))
    between = [t for t in sent if first < t < refetched[0]]
    assert len(between) <= 2
    assert [t for t in sent if t >= refetched[0]][0] - refetched[0] <= PRECISION + MARGIN + RTT


def test_a_second_change_behind_a_known_cache_entry_costs_no_probe() -> None:
    s = scheduler(sweep=600.0, cap=60.0)
    s.answered(ProbeKey(T, QS[0], SERVERS[0]), -20.0, -20.0, OLD, 30, True)
    s.set_servers(SERVERS[:1])
    s.changed(T, {QS[0]}, 0.0)
    serve = cache(12.5)
    first = fast(fast_run(s, 3.0, 0.0, serve, new_served))
    s.changed(T, {QS[0]}, 3.0)  # another pod restarted: the entry still expires at 12.5
    assert s.due(3.0) == []
    rest = fast(fast_run(s, 20.0, 3.0, serve, new_served))
    assert len(first) + len(rest) <= 8 and rest[-1] - 12.5 <= PRECISION + MARGIN + RTT


def test_serve_stale_ttl_zero_is_probed_at_the_fast_interval() -> None:
    s = scheduler(sweep=600.0)
    s.changed(T, {QS[0]}, 0.0)
    sent = fast(fast_run(s, 0.35, 0.0, lambda k, t: (OLD, 0), new_served))
    assert len(sent) >= 3


def test_a_balanced_server_is_probed_every_interval() -> None:
    s = scheduler(sweep=600.0)
    s.set_servers(SERVERS, frozenset({SERVERS[1]}))
    s.changed(T, {QS[0]}, 0.0)
    sent = fast_run(s, 2.0, 0.0, cache(30.0), new_served)
    assert 18 <= len(fast(sent, server=SERVERS[1])) <= 21
    assert len(fast(sent, server=SERVERS[0])) <= 8


def test_settled_names_leave_fast_mode_and_the_cap_ends_it() -> None:
    s = scheduler(sweep=600.0)
    s.changed(T, {QS[0], QS[1]}, 0.0)
    sent = fast_run(s, 10.0, 0.0, lambda k, t: (OLD, 30),
                    lambda k, v: k.question == QS[1])
    assert len(fast(sent, QS[1])) == 1
    assert not s.in_fast_mode(ProbeKey(T, QS[1], SERVERS[0]), 1.0)
    assert not s.in_fast_mode(ProbeKey(T, QS[0], SERVERS[0]), 6.0)  # the 5 s cap passed
    assert max(fast(sent)) < 5.0
    held = s.census()  # what /api/v1/status shows: nothing left of the change
    assert held["fast_mode"] == held["fast_queued"] == 0, held


def test_a_probe_whose_answer_never_came_is_sent_again() -> None:
    s = scheduler(sweep=600.0, cap=60.0)
    s.changed(T, {QS[0]}, 0.0)
    sent = fast(run(s, LOST + 0.5))
    assert sent[:1] == [0.0] and any(abs(t - LOST) < 0.01 for t in sent)
    s.failed(ProbeKey(T, QS[0], SERVERS[0]), LOST + 0.5)
    assert min(d for d, k in s._heaps[WAIT] if k.server == SERVERS[0]
               and s._fast_due.get(k) == (d, WAIT)) == pytest.approx(LOST + 0.6)


def waiting_and_pinned(burst: int) -> tuple[Scheduler, ProbeKey, ProbeKey]:
    """A probe that can wait due at 0, a pinned one at 0.05, and one query spent at 0."""
    s = scheduler(qps=10, burst=burst, sweep=600.0, cap=60.0)
    s.set_servers(SERVERS[:1])
    s.changed(T, {QS[0], QS[1]}, 0.0)
    bracket, other = ProbeKey(T, QS[0], SERVERS[0]), ProbeKey(T, QS[1], SERVERS[0])
    s._schedule_fast(other, 0.0)
    s._schedule_fast(bracket, 0.05, ERROR)
    assert s.budget.try_take(0.0)
    return s, other, bracket


def test_a_probe_that_brackets_an_expiry_goes_before_those_that_can_wait() -> None:
    s, other, bracket = waiting_and_pinned(burst=1)  # the budget is spent until 0.1
    assert s.due(0.1) == [bracket]
    assert s.due(0.2) == [other]


def test_fast_mode_over_budget_is_deferred_and_counted() -> None:
    s = scheduler(qps=10, burst=2)
    s.set_servers(SERVERS, frozenset(SERVERS))
    s.changed(T, set(QS), 0.0)
    sent = fast_run(s, 2.0, 0.0, lambda k, t: (OLD, 30), new_served)
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
        s.set_plan(Target("ns", f"svc{i}"), QS)
    sent = run(s, 10.0, start=0.5)
    # 600 pairs over a 30 s sweep, capped at half the budget: 10 per second.
    assert 70 <= len(sent) <= 110


def test_fast_mode_entries_go_when_their_name_leaves_the_plan() -> None:
    s = scheduler()
    s.changed(T, set(QS), 0.0)
    s.set_plan(T, QS[:1])
    assert s._fast_by_target[T] == {ProbeKey(T, QS[0], server) for server in SERVERS}
    s.set_plan(T, ())
    assert s._fast == {} and s._fast_by_target == {}


def test_a_name_in_fast_mode_leaves_its_sweep_slots_unused() -> None:
    s = scheduler(sweep=3.0, cap=60.0)
    s.changed(T, {QS[0]}, 0.0)
    sent = fast_run(s, 30.0, 0.0, cache(40.0), new_served)
    fast_keys = [t for t, k in sent if k.question == QS[0]]
    others = [t for t, k in sent if k.question != QS[0]]
    # Behind a cache entry that lasts 40 s, a handful of probes bisect it; the sweep adds none.
    assert len(fast_keys) <= 2 * 8
    # The 4 other pairs keep their pace, once per 3 s sweep, and get no share of the slots.
    assert 4 * 8 <= len(others) <= 4 * 12


def test_a_change_behind_an_entry_the_sweep_saw_costs_no_first_probe() -> None:
    s = scheduler(sweep=600.0, cap=60.0)
    s.set_servers(SERVERS[:1])
    key = ProbeKey(T, QS[0], SERVERS[0])
    s.answered(ProbeKey(T, QS[1], SERVERS[0]), -6.0, -6.0 + RTT, OLD, 30, True)
    s.answered(key, -5.0, -5.0 + RTT, OLD, 18, True)  # a cache entry: E in (12, 13]
    s.changed(T, {QS[0]}, 0.0)
    assert s.due(0.0) == []
    sent = fast(fast_run(s, 20.0, 0.0, cache(12.5), new_served))
    assert len(sent) <= 7 and 0 <= sent[-1] - 12.5 <= PRECISION + MARGIN + RTT
    # An entry seen to end within two seconds of the change gets its first probe at once.
    s.answered(key, 20.0, 20.0 + RTT, NEW, 18, True)
    s.changed(T, {QS[0]}, 36.5)
    assert s.due(36.5) == [key]


def test_the_first_probe_of_a_change_goes_before_probes_that_can_wait() -> None:
    s = scheduler(qps=10, burst=1, sweep=600.0, cap=60.0)
    s.set_servers(SERVERS[:1])
    s.changed(T, {QS[1]}, 0.0)
    waiting, first = ProbeKey(T, QS[1], SERVERS[0]), ProbeKey(T, QS[0], SERVERS[0])
    s._schedule_fast(waiting, 0.0)
    assert s.budget.try_take(0.0)  # the budget is spent until 0.1
    s.changed(T, {QS[0]}, 0.05)
    assert s.due(0.1) == [first]
    assert s.due(0.2) == [waiting]


def test_a_reserve_keeps_queries_back_and_says_when_they_are_free() -> None:
    budget = Budget(10, 3)
    assert budget.try_take(0.0, reserve=1) and budget.try_take(0.0, reserve=1)
    assert not budget.try_take(0.0, reserve=1)  # the last query is kept back
    assert budget.next_free(0.0, reserve=1) == pytest.approx(0.1)
    assert budget.try_take(0.0)
    with pytest.raises(ValueError):
        budget.try_take(0.0, reserve=3)


def test_probes_that_can_wait_leave_a_query_for_a_pinned_one() -> None:
    s, _, bracket = waiting_and_pinned(burst=2)
    assert s.due(0.0) == []  # one query left: it waits for the bracket
    assert s.next_wake(0.0) == pytest.approx(0.05)
    assert s.due(0.05) == [bracket]


def test_fast_probes_go_in_the_order_of_how_much_their_instant_matters() -> None:
    s = scheduler(qps=10, burst=1, sweep=600.0, cap=60.0)
    s.changed(T, set(QS[:2]), 0.0)
    keys = [ProbeKey(T, q, server) for q in QS[:2] for server in SERVERS]
    for rank, key in reversed(list(enumerate(keys))):
        s._schedule_fast(key, 0.0, rank)
    assert s.budget.try_take(0.0)
    assert [s.due(0.11 * i) for i in range(1, 5)] == [[key] for key in keys]


def test_the_sweep_says_how_long_it_took_and_what_it_would_need() -> None:
    s = scheduler(qps=100, sweep=3.0)
    run(s, 3.0 * 3)
    assert s.sweep_period == pytest.approx(3.0, rel=0.35)
    assert s.sweep_shortfall() is None
    # 6 pairs every 0.5 s with half the budget need 24 qps: a budget of 10 sweeps in 1.2 s.
    slow = scheduler(qps=10, burst=2, sweep=0.5)
    assert slow.sweep_shortfall() == pytest.approx(24.0)
    run(slow, 12.0)
    assert slow.sweep_period == pytest.approx(1.2, rel=0.35)


def test_the_sweep_waits_while_a_step_up_to_an_expiry_is_about_to_go() -> None:
    s = scheduler(qps=10, burst=4, sweep=0.6)
    s.changed(T, {QS[0]}, 0.0)
    step = ProbeKey(T, QS[0], SERVERS[0])
    s._heaps[FIRST].clear()  # the change's first probes: not this test's
    s.due(0.0)
    assert s._next_steady is not None and s._next_steady < 0.5
    s._schedule_fast(step, 0.55, ERROR)
    assert s.due(0.5) == []  # the sweep's slot is due, but the step needs the next query
    assert s.next_wake(0.5) == pytest.approx(0.55)
    assert s.due(0.55)[0] == step


def test_what_answers_outside_fast_mode_saw_stays_bounded() -> None:
    s = scheduler(sweep=600.0)
    s.answered(ProbeKey(T, QS[0], SERVERS[0]), 0.0, 0.0, OLD, 30, True)
    rng, now = random.Random(3), 0.0
    for i in range(20000):
        question = Question(f"n{i}.web.ns.svc.cluster.local.", "A")
        s.answered(ProbeKey(T, question, SERVERS[0]), now, now + RTT, OLD, rng.randint(1, 29),
                   True)
        now += 0.05  # 20 answers a second
    assert 0 < len(s._seen) <= 20 * 60


OTHER = Target("ns", "api")


def owns_web(target: Target, server: ServerRef) -> bool:
    """This agent's shard: `web` everywhere; `api` only at its node-local."""
    return target == T or server.layer == "node-local"


def test_a_shard_sweeps_and_probes_fast_only_what_it_measures() -> None:
    s = Scheduler(Budget(100, 4), random.Random(7), fast_interval=0.1, fast_cap=5.0,
                  sweep_interval=3.0, measures=owns_web)
    s.set_servers(SERVERS)
    s.set_plan(T, QS)
    s.set_plan(OTHER, QS)
    assert s.pairs == 6 + 3
    sent = run(s, 12.0)
    assert {k for _, k in sent} == {ProbeKey(t, q, srv) for t in (T, OTHER) for q in QS
                                    for srv in SERVERS if owns_web(t, srv)}
    s.changed(OTHER, {QS[0]}, 12.0)
    sent = fast_run(s, 13.0, 12.0, lambda k, t: (OLD, 30), new_served)
    assert fast(sent, server=SERVERS[0]) == []
    assert {k.server for _, k in sent if k.target == OTHER and k.question == QS[0]} == \
        {SERVERS[1]}
    # The fleet hands `web` over: its fast probes stop, and the sweep leaves it out.
    s.changed(T, {QS[0]}, 13.0)
    s.measures = lambda t, srv: srv.layer == "node-local"
    s.reshard([T, OTHER])
    assert s.pairs == 6
    sent = run(s, 20.0, 13.5)
    assert {k.server.layer for _, k in sent} == {"node-local"}


def test_the_sharded_layers_keep_to_the_fleet_share_and_the_rest_goes_on() -> None:
    def layers(shared: Budget | None) -> tuple[list[float], list[float], int]:
        s = Scheduler(Budget(100, 4), random.Random(7), fast_interval=0.1, fast_cap=30.0,
                      sweep_interval=1.0, fast_backoff_max=0.1, shared=shared)
        s.set_servers(SERVERS)
        s.set_plan(T, QS)
        s.changed(T, set(QS), 0.0)
        sent = fast_run(s, 10.0, 0.0, lambda k, t: (OLD, 0), new_served)
        return ([t for t, k in sent if k.server.layer == "coredns"],
                [t for t, k in sent if k.server.layer == "node-local"], s.deferred_total)

    coredns, local, deferred = layers(Budget(2, 1))
    free_coredns, free_local, free_deferred = layers(None)
    assert deferred > free_deferred + 50  # the probes the share held back are counted
    assert max_in_any_second(coredns) <= 2 and len(coredns) >= 15
    assert len(free_coredns) > 200
    # Never held behind the spent share: node-local keeps its pace.
    assert len(local) >= 0.95 * len(free_local) > 200


def test_a_sweep_keeps_its_sharded_pairs_to_the_share_and_the_rest_to_its_pace() -> None:
    def sweep(shared: Budget | None) -> tuple[list[float], list[float], int]:
        s = Scheduler(Budget(100, 4), random.Random(7), sweep_interval=1.0, shared=shared)
        s.set_servers(SERVERS)
        s.set_plan(T, QS)
        now, wakes, sent = 0.0, 0, []
        while now < 20.0:
            sent += [(now, key) for key in s.due(now)]
            now, wakes = max(s.next_wake(now), now + 1e-4), wakes + 1
        return ([t for t, k in sent if k.server.layer == "coredns"],
                [t for t, k in sent if k.server.layer == "node-local"], wakes)

    coredns, local, wakes = sweep(Budget(1, 1))
    free_coredns, free_local, _ = sweep(None)
    assert len(free_coredns) >= 50 and max_in_any_second(coredns) <= 1 and len(coredns) >= 15
    assert len(local) >= 0.9 * len(free_local)  # never behind a pair waiting for its share
    assert wakes < 2_000  # and no spinning while every pair left waits for it


def test_a_sweep_of_sharded_pairs_alone_waits_for_its_share() -> None:
    s = Scheduler(Budget(100, 4), random.Random(7), sweep_interval=1.0, shared=Budget(1, 1))
    s.set_servers(SERVERS[:1])
    s.set_plan(T, QS)
    sent = run(s, 10.0)
    assert 8 <= len(sent) <= 10 and max_in_any_second([t for t, _ in sent]) <= 1
    assert s.next_wake(10.0) > 10.0  # a wake at the share's next query, not a spin
