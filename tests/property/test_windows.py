"""Property tests that define the comparator's correctness.

Hypothesis generates truth timelines for one name (adds, removes, flaps, an IP reused, the
empty set) and simulated layers whose behaviour is known exactly: a fixed delay, a TTL cache
with the 5 s floor, a layer ahead of the watch, and a layer that never converges. Probes run
every DT on each layer. Every window the comparator reports must bracket the layer's true
transition within its own resolution, no window may appear that the timeline did not cause,
and open windows must show in the gauges with the right age.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.core.budget import Budget
from exporter.core.comparator import (
    PROPAGATION,
    STALE,
    Comparator,
    Observation,
    OpenSummary,
    Window,
)
from exporter.core.records import Question, ServerRef, Target
from exporter.core.schedule import ProbeKey, Scheduler
from exporter.core.truth import Stamp, Update

TARGET = Target("demo", "web")
NAME = Question("web.demo.svc.cluster.local.", "A")
POOL = [f"10.0.0.{i}" for i in range(1, 7)]
DT = 0.1
RTT = 0.002
SYNC = 0.5

Timeline = list[tuple[float, frozenset[str]]]
"""(time, expected set) from time 0; the first entry is the state at startup."""


def on_layer(summaries: dict[tuple[Target, ServerRef], OpenSummary],
             layer: str) -> OpenSummary | None:
    """The open-window summary of the one server of `layer`."""
    return next((v for (_, s), v in summaries.items() if s.layer == layer), None)


def truth_at(timeline: Timeline, t: float) -> frozenset[str]:
    times = [when for when, _ in timeline]
    return timeline[max(0, bisect.bisect_right(times, t) - 1)][1]


class Layer:
    name: str

    def serve(self, t: float) -> frozenset[str] | None:
        """What the layer answers at `t`; None when it does not answer."""
        raise NotImplementedError


@dataclass
class Delayed(Layer):
    """Serves the truth as it was `delay` seconds ago; a negative delay is a layer ahead."""

    name: str
    timeline: Timeline
    delay: float

    def serve(self, t: float) -> frozenset[str]:
        return truth_at(self.timeline, t - self.delay)


@dataclass
class TtlCache(Layer):
    """Refills from the truth on the first probe after expiry; keeps entries max(ttl, 5) s."""

    name: str
    timeline: Timeline
    ttl: float
    refills: list[tuple[float, frozenset[str]]] = field(default_factory=list)
    expires: float = float("-inf")

    def serve(self, t: float) -> frozenset[str]:
        if t >= self.expires:
            self.refills.append((t, truth_at(self.timeline, t)))
            self.expires = t + max(self.ttl, 5.0)
        return self.refills[-1][1]


@dataclass
class Frozen(Layer):
    """Never converges: serves the startup answer forever."""

    name: str
    timeline: Timeline

    def serve(self, t: float) -> frozenset[str]:
        return self.timeline[0][1]


@dataclass
class Flaky(Layer):
    """A delayed layer that does not answer during its outages (SERVFAIL, timeouts)."""

    name: str
    timeline: Timeline
    delay: float
    outages: list[tuple[float, float]]

    def serve(self, t: float) -> frozenset[str] | None:
        if any(start <= t < end for start, end in self.outages):
            return None
        return truth_at(self.timeline, t - self.delay)


@st.composite
def timelines(draw: st.DrawFn, min_gap: float = 0.05, max_gap: float = 20.0) -> Timeline:
    sets = st.frozensets(st.sampled_from(POOL), max_size=4)
    timeline = [(0.0, draw(sets))]
    t = 1.0
    for _ in range(draw(st.integers(1, 8))):
        t += draw(st.floats(min_gap, max_gap))
        timeline.append((round(t, 3), draw(sets)))
    return timeline


def simulate(timeline: Timeline, layers: list[Layer], end: float, trigger_lag: float = 0.3,
             confirm: int = 1) -> tuple[Comparator, list[tuple[float, Window]]]:
    """Feed the truth and every layer's probes to a comparator in the order they happen;
    with `confirm` above 1, every layer is behind a balancer."""
    comparator = Comparator(history=3600, confirm=confirm)
    servers = {layer.name: ServerRef(layer.name, f"10.9.9.{i}:53")
               for i, layer in enumerate(layers)}
    comparator.set_servers(servers.values(), servers.values() if confirm > 1 else ())
    events: list[tuple[float, int, object]] = []
    for when, expected in timeline:
        events.append((when, 0, expected))
    events.append((SYNC, 1, None))
    for index, layer in enumerate(layers):
        t = SYNC + 0.013 * (index + 1)
        while t < end:
            events.append((t + RTT, 2, (layer, t)))
            t += DT
    events.sort(key=lambda e: (e[0], e[1]))
    windows: list[tuple[float, Window]] = []
    for when, kind, payload in events:
        if kind == 0:
            assert isinstance(payload, frozenset)
            stamp = Stamp(when, when - trigger_lag)
            outcome = comparator.update(Update(TARGET, {NAME: payload}, stamp))
        elif kind == 1:
            comparator.mark_synced()
            continue
        else:
            assert isinstance(payload, tuple)
            layer, sent = payload
            values = layer.serve(sent)
            if values is None:
                comparator.failed(NAME, servers[layer.name], when)
                continue
            outcome = comparator.observe(Observation(NAME, servers[layer.name], sent, when,
                                                     values))
        assert not outcome.windows or kind == 2, "windows close only on probes"
        windows += [(when, w) for w in outcome.windows]
    return comparator, windows


def cause_of(timeline: Timeline, window: Window, closed_sent: float) -> float:
    """The latest post-sync truth change that removed (stale) or added (propagation) the value."""
    left = window.kind == STALE
    causes = [
        when for (when, now), (_, before) in zip(timeline[1:], timeline, strict=False)
        if when >= SYNC and when <= closed_sent
        and (window.value in before) == left and (window.value in now) != left
    ]
    assert causes, f"window {window} has no cause in the timeline"
    return causes[-1]


def isolated(timeline: Timeline, value: str, when: float, guard: float) -> bool:
    """No other change of `value` within `guard` seconds of the change at `when`."""
    flips = [t for (t, now), (_, before) in zip(timeline[1:], timeline, strict=False)
             if (value in now) != (value in before)]
    return all(t == when or abs(t - when) > guard for t in flips)


def check_bracket(window: Window, true_delay: float) -> None:
    """The layer's real transition lies between the last probe before and the first after.

    Probe times are receive times; the layer answered somewhere in the round trip before."""
    assert window.resolution <= DT + RTT + 1e-6, window
    low = window.seconds - window.resolution - RTT - 1e-6
    assert low <= true_delay <= window.seconds + 1e-6, f"{window} true delay {true_delay}"


@settings(max_examples=300, deadline=None)
@given(timelines(), st.floats(0.0, 15.0), st.floats(0.01, 0.09))
def test_delayed_layers_measure_their_delay(timeline: Timeline, delay: float,
                                            ahead: float) -> None:
    layers: list[Layer] = [Delayed("delay", timeline, delay), Delayed("ahead", timeline, -ahead)]
    end = timeline[-1][0] + delay + 2
    _, windows = simulate(timeline, layers, end)
    true = {"delay": delay, "ahead": -ahead}
    for closed, window in windows:
        cause = cause_of(timeline, window, closed)
        if window.reference != "watch":
            assert window.seconds >= 0
            continue
        if isolated(timeline, window.value, cause, guard=max(delay, ahead) + 2 * DT):
            check_bracket(window, true[window.server.layer])
    for (when, now), (_, before) in zip(timeline[1:], timeline, strict=False):
        for value in now ^ before:
            if when < SYNC + DT or not isolated(timeline, value, when, delay + 3 * DT):
                continue
            kind = PROPAGATION if value in now else STALE
            found = [w for closed, w in windows if w.server.layer == "delay" and w.kind == kind
                     and w.value == value and w.reference == "watch"
                     and cause_of(timeline, w, closed) == when]
            assert all(abs(w.seconds - delay) <= DT + RTT + 1e-6 for w in found), found
            assert len(found) == 1, f"{kind} of {value} at {when}: {found}"


@settings(max_examples=300, deadline=None)
@given(timelines(min_gap=0.5), st.sampled_from([1.0, 5.0, 10.0, 30.0]))
def test_ttl_cache_windows_match_its_expiry(timeline: Timeline, ttl: float) -> None:
    cache = TtlCache("cache", timeline, ttl)
    end = timeline[-1][0] + max(ttl, 5) + 2
    _, windows = simulate(timeline, [cache], end)
    refill_times = [t for t, _ in cache.refills]
    for closed, window in windows:
        cause = cause_of(timeline, window, closed)
        if window.reference == "watch":
            # The cache changes its answer only at a refill: the first one after the change
            # whose answer agrees with the truth on this value.
            agrees = [t for t, served in cache.refills
                      if t >= cause and (window.value in served) == (window.kind == PROPAGATION)]
            check_bracket(window, agrees[0] - cause)
            assert window.seconds <= max(ttl, 5.0) + DT + RTT + 1e-6
    assert refill_times == sorted(refill_times)


@settings(max_examples=200, deadline=None)
@given(timelines(), st.floats(1.0, 60.0))
def test_frozen_layer_reports_no_window_and_shows_open_ages(timeline: Timeline,
                                                            after: float) -> None:
    end = timeline[-1][0] + after
    comparator, windows = simulate(timeline, [Frozen("frozen", timeline)], end)
    startup = timeline[0][1]
    # The layer's answer never changes, so no window can close: a stale value only leaves
    # by re-entering the truth, a race, and a missing one is never served.
    assert not windows
    now = end
    final = timeline[-1][1]
    summary = on_layer(comparator.open_windows(now), "frozen")
    stale, missing = startup - final, final - startup
    if not stale and not missing:
        assert summary is None
        return
    assert summary is not None
    assert summary.stale == len(stale) and summary.missing == len(missing)

    def last_change(value: str, into: bool) -> float | None:
        times = [t for (t, now_), (_, before) in zip(timeline[1:], timeline, strict=False)
                 if t >= SYNC and (value in now_) == into and (value in before) != into]
        return times[-1] if times else None

    first_probe = SYNC + 0.013 + RTT
    stale_ages = [now - (last_change(v, False) or first_probe) for v in stale]
    missing_ages = [now - (last_change(v, True) or first_probe) for v in missing]
    assert abs(summary.stale_age - max(stale_ages, default=0.0)) < 1e-6
    assert abs(summary.missing_age - max(missing_ages, default=0.0)) < 1e-6


@settings(max_examples=200, deadline=None)
@given(timelines(), st.floats(0.0, 5.0), st.sampled_from(["10.0.0.99", "10.0.0.98"]))
def test_no_window_without_a_cause(timeline: Timeline, delay: float, phantom: str) -> None:
    """A layer that also serves a record the truth never had reports nothing for it."""

    @dataclass
    class Phantom(Layer):
        name: str

        def serve(self, t: float) -> frozenset[str]:
            return truth_at(timeline, t - delay) | {phantom}

    comparator, windows = simulate(timeline, [Phantom("phantom")], timeline[-1][0] + 10)
    for closed, window in windows:
        assert window.value != phantom
        cause_of(timeline, window, closed)
    summary = on_layer(comparator.open_windows(timeline[-1][0] + 10), "phantom")
    assert summary is not None and summary.stale >= 1


@settings(max_examples=100, deadline=None)
@given(timelines(min_gap=1.0), st.floats(0.0, 5.0), st.floats(-0.5, 2.0))
def test_trigger_reference_is_clamped_and_flagged(timeline: Timeline, delay: float,
                                                  lag: float) -> None:
    _, windows = simulate(timeline, [Delayed("delay", timeline, delay)],
                          timeline[-1][0] + delay + 2, trigger_lag=lag)
    by_close: dict[tuple[float, str, str], dict[str, Window]] = {}
    for closed, window in windows:
        by_close.setdefault((closed, window.kind, window.value), {})[window.reference] = window
    for pair in by_close.values():
        watch, trigger = pair["watch"], pair["trigger"]
        expected = watch.seconds + lag
        assert abs(trigger.seconds - max(0.0, expected)) < 1e-6
        if abs(expected) > 1e-6:
            assert trigger.clamped == (expected < 0)


@st.composite
def outages(draw: st.DrawFn, until: float) -> list[tuple[float, float]]:
    starts = sorted(draw(st.lists(st.floats(SYNC, until), max_size=4)))
    return [(start, start + draw(st.floats(0.05, 25.0))) for start in starts]


@settings(max_examples=1000, deadline=None)
@given(st.data(), timelines(), st.floats(0.0, 10.0))
def test_outages_never_become_samples(data: st.DataObject, timeline: Timeline,
                                      delay: float) -> None:
    """A window closes as a sample only where some answer after the change showed the old
    state, or no probe failed: an outage is never measured as staleness or propagation, and
    every sample still brackets the layer's real transition."""
    end = timeline[-1][0] + delay + 30
    down = data.draw(outages(end))
    layer = Flaky("flaky", timeline, delay, down)
    _, windows = simulate(timeline, [layer], end)
    probes = [t for t in (SYNC + 0.013 + i * DT for i in range(int(end / DT) + 2)) if t < end]
    answered = [t for t in probes if layer.serve(t) is not None]
    for closed, window in windows:
        cause = cause_of(timeline, window, closed)
        sent = closed - RTT
        before = [t for t in answered if t < sent - 1e-9]
        seen_after = bool(before) and before[-1] >= cause
        failed_between = any(layer.serve(t) is None
                             for t in probes if (before[-1] if before else 0) < t < sent)
        assert seen_after or not failed_between, (window, down)
        if window.reference == "watch" and isolated(timeline, window.value, cause,
                                                    guard=delay + 2 * DT):
            low = window.seconds - window.resolution - RTT - 1e-6
            assert low <= delay <= window.seconds + 1e-6, (window, down)


