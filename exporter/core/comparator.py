"""The comparator: opens and closes stale and missing windows from truth updates and probes.

Pure code with no clock of its own: every input carries its time. For each (question, server)
it keeps a cell with the last answer and the windows still open, made when the pair is first
probed or a change after the sync gives it a window: a name nobody has asked yet costs no cell.

- stale: a value the layer serves that is not in the truth. It is attributed to the truth when
  the value left the truth after the first full sync; then closing it yields a window of
  `t_first_absent - t_removed`.
- missing: a value in the truth that the layer does not serve. It is attributed when the value
  entered the truth after the first full sync; closing it yields a propagation delay.

Unattributed windows (startup state, a layer that drifts on its own) show in the gauges with
their age from first sight and never become histogram samples. A window that ends because the
truth moved again, or that a probe sent before the change already saw closed, is a race.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from exporter.core.records import Measures, Question, ServerRef, Target, measure_all
from exporter.core.truth import Stamp, Update

STALE = "stale"
PROPAGATION = "propagation"
SHORT = 8
"""Values a name's expected answer holds as a tuple; a longer one is a set, for lookups."""


class RaceReason(StrEnum):
    """Why a window ended without a sample; the `reason` label of the races counter."""

    LEFT_TRUTH_WHILE_MISSING = "left_truth_while_missing"
    """A record not yet served left the truth again."""
    RETURNED_WHILE_STALE = "returned_while_stale"
    """A removed record came back while the layer still served it."""
    SERVED_BEFORE_WATCH = "served_before_watch"
    """The layer served a record before the agent's watch had it."""
    LAYER_AHEAD_OF_WATCH = "layer_ahead_of_watch"
    """A probe sent before the change already saw the new answer."""
    OUTAGE = "outage"
    """The layer failed to answer, and no answer between the change and the end showed the
    old state: the window would measure the outage, not the layer."""
    HANDED_OVER = "handed_over"
    """The fleet moved the target to other agents while the window was open, or gave it to
    this one after the change: no single agent saw the window from its start to its end."""
    CUT = "cut"
    """An answer cut at 64 KB lacked the record: whether the layer serves it is unknown, and
    a large Service's answers stay cut, so the window could never end."""


@dataclass(frozen=True, slots=True)
class Observation:
    """A probe that got an answer. Errors never reach the comparator: they are not staleness."""

    question: Question
    server: ServerRef
    sent: float
    received: float
    values: frozenset[str]
    ttl: int | None = None
    """The TTL the answer carried: its records', or the negative TTL of an empty one."""
    complete: bool = True
    """False when the answer was cut (TC over TCP): the values it holds are served, but one
    it lacks may be served too. It opens or extends a stale window and ends a missing one
    with the values it holds; a window on a value it lacks ends as a `cut` race."""


@dataclass(frozen=True, slots=True)
class Window:
    """A closed window, one per reference clock."""

    kind: str
    target: Target
    question: Question
    server: ServerRef
    value: str
    reference: str
    seconds: float
    resolution: float
    """The uncertainty of `seconds`: the gap between the two probes that bracket the end."""
    clamped: bool = False
    last_old: float = 0.0
    """Seconds from the reference to the last answer in the old state (negative when that
    answer came before the change): the latest moment a client is known to have got it."""
    old_ttl: int | None = None
    """The TTL of that answer: how long a client that respects TTLs may keep it."""
    old_empty: bool = False
    """That answer held no record (NXDOMAIN or NODATA): a client holds it as a failure."""
    blind: bool = False
    """A probe failed between that answer and the end: a client's refresh may have too."""


@dataclass(frozen=True, slots=True)
class Race:
    """A window that ended for a reason other than the layer catching up."""

    reason: RaceReason
    target: Target
    question: Question
    server: ServerRef
    value: str


