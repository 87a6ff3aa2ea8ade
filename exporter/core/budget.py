"""The probe budget: a token bucket that also caps every one-second window. Pure code."""

from __future__ import annotations

import math
from collections import deque

WINDOW = 1.05
"""Over a second by 50 ms, so that send-time jitter cannot squeeze an extra query into a
one-second window as the DNS server sees it: a probe leaves a few milliseconds after its token
is taken, and a busy event loop stretched that to over 10 ms in tests/adapters/test_agent.py.
It costs 5 % of the rate when the budget is saturated."""


class Budget:
    """At most `qps` sends in any window of a second, and bursts of at most `burst` at once.

    A plain token bucket of capacity `burst` lets `burst + qps` through in the second after an
    idle spell; the sliding log of the last `qps` send times makes the ceiling exact.
    """

    def __init__(self, qps: float, burst: int) -> None:
        if qps <= 0:
            raise ValueError("qps must be above 0")
        if not 1 <= burst <= max(1.0, qps):
            raise ValueError("burst must be between 1 and qps")
        self.qps = qps
        self.burst = burst
        # A share of a fleet's budget can be below one query a second: one per window then.
        self._ceiling = max(1, math.floor(qps))
        self._tokens = float(burst)
        self._updated: float | None = None
        self._sent: deque[float] = deque(maxlen=self._ceiling)

    def _refill(self, now: float) -> None:
        if self._updated is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.qps)
        self._updated = now if self._updated is None else max(self._updated, now)

    def try_take(self, now: float, reserve: int = 0) -> bool:
        """Spend one query now if the budget allows it and still holds `reserve` more."""
        self._check(reserve)
        self._refill(now)
        if self._tokens < 1 + reserve or self._window_full(now, reserve):
            return False
        self._tokens -= 1
        self._sent.append(now)
        return True

    def _check(self, reserve: int) -> None:
        if not 0 <= reserve < self.burst:
            raise ValueError("reserve must be below the burst")

    def _window_full(self, now: float, reserve: int) -> bool:
        sent = len(self._sent)
        # The send `reserve` places from the oldest in the window must have left it.
        return sent + reserve >= self._ceiling and \
            now - self._sent[sent + reserve - self._ceiling] < WINDOW

    def used(self, now: float) -> int:
        """Queries sent in the last second."""
        return sum(1 for sent in self._sent if now - sent < 1.0)

    def next_free(self, now: float, reserve: int = 0) -> float:
        """The earliest time `try_take(reserve=reserve)` can succeed."""
        self._check(reserve)
        self._refill(now)
        if self._tokens >= 1 + reserve and not self._window_full(now, reserve):
            return now
        at = now + max(0.0, 1 + reserve - self._tokens) / self.qps
        if self._window_full(now, reserve):
            at = max(at, self._sent[len(self._sent) + reserve - self._ceiling] + WINDOW)
        # Float rounding must never promise a time at which the bucket is still empty.
        return max(at, now + 1e-6)