@dataclass
class Balanced(Layer):
    """Replicas behind one address, each query to one of them at random; records what
    every probe got."""

    name: str
    replicas: list[Layer]
    rng: random.Random
    log: list[tuple[float, frozenset[str]]] = field(default_factory=list)

    def serve(self, t: float) -> frozenset[str] | None:
        values = self.rng.choice(self.replicas).serve(t)
        if values is not None:
            self.log.append((t, values))
        return values


@settings(max_examples=300, deadline=None)
@given(timelines(min_gap=0.5), st.floats(0.0, 3.0), st.sampled_from([5.0, 10.0, 30.0]),
       st.integers(0, 2**32))
def test_a_balanced_layer_gives_one_window_that_ends_at_its_last_sighting(
        timeline: Timeline, delay: float, ttl: float, seed: int) -> None:
    """Two replicas, one fresh and one a TTL cache, behind one address: each removal or
    addition gives at most one sample per value, and it ends at the first answer in the new
    state after the last answer in the old one, as a client of that address sees it."""
    layer = Balanced("kube-dns", [Delayed("fresh", timeline, delay),
                                  TtlCache("cached", timeline, ttl)], random.Random(seed))
    _, windows = simulate(timeline, [layer], timeline[-1][0] + ttl + 10, confirm=10)
    causes = [(w.kind, w.value, cause_of(timeline, w, closed))
              for closed, w in windows if w.reference == "watch"]
    assert len(causes) == len(set(causes)), causes
    for closed, window in windows:
        if window.reference != "watch":
            continue
        cause = cause_of(timeline, window, closed)
        old = window.kind == STALE  # the old state: the value served
        seen = [(t, (window.value in v) == old) for t, v in layer.log if cause <= t < closed]
        last_old = max((t for t, in_old in seen if in_old), default=None)
        end = min(t for t, in_old in seen if not in_old and (last_old is None or t > last_old))
        assert abs(window.seconds - (end + RTT - cause)) < 1e-6, (window, end, last_old)


