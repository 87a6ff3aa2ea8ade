"""The probe scheduler: what to ask which server next, within the budget. Pure code.

Steady state sweeps every (name, server) pair round-robin, in an order shuffled per sweep and
with jittered gaps, so that the pods of a DaemonSet never fall into step. The sweep uses at most
`steady_share` of the budget. A name whose expected answer changed enters fast mode on every
server, until that server agrees with the truth or `fast_cap` passes. Where its probes go is
read from the answers (expiry.py): a cache entry is bisected and bracketed at its predicted
expiry; a server that gives no prediction is probed every `fast_interval`, doubling up to
`fast_backoff_max`; a balanced server, whose answers come from replicas with caches of their
own, every `fast_interval`. Fast probes go first, ranked by how much their instant matters
(`RANKS`), the longest overdue first within a rank. The sweep skips names in fast mode. A
cache entry seen outside fast mode in the last minute seeds the prediction of a change that
follows. A bisection probe that has waited past the instant that made it worth a query is
placed again, not sent. A probe that falls due while the budget is spent is deferred and
counted once. With sharding, only the (name, server) pairs that `measures` gives are probed,
and probes of the sharded layers also take from `shared`, this agent's part of the fleet's
budget: a fast probe whose share is spent is put off to when it frees, a sweep pair is
skipped for this sweep, and the other layers' probes go on meanwhile.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass, field

from exporter.core.budget import Budget
from exporter.core.expiry import PRECISION, Expiry
from exporter.core.layers import SERVICE_LAYERS
from exporter.core.records import Measures, Question, ServerRef, Target, measure_all

FULL_HORIZON = 600.0
"""A server's highest TTL not seen for this long gives way: its configuration changed."""
ERROR, FIRST, SHAPE, WAIT = RANKS = range(4)
"""Fast probes by how much their instant matters: the window's error (a step up to a
predicted expiry, the probe just after it), a change's first probe, a probe that missed costs
precision or queries (the one just before the expiry, the last bisection), and the rest."""
SEEN = 60.0
"""How long an answer outside fast mode is kept for a change that may follow."""
LOST = 5.0
"""A fast probe whose answer or failure was never reported is sent again after this long."""


@dataclass(frozen=True, slots=True, order=True)
class ProbeKey:
    target: Target
    question: Question
    server: ServerRef


@dataclass(slots=True)
class _Fast:
    until: float
    expiry: Expiry = field(default_factory=Expiry)