@dataclass(slots=True)
class Outcome:
    windows: list[Window] = field(default_factory=list)
    races: list[Race] = field(default_factory=list)
    changed: set[Question] = field(default_factory=set)
    """The names whose expected answer the update moved."""


@dataclass(slots=True)
class _Open:
    cause: Stamp | None
    """The truth change behind the window; None when the truth did not cause it."""
    first_seen: float
    last_seen: float
    seen_sent: float
    """When the answer behind `last_seen` was asked: one asked before the change says
    nothing about the state after it, even if it came back after. Like `last_seen`, it
    stands still while `ended` is set: an answer in the old state clears `ended`."""
    ended: Observation | None = None
    """Behind a balancer: the first answer in the new state since the last one in the old,
    while it waits for confirmation."""
    ended_after: float = 0.0
    """`last_seen` when `ended` came: the start of the end's resolution."""
    seen_ttl: int | None = None
    """The TTL of the answer at `last_seen`."""
    seen_empty: bool = False
    """The answer at `last_seen` held no record."""
    blind: bool = False
    """A probe of the name failed between the server's previous answer and `ended`."""
    confirmations: int = 0


@dataclass(slots=True)
class _Cell:
    last_sent: float | None = None
    last_received: float | None = None
    served: frozenset[str] = frozenset()
    last_ttl: int | None = None
    stale: dict[str, _Open] = field(default_factory=dict)
    missing: dict[str, _Open] = field(default_factory=dict)
    failed_at: float = float("-inf")
    """When a probe of this name on this server last failed."""
    sampled: dict[str, Stamp] = field(default_factory=dict)
    """Removed values whose stale window already gave its sample behind a balancer: a
    replica seen serving one later shows in the gauges, never as a second sample."""
    since: float = float("-inf")
    """When this agent began to measure the name on the server, if the fleet handed it over
    after the sync: windows caused before it end as races."""


@dataclass(slots=True)
class _TargetState:
    questions: tuple[Question, ...] = ()
    """Sorted: a tuple of 9 names is a fifth of a set's size, and the scheduler wants them
    in order."""
    servers: frozenset[ServerRef] = frozenset()
    """Where this agent measures the target: the only servers its names get cells on."""


_NO_STAMPS: Mapping[str, Stamp] = MappingProxyType({})
_NO_CELLS: Mapping[ServerRef, _Cell] = MappingProxyType({})


@dataclass(slots=True)
class _QuestionState:
    target: Target
    held: str | tuple[str, ...] | frozenset[str] = ()
    """The truth's values for the name: a pod's name has one, held as itself (a 1-tuple
    is 48 bytes, and 60,000 pod names at 10,000 slices), a tuple while short (a tenth of a
    dict's size), the set itself for a large StatefulSet's."""
    removed: Mapping[str, Stamp] = field(default_factory=lambda: _NO_STAMPS)
    """Values that left the truth, and when. Most names never lose one, and none has cells
    before its first probe: both share one empty mapping until their first entry, which
    saved 12 MB at 10,000 slices."""
    cells: Mapping[ServerRef, _Cell] = field(default_factory=lambda: _NO_CELLS)
    in_truth: bool = True
    changed_at: float = float("-inf")

    @property
    def expected(self) -> tuple[str, ...] | frozenset[str]:
        held = self.held
        return (held,) if isinstance(held, str) else held

    def expect(self, values: frozenset[str]) -> None:
        if len(values) == 1:
            [self.held] = values
        else:
            self.held = tuple(sorted(values)) if len(values) <= SHORT else values

    def own_removed(self) -> dict[str, Stamp]:
        removed = self.removed
        if not isinstance(removed, dict):
            removed = self.removed = {}
        return removed

    def own_cells(self) -> dict[ServerRef, _Cell]:
        cells = self.cells
        if not isinstance(cells, dict):
            cells = self.cells = {}
        return cells