@dataclass
class Countdown(Layer):
    """A CoreDNS cache: refills from the truth on the first query after expiry, keeps the
    entry `ttl` whole seconds and answers with `ttl - floor(seconds since the refill)`."""

    name: str
    timeline: Timeline
    ttl: int
    refills: list[tuple[float, frozenset[str]]] = field(default_factory=list)

    def serve(self, t: float) -> frozenset[str]:
        return self.answer(t)[0]

    def answer(self, t: float) -> tuple[frozenset[str], int]:
        if not self.refills or t - self.refills[-1][0] >= self.ttl:
            self.refills.append((t, truth_at(self.timeline, t)))
        stored, values = self.refills[-1]
        return values, self.ttl - math.floor(t - stored)


def simulate_scheduled(timeline: Timeline, layers: list[Layer], end: float,
                       seed: int) -> tuple[list[tuple[float, Window]], int]:
    """The truth and the layers' answers fed to a comparator, with probes placed by the
    scheduler from those answers at the default budget; returns the windows and the
    number of probes."""
    comparator = Comparator(history=3600)
    servers = {layer.name: ServerRef(layer.name, f"10.9.9.{i}:53")
               for i, layer in enumerate(layers)}
    by_server = {servers[layer.name]: layer for layer in layers}
    comparator.set_servers(servers.values())
    scheduler = Scheduler(Budget(20, 4), random.Random(seed))
    scheduler.set_servers(tuple(sorted(servers.values())))
    changes = [(when, expected) for when, expected in timeline]
    answers: list[tuple[float, float, ProbeKey]] = []
    windows: list[tuple[float, Window]] = []
    now, probes, synced = 0.0, 0, False
    while now < end:
        wake = min(changes[0][0] if changes else math.inf,
                   answers[0][0] if answers else math.inf,
                   SYNC if not synced else math.inf, scheduler.next_wake(now))
        now = max(now, wake)
        if not synced and now >= SYNC and not (changes and changes[0][0] <= now):
            comparator.mark_synced()
            synced = True
        elif changes and changes[0][0] <= now:
            when, expected = changes.pop(0)
            outcome = comparator.update(Update(TARGET, {NAME: expected},
                                               Stamp(when, when - 0.3)))
            scheduler.set_plan(TARGET, comparator.questions(TARGET))
            if outcome.changed and synced:
                scheduler.changed(TARGET, outcome.changed, now)
        elif answers and answers[0][0] <= now:
            received, sent, key = heapq.heappop(answers)
            layer = by_server[key.server]
            values, ttl = layer.answer(sent) if isinstance(layer, Countdown) \
                else (layer.serve(sent) or frozenset(), 30)
            outcome = comparator.observe(Observation(NAME, key.server, sent, received, values))
            windows += [(received, w) for w in outcome.windows]
            scheduler.answered(key, sent, received, values, ttl,
                               comparator.settled(NAME, key.server))
        else:
            for key in scheduler.due(now):
                probes += 1
                heapq.heappush(answers, (now + RTT, now, key))
            now = max(now, min(scheduler.next_wake(now), now + 1e-3))
    return windows, probes


