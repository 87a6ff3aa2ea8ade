"""The probe scheduler: what to ask which server next, within the budget. Pure code.

Steady state sweeps every (name, server) pair round-robin, in an order shuffled per sweep and
with jittered gaps, so that the pods of a DaemonSet never fall into step. The sweep uses at most
`steady_share` of the budget. A target whose truth changed enters fast mode: its names are asked
of every server each `fast_interval` until that server agrees with the truth or `fast_cap`
passes. Fast probes go first; any probe that falls due while the budget is spent is deferred
and counted once.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass, field

from exporter.core.budget import Budget
from exporter.core.records import Question, ServerRef, Target


@dataclass(frozen=True, slots=True, order=True)
class ProbeKey:
    target: Target
    question: Question
    server: ServerRef


@dataclass
class Scheduler:
    budget: Budget
    rng: random.Random
    fast_interval: float = 0.1
    fast_cap: float = 300.0
    sweep_interval: float = 30.0
    steady_share: float = 0.5
    deferred_total: int = field(default=0, init=False)
    """Probes that fell due while the budget was spent."""
    plan: dict[Target, tuple[Question, ...]] = field(default_factory=dict, init=False)
    servers: tuple[ServerRef, ...] = field(default=(), init=False)
    _fast_until: dict[Target, dict[ServerRef, float]] = field(default_factory=dict, init=False)
    """Per target, the servers in fast mode and until when: indexed by target, because every
    truth update asks about one target."""
    _fast_heap: list[tuple[float, ProbeKey]] = field(default_factory=list, init=False)
    _fast_due: dict[ProbeKey, float] = field(default_factory=dict, init=False)
    _sweep: deque[ProbeKey] = field(default_factory=deque, init=False)
    _next_steady: float | None = field(default=None, init=False)
    _deferred: set[ProbeKey] = field(default_factory=set, init=False)
    _steady_deferred: bool = field(default=False, init=False)

    def set_servers(self, servers: tuple[ServerRef, ...]) -> None:
        self.servers = servers

    def set_plan(self, target: Target, questions: tuple[Question, ...], now: float) -> None:
        """The names to probe for a target; an empty tuple forgets the target."""
        if questions:
            self.plan[target] = questions
        else:
            self.plan.pop(target, None)
            self._fast_until.pop(target, None)
            return
        for server, until in list(self._fast_until.get(target, {}).items()):
            if until <= now:
                self.settle(target, server)
                continue
            for question in questions:
                self._schedule_fast(ProbeKey(target, question, server), now)

    def changed(self, target: Target, now: float) -> None:
        """The target's truth changed: probe it fast on every server."""
        self._fast_until[target] = dict.fromkeys(self.servers, now + self.fast_cap)
        for server in self.servers:
            for question in self.plan.get(target, ()):
                self._schedule_fast(ProbeKey(target, question, server), now)

    def settle(self, target: Target, server: ServerRef) -> None:
        """The server agrees with the truth for this target (or the cap passed): leave fast
        mode."""
        servers = self._fast_until.get(target)
        if servers is not None:
            servers.pop(server, None)
            if not servers:
                del self._fast_until[target]

    def in_fast_mode(self, target: Target, server: ServerRef, now: float) -> bool:
        until = self._fast_until.get(target, {}).get(server)
        if until is None:
            return False
        if until <= now:
            self.settle(target, server)
            return False
        return True

    def _schedule_fast(self, key: ProbeKey, due: float) -> None:
        current = self._fast_due.get(key)
        if current is not None and current <= due:
            return
        self._fast_due[key] = due
        heapq.heappush(self._fast_heap, (due, key))

    def _base_gap(self) -> float:
        pairs = sum(len(q) for q in self.plan.values()) * len(self.servers)
        floor = 1.0 / (self.budget.qps * self.steady_share)
        return max(self.sweep_interval / max(pairs, 1), floor)

    def _steady_gap(self) -> float:
        return self._base_gap() * self.rng.uniform(0.5, 1.5)

    def _next_sweep_key(self) -> ProbeKey | None:
        if not self._sweep:
            keys = [
                ProbeKey(t, q, s)
                for t, questions in self.plan.items()
                for q in questions
                for s in self.servers
            ]
            self.rng.shuffle(keys)
            self._sweep.extend(keys)
        while self._sweep:
            key = self._sweep[0]
            if key.question in self.plan.get(key.target, ()) and key.server in self.servers:
                return key
            self._sweep.popleft()
        return None

    def _pop_fast(self, now: float) -> ProbeKey | None:
        while self._fast_heap and self._fast_heap[0][0] <= now:
            due, key = self._fast_heap[0]
            valid = (
                self._fast_due.get(key) == due
                and self.in_fast_mode(key.target, key.server, now)
                and key.question in self.plan.get(key.target, ())
            )
            if valid:
                return key
            heapq.heappop(self._fast_heap)
            if self._fast_due.get(key) == due:
                del self._fast_due[key]
                self._deferred.discard(key)
        return None

    def due(self, now: float) -> list[ProbeKey]:
        """The probes to send now, fast ones first, as far as the budget allows."""
        out: list[ProbeKey] = []
        while (key := self._pop_fast(now)) is not None:
            if not self.budget.try_take(now):
                self._count_fast_deferrals(now)
                return out
            heapq.heappop(self._fast_heap)
            del self._fast_due[key]
            self._deferred.discard(key)
            self._schedule_fast(key, now + self.fast_interval)
            out.append(key)
        # A gap chosen while the plan was small must not hold back a plan that grew since.
        gap = self._base_gap()
        if self._next_steady is None or self._next_steady > now + 1.5 * gap:
            self._next_steady = now + gap * self.rng.uniform(0.0, 1.0)
        while self._next_steady <= now and (key := self._next_sweep_key()) is not None:
            if not self.budget.try_take(now):
                if not self._steady_deferred:
                    self._steady_deferred = True
                    self.deferred_total += 1
                return out
            self._sweep.popleft()
            self._steady_deferred = False
            self._next_steady = max(self._next_steady + self._steady_gap(), now - 1.0)
            out.append(key)
        return out

    def _count_fast_deferrals(self, now: float) -> None:
        for due, key in self._fast_heap:
            if due <= now and self._fast_due.get(key) == due and key not in self._deferred:
                self._deferred.add(key)
                self.deferred_total += 1

    def next_wake(self, now: float) -> float:
        """When `due` may next return something."""
        candidates = []
        if self._fast_heap:
            candidates.append(self._fast_heap[0][0])
        if self._next_steady is not None and self.plan and self.servers:
            candidates.append(self._next_steady)
        if not candidates:
            return now + self.sweep_interval
        wake = min(candidates)
        return self.budget.next_free(now) if wake <= now else wake