@dataclass(frozen=True, slots=True)
class OpenWindow:
    kind: str
    target: Target
    question: Question
    server: ServerRef
    value: str
    age: float
    attributed: bool
    """False when the truth did not cause it: startup state, or a layer drifting on its own."""


@dataclass(frozen=True, slots=True)
class OpenSummary:
    """Open windows of one target on one layer, for the gauges."""

    stale: int
    stale_age: float
    missing: int
    missing_age: float


def _closed(
    kind: str, qs: _QuestionState, question: Question, server: ServerRef, value: str,
    window: _Open, cause: Stamp, at: float,
) -> Iterator[Window]:
    references = [("watch", cause.seen)]
    if cause.trigger is not None:
        references.append(("trigger", cause.trigger))
    for reference, since in references:
        yield Window(kind, qs.target, question, server, value, reference,
                     max(0.0, at - since), at - window.ended_after, at < since,
                     last_old=window.ended_after - since, old_ttl=window.seen_ttl,
                     old_empty=window.seen_empty, blind=window.blind)


class Comparator:
    def __init__(self, history: float = 900.0, confirm: int = 10,
                 measures: Measures = measure_all) -> None:
        self.history = history
        """Seconds a removed record stays attributable, and a retired name stays probed."""
        self.confirm = confirm
        """Answers in the new state that end a window behind a balancer."""
        self.measures = measures
        """Cells exist only for the (target, server) pairs this agent measures."""
        self.balanced: frozenset[ServerRef] = frozenset()
        self.servers: tuple[ServerRef, ...] = ()
        self.synced = False
        self._down: set[ServerRef] = set()
        self._questions: dict[Question, _QuestionState] = {}
        self._by_target: dict[Target, _TargetState] = {}
        self._server_sets: dict[frozenset[ServerRef], frozenset[ServerRef]] = {}
        """One instance of each distinct set of measured servers, shared by the targets."""
        self._open: set[tuple[Question, ServerRef]] = set()
        """Cells that got a window since the gauges last looked: a scrape visits these, not
        every cell of every name (bench/footprint.py)."""

    def set_servers(self, servers: Iterable[ServerRef],
                    balanced: Iterable[ServerRef] = ()) -> None:
        """`balanced`: servers whose address spreads queries over replicas with caches of
        their own (a Service IP). A window there ends when the layer last served the old
        state, as a client of that address sees it (docs/design.md, "Windows")."""
        self.servers = tuple(sorted(set(servers)))
        self.balanced = frozenset(balanced)
        for target, state in self._by_target.items():
            state.servers = servers = self._measured(target)
            for question in state.questions:
                qs = self._questions[question]
                if any(s not in servers for s in qs.cells):
                    qs.cells = {s: c for s, c in qs.cells.items() if s in servers}

    def _measured(self, target: Target) -> frozenset[ServerRef]:
        found = frozenset(s for s in self.servers if self.measures(target, s))
        return self._server_sets.setdefault(found, found)

    def _cell(self, qs: _QuestionState, server: ServerRef) -> _Cell | None:
        """The pair's cell, made on first use; None where this agent does not measure it."""
        cell = qs.cells.get(server)
        if cell is None and server in self._by_target[qs.target].servers:
            cell = qs.own_cells()[server] = _Cell()
        return cell

    def reshard(self, targets: Iterable[Target], now: float) -> list[Race]:
        """The fleet moved these targets: drop the cells this agent no longer measures, their
        open windows ending as races, and start cells for the ones it now does."""
        races = []
        for target in targets:
            state = self._by_target.get(target)
            if state is None:
                continue
            want = self._measured(target)
            lost, gained = state.servers - want, want - state.servers
            state.servers = want
            for question in state.questions:
                qs = self._questions[question]
                for server in lost & set(qs.cells):
                    cell = qs.own_cells().pop(server)
                    races += [Race(RaceReason.HANDED_OVER, target, question, server, value)
                              for found in (cell.stale, cell.missing)
                              for value, window in found.items() if window.cause is not None]
                if self.synced:
                    for server in gained:
                        qs.own_cells()[server] = _Cell(since=now)
        return races

    def failed(self, question: Question, server: ServerRef, at: float) -> None:
        """A probe got no answer. The server shows no windows in the gauges until it answers
        again, but keeps its attribution: a change meanwhile still opens its window, and the
        failure is remembered so that no window can measure the outage."""
        self._down.add(server)
        qs = self._questions.get(question)
        cell = self._cell(qs, server) if qs is not None else None
        if cell is not None:
            cell.failed_at = at

    def mark_synced(self) -> None:
        """The first full sync is done: from now on truth changes open windows."""
        self.synced = True

    def questions(self, target: Target) -> tuple[Question, ...]:
        """The target's names in order; the scheduler's plan holds this same tuple."""
        state = self._by_target.get(target)
        return state.questions if state is not None else ()

    def update(self, update: Update) -> Outcome:
        outcome = Outcome()
        answers = update.answers or {}
        state = self._by_target.get(update.target)
        if state is None:
            state = self._by_target[update.target] = _TargetState(
                servers=self._measured(update.target))
        names = set(state.questions)
        grown = False
        stamp = update.stamp if self.synced and not update.gap else None
        for question in names | set(answers):
            qs = self._questions.get(question)
            if qs is None:
                qs = _QuestionState(update.target)
                self._questions[question] = qs
                names.add(question)
                grown = True
                if self.synced:  # a name new since the sync (a new pod's AAAA): ask it soon
                    outcome.changed.add(question)
            qs.in_truth = question in answers
            new = answers.get(question, frozenset())
            old = qs.expected
            removed = [v for v in old if v not in new]
            added = [v for v in new if v not in old]
            if removed or added:
                qs.expect(new)
                qs.changed_at = update.stamp.seen
                outcome.changed.add(question)
            for value in removed:
                self._remove(qs, question, value, stamp, update.stamp.seen, outcome)
            for value in added:
                self._add(qs, question, value, stamp, outcome)
        if grown:
            state.questions = tuple(sorted(names))
        return outcome

    def _remove(
        self, qs: _QuestionState, question: Question, value: str, stamp: Stamp | None,
        at: float, outcome: Outcome,
    ) -> None:
        if stamp is not None:
            qs.own_removed()[value] = stamp
        for server, cell in qs.cells.items():
            if cell.missing.pop(value, None) is not None:
                if stamp is not None:
                    outcome.races.append(Race(RaceReason.LEFT_TRUTH_WHILE_MISSING, qs.target,
                                              question, server, value))
            elif self.synced and value in cell.served and cell.last_received is not None \
                    and cell.last_sent is not None:
                cell.stale[value] = _Open(stamp, at, cell.last_received, cell.last_sent,
                                          seen_ttl=cell.last_ttl)
                self._open.add((question, server))

    def _add(
        self, qs: _QuestionState, question: Question, value: str, stamp: Stamp | None,
        outcome: Outcome,
    ) -> None:
        if value in qs.removed:
            del qs.own_removed()[value]
        # A change after the sync opens its window on every measured server, probed or not.
        servers = self._by_target[qs.target].servers if stamp is not None else list(qs.cells)
        for server in servers:
            cell = self._cell(qs, server)
            if cell is None:
                continue
            cell.sampled.pop(value, None)
            window = cell.stale.pop(value, None)
            if stamp is None:
                continue
            if window is not None:
                reason = (RaceReason.RETURNED_WHILE_STALE if window.cause
                          else RaceReason.SERVED_BEFORE_WATCH)
                outcome.races.append(Race(reason, qs.target, question, server, value))
            else:
                # The last probe without the value bounds when the layer started serving it,
                # which may be before the watch told us.
                if cell.last_received is None or cell.last_sent is None:
                    cell.missing[value] = _Open(stamp, stamp.seen, stamp.seen, stamp.seen)
                else:
                    cell.missing[value] = _Open(stamp, stamp.seen, cell.last_received,
                                                cell.last_sent, seen_ttl=cell.last_ttl,
                                                seen_empty=not cell.served)
                self._open.add((question, server))

    def observe(self, obs: Observation) -> Outcome:
        outcome = Outcome()
        qs = self._questions.get(obs.question)
        cell = self._cell(qs, obs.server) if qs is not None else None
        if qs is None or cell is None:  # a probe answered after its name or server went
            return outcome
        at, answer = obs.received, obs.values
        self._down.discard(obs.server)
        confirm = self.confirm if obs.server in self.balanced else 1
        self._close(STALE, cell, cell.stale, qs, obs, outcome, confirm)
        self._close(PROPAGATION, cell, cell.missing, qs, obs, outcome, confirm)
        expected = qs.expected
        for value in answer:
            if value not in expected and value not in cell.stale:
                cause = qs.removed.get(value) if self.synced else None
                if cause is not None and cell.sampled.get(value) is cause:
                    cause = None  # a late replica of a removal already measured
                cell.stale[value] = _Open(cause, at, at, obs.sent, seen_ttl=obs.ttl)
                self._open.add((obs.question, obs.server))
        for value in expected if obs.complete else ():
            if value not in answer and value not in cell.missing:
                cell.missing[value] = _Open(None, at, at, obs.sent, seen_ttl=obs.ttl,
                                            seen_empty=not answer)
                self._open.add((obs.question, obs.server))
        cell.served, cell.last_sent, cell.last_received = answer, obs.sent, at
        cell.last_ttl = obs.ttl
        return outcome

    @staticmethod
    def _close(kind: str, cell: _Cell, windows: dict[str, _Open], qs: _QuestionState,
               obs: Observation, outcome: Outcome, confirm: int) -> None:
        """A stale window ends at the first answer without its value, a missing one at the
        first answer with it; until then each answer moves `last_seen` on. Behind a
        balancer the end needs `confirm` such answers in a row: one in the old state, from a
        replica whose cache is behind, means the layer still serves it, and the end moves."""
        for value, window in list(windows.items()):
            if value not in obs.values and not obs.complete:
                del windows[value]
                if window.cause is not None:
                    outcome.races.append(Race(RaceReason.CUT, qs.target, obs.question,
                                              obs.server, value))
                continue
            if (value in obs.values) == (kind == STALE):
                window.last_seen, window.seen_sent = obs.received, obs.sent
                window.seen_ttl, window.seen_empty = obs.ttl, not obs.values
                window.ended, window.confirmations = None, 0
                continue
            if window.ended is None:
                window.ended, window.ended_after = obs, window.last_seen
                # `last_received` is still the answer before this one; a window opened
                # before the server ever answered counts every failure.
                previous = cell.last_received if cell.last_received is not None \
                    else float("-inf")
                window.blind = cell.failed_at > previous
            window.confirmations += 1
            if window.confirmations < confirm:
                continue
            del windows[value]
            if window.cause is None:
                continue
            end = window.ended
            reason = None
            if window.cause.seen < cell.since:
                reason = RaceReason.HANDED_OVER
            elif end.sent < window.cause.seen:
                reason = RaceReason.LAYER_AHEAD_OF_WATCH
            elif window.seen_sent <= window.cause.seen and window.blind:
                # Never seen in the old state after the change, with failures in between:
                # the end is anywhere in the outage, so the same event would give another
                # number with other probe times.
                reason = RaceReason.OUTAGE
            if reason is not None:
                outcome.races.append(Race(reason, qs.target, obs.question, obs.server, value))
                continue
            if kind == STALE and confirm > 1:
                cell.sampled[value] = window.cause
            outcome.windows += _closed(kind, qs, obs.question, obs.server, value, window,
                                       window.cause, end.received)

    def settled(self, question: Question, server: ServerRef) -> bool:
        """The name was probed on the server since its last change, and agrees."""
        qs = self._questions.get(question)
        if qs is None:
            return True
        cell = qs.cells.get(server)
        return (cell is not None and not cell.stale and not cell.missing
                and cell.last_sent is not None and cell.last_sent >= qs.changed_at)

    def expected(self, question: Question) -> frozenset[str] | None:
        """What the truth has for the name; None when the name is not in it."""
        qs = self._questions.get(question)
        return frozenset(qs.expected) if qs is not None and qs.in_truth else None

    def served(self, question: Question, server: ServerRef) -> frozenset[str] | None:
        """What the server last answered for the name; None before its first answer."""
        qs = self._questions.get(question)
        cell = qs.cells.get(server) if qs is not None else None
        return cell.served if cell is not None and cell.last_sent is not None else None

    def prune(self, now: float) -> list[Target]:
        """Forget retired names once settled or too old; returns targets whose names changed."""
        touched = []
        horizon = now - self.history
        for question, qs in list(self._questions.items()):
            for value, stamp in list(qs.removed.items()):
                if stamp.seen < horizon:
                    del qs.own_removed()[value]
            if qs.in_truth:
                continue
            state = self._by_target[qs.target]
            # A measured server that never answered for the name has not seen its change.
            settled = all(
                not c.stale and (c.last_sent or float("-inf")) >= qs.changed_at
                for c in qs.cells.values()
            ) and (qs.changed_at == float("-inf") or len(qs.cells) == len(state.servers))
            if settled or qs.changed_at < horizon:
                del self._questions[question]
                state.questions = tuple(q for q in state.questions if q != question)
                if not state.questions:
                    del self._by_target[qs.target]
                touched.append(qs.target)
        return sorted(set(touched))

    def census(self) -> dict[str, int]:
        """What the comparator holds, counted for /api/v1/status: a soak watches it for
        growth. Walks every name once."""
        cells = removed = 0
        for qs in self._questions.values():
            cells += len(qs.cells)
            removed += len(qs.removed)
        return {"targets": len(self._by_target), "names": len(self._questions),
                "cells": cells, "removed_values": removed, "windows_noted": len(self._open)}

    def open_detail(self, now: float) -> Iterator[OpenWindow]:
        """Every window open now, with its age: from the truth change, or from first sight."""
        for question, server in list(self._open):
            qs = self._questions.get(question)
            cell = qs.cells.get(server) if qs is not None else None
            if qs is None or cell is None or not (cell.stale or cell.missing):
                self._open.discard((question, server))
                continue
            if server in self._down:
                continue
            for kind, found in ((STALE, cell.stale), (PROPAGATION, cell.missing)):
                for value, window in found.items():
                    since = window.cause.seen if window.cause else window.first_seen
                    yield OpenWindow(kind, qs.target, question, server, value,
                                     now - since, window.cause is not None)

    def open_windows(self, now: float) -> dict[tuple[Target, ServerRef], OpenSummary]:
        """Per target and server: distinct records stale or missing now, and the oldest age."""
        return summarize(self.open_detail(now))


def summarize(details: Iterable[OpenWindow]) -> dict[tuple[Target, ServerRef], OpenSummary]:
    ages: dict[tuple[Target, ServerRef, str], dict[tuple[Question, str], float]] = {}
    for window in details:
        by_record = ages.setdefault((window.target, window.server, window.kind), {})
        record = (window.question, window.value)
        by_record[record] = max(by_record.get(record, 0.0), window.age)
    summary = {}
    for target, server in {(t, s) for t, s, _ in ages}:
        stale = ages.get((target, server, STALE), {})
        missing = ages.get((target, server, PROPAGATION), {})
        summary[(target, server)] = OpenSummary(
            len(stale), max(stale.values(), default=0.0),
            len(missing), max(missing.values(), default=0.0),
        )
    return summary