@settings(max_examples=300, deadline=None)
@given(timelines(min_gap=0.5, max_gap=40.0), st.sampled_from([5, 10, 30]),
       st.floats(0.0, 3.0), st.integers(0, 2**32))
def test_windows_from_predicted_probes_have_a_cause_and_bracket_the_transition(
        timeline: Timeline, ttl: int, delay: float, seed: int) -> None:
    """Probes placed by prediction, not by a fixed interval, still report only windows that
    the timeline caused, and each lies within its own resolution of the layer's real
    transition: the cache's refill, or the layer's delay."""
    cache, plain = Countdown("cache", timeline, ttl), Delayed("delay", timeline, delay)
    windows, _ = simulate_scheduled(timeline, [cache, plain], timeline[-1][0] + ttl + 10, seed)
    for closed, window in windows:
        cause = cause_of(timeline, window, closed - RTT + 1e-9)
        if window.reference != "watch":
            continue
        if window.server.layer == "cache":
            agrees = [t for t, served in cache.refills
                      if t >= cause and (window.value in served) == (window.kind == PROPAGATION)]
            true = agrees[0] - cause
        elif isolated(timeline, window.value, cause, guard=delay + 2.0):
            true = delay
        else:
            continue
        low = window.seconds - window.resolution - RTT - 1e-6
        assert low <= true <= window.seconds + 1e-6, (window, true)
