"""When a name's answer on one server can next change, read from the answers. Pure code.

A cache counts an entry's TTL down in whole seconds: CoreDNS's cache answers with
`stored TTL - floor(seconds since stored)` and drops the entry when that reaches zero. An
answer with TTL k, served at a server time t between our send and our receipt, says that the
entry expires at some E with t + k - 1 < E <= t + k. Answers of one entry narrow E by
intersection. A probe sent a whole number of seconds before an instant m tells on which side
of m the expiry lies, so the expiry is bisected to a few milliseconds before it happens, and
then two probes bracket it: one just before (the layer still serves the entry) and one just
after (the layer had to fetch again). In an entry's last second no probe can be a whole
second early, and one past the expiry ends the window, so the probes step up to it.

Nothing here decides a window: windows come from what the probes saw (comparator.py). A wrong
prediction only costs precision, never correctness (docs/design.md, "Probe placement").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PRECISION = 0.04
"""Stop bisecting once the expiry is known to this width, in seconds."""
MARGIN = 0.005
"""How far before or after the bracketing instants the probes go."""


@dataclass(slots=True)
class Expiry:
    """What the answers of one (name, server) say about its next change."""

    values: frozenset[str] | None = None
    """The answer of the current entry; None when no entry is known."""
    lo: float = -math.inf
    hi: float = math.inf
    """The entry expires after `lo` and no later than `hi`."""
    first_ttl: int = 0
    aged: bool = False
    """The entry was seen counting down, or replaced right at its predicted expiry: a cache."""
    full: int = 0
    """The server's highest TTL for answers of this sign: one below it comes from a cache."""
    last_served: float = -math.inf
    """When the last answer of the current entry arrived."""
    unpredicted: int = 0
    """Answers (and failures) in a row that gave no prediction: the back-off's exponent."""

    def observe(self, sent: float, received: float, values: frozenset[str],
                ttl: int | None, full: int = 0) -> None:
        """`full`: the server's highest TTL for answers like this one, this one included."""
        if ttl is None or ttl <= 0:
            # No TTL, or TTL 0 (serve_stale: expired, refreshing): nothing to predict from.
            self.values, self.aged = None, False
            self.unpredicted += 1
            return
        lo, hi = sent + ttl - 1, received + ttl
        if self.values == values and max(lo, self.lo) < min(hi, self.hi):
            self.lo, self.hi = max(lo, self.lo), min(hi, self.hi)
            self.aged = self.aged or ttl < self.first_ttl
        else:
            # A new entry. Fetched after the old one expired, less than a second ago, it
            # was stored during this second: its TTL is whole and it expires `ttl` after the
            # store, which came after the old entry's `lo`.
            fresh = self.aged and self.lo < received < self.lo + 1
            self.lo = max(lo, self.lo + ttl) if fresh else lo
            self.values, self.hi, self.first_ttl, self.aged = values, hi, ttl, fresh
        self.full = max(full, ttl)
        self.last_served = received
        self.unpredicted = 0 if self.predictable else self.unpredicted + 1

    def failed(self) -> None:
        self.unpredicted += 1

    @property
    def predictable(self) -> bool:
        """The answer comes from a cache entry: seen counting down, or first seen below the
        server's highest TTL."""
        return self.values is not None and (self.aged or self.first_ttl < self.full)

    def next_probe(self, now: float, interval: float, longest: float,
                   step: float = PRECISION) -> float:
        """When to probe next while the name's answer on this server disagrees with the
        truth. A cache entry is bisected and then bracketed; anything else (a layer without
        a cache, which may change at any moment, or an entry not yet seen counting down) is
        probed every `interval`, doubling up to `longest`. In the entry's last second the
        probes step up to the expiry `step` apart: a finer step costs more queries."""
        if not self.predictable:
            return now + min(interval * 2.0 ** max(0, self.unpredicted - 1), longest)
        after = self.hi + MARGIN
        if self.hi - self.lo > PRECISION:
            seconds = self._ahead(now, MARGIN)
            if seconds >= 1:
                # A whole number of seconds before a split point in the middle half, the
                # layer still serves the entry, and the TTL it gets says on which side of
                # the split the expiry lies: the middle if it can be had within the second.
                return max((self.lo + self.hi) / 2 - seconds, now + MARGIN)
            # The entry's last second: a probe past the expiry ends the window, so step up
            # to it from just before `lo`.
            return self._before(now) or max(now + MARGIN, self.lo + step)
        return self._before(now) or max(now, after)

    def urgency(self, now: float) -> int:
        """How much the next probe's instant matters. 0: it is the window's error (a step up
        to the expiry, or the probe just after it). 1: missed, it costs precision or
        queries (the probe just before the expiry, which bounds the resolution, and the last
        bisection a whole second ahead, after which a second of steps is left to pay). 2: it
        can wait."""
        if not self.predictable:
            return 2
        before = self._before(now) is not None
        if self.hi - self.lo > PRECISION:
            ahead = self._ahead(now, MARGIN)
            if ahead < 1:
                return 1 if before else 0
            return 1 if ahead < 2 else 2
        return 1 if before else 0

    def missed(self, now: float) -> bool:
        """A bisection probe that waited (for the budget) past its instant: sent now, it
        would split nothing, so it is placed again rather than spend a query."""
        if not self.predictable or self.hi - self.lo <= PRECISION:
            return False
        seconds = self._ahead(now, 0.0)
        if seconds < 1:
            return False  # stepping up to the expiry: every probe counts
        return now + seconds < self.lo + (self.hi - self.lo) / 4

    def _ahead(self, now: float, margin: float) -> int:
        """Whole seconds from `now + margin` to the top of the interval's middle half: a
        probe that many seconds before a split point there can still be sent."""
        return math.floor(self.hi - (self.hi - self.lo) / 4 - now - margin)

    def _before(self, now: float) -> float | None:
        """Just before `lo`, unless an answer came in that span: the last probe that sees the
        entry, which bounds the window's resolution."""
        before = self.lo - MARGIN
        if self.last_served < before - PRECISION and now < before:
            return before
        return None