@dataclass
class Scheduler:
    budget: Budget
    rng: random.Random
    fast_interval: float = 0.1
    fast_cap: float = 300.0
    sweep_interval: float = 30.0
    steady_share: float = 0.5
    fast_backoff_max: float = 1.0
    measures: Measures = measure_all
    shared: Budget | None = None
    """This agent's part of the fleet's budget, taken too by probes of the sharded layers."""
    deferred_total: int = field(default=0, init=False)
    """Probes that fell due while the budget was spent."""
    sweep_period: float | None = field(default=None, init=False)
    """How long the last whole sweep of every (name, server) pair took."""
    _sweep_started: float | None = field(default=None, init=False)
    _counts: dict[Target, int] = field(default_factory=dict, init=False)
    """Per target, the pairs a sweep visits."""
    pairs: int = field(default=0, init=False)
    """The (name, server) pairs that one sweep visits."""
    plan: dict[Target, tuple[Question, ...]] = field(default_factory=dict, init=False)
    servers: tuple[ServerRef, ...] = field(default=(), init=False)
    balanced: frozenset[ServerRef] = field(default=frozenset(), init=False)
    _fast: dict[ProbeKey, _Fast] = field(default_factory=dict, init=False)
    _fast_by_target: dict[Target, set[ProbeKey]] = field(default_factory=dict, init=False)
    """The keys in fast mode per target: every plan change asks about one target."""
    _full: dict[tuple[ServerRef, bool], tuple[int, float]] = field(default_factory=dict,
                                                                   init=False)
    """Per server, for positive and for negative answers: the highest TTL of any name in the
    last `FULL_HORIZON` seconds, from every probe, and when it was last seen. A fast-mode
    answer below it comes from a cache; a layer without one always answers with it."""
    _heaps: tuple[list[tuple[float, ProbeKey]], ...] = field(
        default_factory=lambda: tuple([] for _ in RANKS), init=False)
    """The fast probes by rank (`RANKS`): a due probe of a lower rank goes first."""
    _fast_due: dict[ProbeKey, tuple[float, int]] = field(default_factory=dict, init=False)
    """Each key's next fast probe and its rank: the heaps keep replaced ones."""
    _sweep: deque[ProbeKey] = field(default_factory=deque, init=False)
    """The sweep's next pairs: the names of one (target, server), in a shuffled order."""
    _groups: list[tuple[Target, ServerRef]] = field(default_factory=list, init=False)
    """The (target, server) groups this sweep has yet to visit, shuffled: a sweep of 10,000
    targets on 3 servers holds 30,000 of these, not 270,000 keys."""
    _next_steady: float | None = field(default=None, init=False)
    _deferred: set[ProbeKey] = field(default_factory=set, init=False)
    _seen: dict[ProbeKey, Expiry] = field(default_factory=dict, init=False)
    """The cache entries that answers outside fast mode saw in the last `SEEN` seconds, in
    the order they came: a change behind one that lasts past it costs no first probe. The
    budget bounds it to `qps * SEEN` entries."""
    _steady_deferred: bool = field(default=False, init=False)
    _share_wait: float | None = field(default=None, init=False)
    """When a whole sweep's worth of pairs found the share spent: when it frees."""

    def census(self) -> dict[str, int]:
        """What the scheduler holds, counted for /api/v1/status."""
        return {"fast_mode": len(self._fast), "fast_queued": sum(map(len, self._heaps)),
                "recent_answers": len(self._seen), "sweep_groups": len(self._groups)}

    def set_servers(self, servers: tuple[ServerRef, ...],
                    balanced: frozenset[ServerRef] = frozenset()) -> None:
        self.servers, self.balanced = servers, balanced
        self.reshard(list(self.plan))

    def _recount(self, target: Target) -> None:
        names = len(self.plan.get(target, ()))
        count = names * sum(1 for s in self.servers if self.measures(target, s)) if names else 0
        self.pairs += count - self._counts.pop(target, 0)
        if count:
            self._counts[target] = count

    def reshard(self, targets: list[Target]) -> None:
        """The fleet moved these targets: probe them where this agent now measures them."""
        for target in targets:
            self._recount(target)
            for key in list(self._fast_by_target.get(target, ())):
                if not self.measures(target, key.server):
                    self._drop(key)

    def set_plan(self, target: Target, questions: tuple[Question, ...]) -> None:
        """The names to probe for a target; an empty tuple forgets the target."""
        if questions:
            self.plan[target] = questions
        else:
            self.plan.pop(target, None)
        self._recount(target)
        for key in list(self._fast_by_target.get(target, ())):
            if key.question not in questions:
                self._drop(key)

    def changed(self, target: Target, questions: set[Question], now: float) -> None:
        """These names of the target changed their expected answer: probe them fast on
        every server. The other names did not change and need no fast probes."""
        planned = self.plan.get(target, ())
        for question in questions:
            if question not in planned:
                continue
            for server in self.servers:
                if not self.measures(target, server):
                    continue
                key = ProbeKey(target, question, server)
                fast = self._fast.get(key)
                placed = fast is not None  # a key in fast mode always has a probe placed
                if fast is None:
                    fast = self._fast[key] = _Fast(now + self.fast_cap,
                                                   self._recall(key, now) or Expiry())
                    self._fast_by_target.setdefault(target, set()).add(key)
                fast.until = now + self.fast_cap
                if fast.expiry.predictable and fast.expiry.lo > now and \
                        server not in self.balanced:
                    # The cache serves its entry until `lo` whatever the truth does.
                    if not placed:
                        self._place(key, fast, now)
                    continue
                fast.expiry.unpredicted = 0
                # The first probe's instant is the window's error when the entry is in its
                # last moments, or when nothing caches the name at all.
                self._schedule_fast(key, now, FIRST)

    def answered(self, key: ProbeKey, sent: float, received: float, values: frozenset[str],
                 ttl: int | None, settled: bool) -> None:
        """A probe of the key got an answer; `settled`: the server now agrees with the
        truth on this name, so it leaves fast mode."""
        full = self._note_full(key.server, not values, ttl, received)
        fast = self._fast.get(key)
        if fast is None or settled:
            if fast is not None:
                self._drop(key)
            self._remember(key, sent, received, values, ttl, full)
            return
        fast.expiry.observe(sent, received, values, ttl, full)
        self._place(key, fast, received)

    def _remember(self, key: ProbeKey, sent: float, received: float,
                  values: frozenset[str], ttl: int | None, full: int) -> None:
        self._seen.pop(key, None)
        seen = Expiry()
        seen.observe(sent, received, values, ttl, full)
        if seen.predictable and key.server not in self.balanced:
            self._seen[key] = seen
        while (oldest := next(iter(self._seen.values()), None)) is not None and \
                (oldest.hi <= received or oldest.last_served < received - SEEN):
            del self._seen[next(iter(self._seen))]

    def _recall(self, key: ProbeKey, now: float) -> Expiry | None:
        """What an answer outside fast mode saw of the key's cache entry, if it lasts long
        enough to be bisected from. An entry near its end gets a first probe anyway: that
        probe's instant is the window's error, and an entry evicted or refreshed early
        would otherwise cost the window a second."""
        seen = self._seen.pop(key, None)
        return seen if seen is not None and seen.lo > now + 2.0 else None

    def _note_full(self, server: ServerRef, negative: bool, ttl: int | None,
                   at: float) -> int:
        if ttl is None:
            return 0
        highest, seen = self._full.get((server, negative), (0, at))
        if ttl >= highest or at - seen > FULL_HORIZON:
            highest, seen = ttl, at
        self._full[(server, negative)] = (highest, seen)
        return highest

    def failed(self, key: ProbeKey, at: float) -> None:
        fast = self._fast.get(key)
        if fast is not None:
            fast.expiry.failed()
            self._place(key, fast, at)

    def _place(self, key: ProbeKey, fast: _Fast, now: float) -> None:
        if key.server in self.balanced:
            due = now + self.fast_interval
        else:
            # Stepping up to an expiry at the budget's rate: a step is the window's error.
            step = max(PRECISION, 1.0 / self.budget.qps)
            due = fast.expiry.next_probe(now, self.fast_interval, self.fast_backoff_max, step)
        self._schedule_fast(key, due, (ERROR, SHAPE, WAIT)[fast.expiry.urgency(now)])

    def _drop(self, key: ProbeKey) -> None:
        self._fast.pop(key, None)
        self._fast_due.pop(key, None)
        self._deferred.discard(key)
        keys = self._fast_by_target.get(key.target)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._fast_by_target[key.target]

    def in_fast_mode(self, key: ProbeKey, now: float) -> bool:
        fast = self._fast.get(key)
        if fast is None:
            return False
        if fast.until <= now or key.server not in self.servers:
            self._drop(key)
            return False
        return True

    def _schedule_fast(self, key: ProbeKey, due: float, rank: int = WAIT) -> None:
        """Sets the key's next fast probe, earlier or later than the one it replaces."""
        self._fast_due[key] = (due, rank)
        self._deferred.discard(key)
        heapq.heappush(self._heaps[rank], (due, key))

    @property
    def _reserve(self) -> int:
        """Queries that probes which can wait leave in the budget, so that a probe whose
        instant matters never waits for a bisection or sweep probe sent a moment before it."""
        return min(1, self.budget.burst - 1)

    def _base_gap(self) -> float:
        floor = 1.0 / (self.budget.qps * self.steady_share)
        return max(self.sweep_interval / max(self.pairs, 1), floor)

    def _steady_gap(self) -> float:
        return self._base_gap() * self.rng.uniform(0.5, 1.5)

    def sweep_shortfall(self) -> float | None:
        """The qps the budget would need for the sweep to visit every pair every
        `sweep_interval` with its share, when the budget is below it; None when it is not."""
        needed = self.pairs / (self.sweep_interval * self.steady_share)
        return needed if needed > self.budget.qps else None

    def _next_sweep_key(self, now: float) -> ProbeKey | None:
        began = False
        while True:
            while self._sweep:
                key = self._sweep[0]
                if key.question in self.plan.get(key.target, ()) and \
                        key.server in self.servers and self.measures(key.target, key.server):
                    return key
                self._sweep.popleft()
            if not self._groups:
                if began:
                    return None
                began = True
                if self._sweep_started is not None:
                    self.sweep_period = now - self._sweep_started
                self._groups = [(t, s) for t in self.plan for s in self.servers
                                if self.measures(t, s)]
                self._sweep_started = now if self._groups else None
                self.rng.shuffle(self._groups)
                continue
            target, server = self._groups.pop()
            questions = list(self.plan.get(target, ()))
            self.rng.shuffle(questions)
            self._sweep.extend(ProbeKey(target, q, server) for q in questions)

    def _pop_fast(self, now: float) -> tuple[int, ProbeKey] | None:
        """The next fast probe due, the lowest rank first, and its rank."""
        for rank, heap in enumerate(self._heaps):
            while heap and heap[0][0] <= now:
                due, key = heap[0]
                if self._fast_due.get(key) == (due, rank) and self.in_fast_mode(key, now):
                    return rank, key
                heapq.heappop(heap)
        return None

    def due(self, now: float) -> list[ProbeKey]:
        """The probes to send now, fast ones first, as far as the budget allows."""
        out: list[ProbeKey] = []
        while (found := self._pop_fast(now)) is not None:
            rank, key = found
            fast = self._fast[key]
            if key.server not in self.balanced and fast.expiry.missed(now):
                heapq.heappop(self._heaps[rank])
                self._place(key, fast, now)
                continue
            shared = self._shared_for(key)
            if shared is not None and shared.next_free(now) > now:
                # Its share is spent, not the agent's budget: the others may still go.
                heapq.heappop(self._heaps[rank])
                self._schedule_fast(key, shared.next_free(now), rank)
                self.deferred_total += 1
                continue
            if not self.budget.try_take(now, self._reserve if rank == WAIT else 0):
                self._count_fast_deferrals(now)
                return out
            if shared is not None:
                shared.try_take(now)
            heapq.heappop(self._heaps[rank])
            self._schedule_fast(key, now + LOST)
            out.append(key)
        # A gap chosen while the plan was small must not hold back a plan that grew since.
        gap = self._base_gap()
        if self._next_steady is None or self._next_steady > now + 1.5 * gap:
            self._next_steady = now + gap * self.rng.uniform(0.0, 1.0)
        if self._urgent_within(now + 1.0 / self.budget.qps):
            return out  # a step or first probe is about to need the budget's next query
        self._share_wait, skipped = None, 0
        while self._next_steady <= now and (swept := self._next_sweep_key(now)) is not None:
            # A key in fast mode has its probes placed where its answer can change: its
            # sweep slot goes unused and the budget stays with the fast probes.
            if not self.in_fast_mode(swept, now):
                shared = self._shared_for(swept)
                if shared is not None and shared.next_free(now) > now:
                    # Not this sweep (each one is shuffled anew): the next pair takes the slot.
                    self._sweep.popleft()
                    skipped += 1
                    if skipped >= self.pairs:
                        self._share_wait = shared.next_free(now)
                        return out
                    continue
                if not self.budget.try_take(now, self._reserve):
                    if not self._steady_deferred:
                        self._steady_deferred = True
                        self.deferred_total += 1
                    return out
                if shared is not None:
                    shared.try_take(now)
                self._steady_deferred = False
                out.append(swept)
            self._sweep.popleft()
            self._next_steady = max(self._next_steady + self._steady_gap(), now - 1.0)
        return out

    def _shared_for(self, key: ProbeKey) -> Budget | None:
        return self.shared if key.server.layer in SERVICE_LAYERS else None

    def _urgent_within(self, until: float) -> bool:
        """A probe whose instant is a window's error, or a change's first probe, falls due
        by `until`."""
        for rank in (ERROR, FIRST):
            heap = self._heaps[rank]
            while heap and self._fast_due.get(heap[0][1]) != (heap[0][0], rank):
                heapq.heappop(heap)  # replaced since
            if heap and heap[0][0] <= until:
                return True
        return False

    def _count_fast_deferrals(self, now: float) -> None:
        for due, key in (entry for heap in self._heaps for entry in heap):
            if due <= now and self._fast_due.get(key, (None,))[0] == due and \
                    key not in self._deferred:
                self._deferred.add(key)
                self.deferred_total += 1

    def next_wake(self, now: float) -> float:
        """When `due` may next return something: probes whose instant matters need one
        query free, the rest leave the reserve."""
        wakes = []
        urgent = [heap[0][0] for heap in self._heaps[:WAIT] if heap]
        if urgent:
            wakes.append(max(min(urgent), self.budget.next_free(now)))
        later = [self._heaps[WAIT][0][0]] if self._heaps[WAIT] else []
        if self._next_steady is not None and self.plan and self.servers and \
                not self._urgent_within(now + 1.0 / self.budget.qps):
            # A sweep whose every pair waits for its share of the fleet's budget waits for it.
            later.append(max(self._next_steady, self._share_wait or self._next_steady))
        if later:
            wakes.append(max(min(later), self.budget.next_free(now, self._reserve)))
        return min(wakes) if wakes else now + self.sweep_interval
