"""Worked examples of the comparator: each names the case from docs/design.md "Windows"."""

from __future__ import annotations

import pytest

from exporter.core.comparator import PROPAGATION, STALE, Comparator, Observation, RaceReason
from exporter.core.records import Question, ServerRef, Target
from exporter.core.truth import Stamp, Update

T = Target("ns", "web")
Q = Question("web.ns.svc.cluster.local.", "A")
POD = Question("web-2.web.ns.svc.cluster.local.", "A")
S = ServerRef("node-local", "10.0.0.10:53")
S2 = ServerRef("coredns", "10.0.0.11:53")


def answers(**sets: frozenset[str]) -> dict[Question, frozenset[str]]:
    return {Q: sets.get("svc", frozenset()), POD: sets.get("pod", frozenset())}


@pytest.fixture
def comparator() -> Comparator:
    c = Comparator()
    c.set_servers([S, S2])
    c.update(Update(T, answers(svc=frozenset({"1.1.1.1", "1.1.1.2"}),
                               pod=frozenset({"1.1.1.2"})), Stamp(0.0)))
    c.mark_synced()
    return c


def probe(c: Comparator, at: float, values: set[str], question: Question = Q,
          server: ServerRef = S, sent: float | None = None) -> list[tuple[str, str, float]]:
    outcome = c.observe(Observation(question, server, at if sent is None else sent, at,
                                    frozenset(values)))
    return [(w.kind, w.reference, round(w.seconds, 6)) for w in outcome.windows]


def test_stale_window_closes_at_first_absent_probe(comparator: Comparator) -> None:
    probe(comparator, 1.0, {"1.1.1.1", "1.1.1.2"})
    comparator.update(Update(T, answers(svc=frozenset({"1.1.1.1"})), Stamp(2.0, 1.5)))
    assert probe(comparator, 3.0, {"1.1.1.1", "1.1.1.2"}) == []
    assert comparator.open_windows(4.0)[(T, S)].stale_age == 2.0
    assert probe(comparator, 7.25, {"1.1.1.1"}) == [(STALE, "watch", 5.25),
                                                      (STALE, "trigger", 5.75)]
    assert (T, S) not in comparator.open_windows(8.0)


def test_resolution_is_the_gap_between_last_seen_and_first_absent(
        comparator: Comparator) -> None:
    probe(comparator, 1.0, {"1.1.1.1", "1.1.1.2"})
    comparator.update(Update(T, answers(svc=frozenset({"1.1.1.1"})), Stamp(2.0)))
    probe(comparator, 4.0, {"1.1.1.1", "1.1.1.2"})
    outcome = comparator.observe(Observation(Q, S, 4.5, 4.5, frozenset({"1.1.1.1"})))
    assert [w.resolution for w in outcome.windows] == [0.5]


def test_statefulset_pod_recreated_with_new_ip_is_stale_and_missing(
        comparator: Comparator) -> None:
    probe(comparator, 1.0, {"1.1.1.2"}, POD)
    comparator.update(Update(T, answers(svc=frozenset({"1.1.1.1", "1.1.1.9"}),
                                        pod=frozenset({"1.1.1.9"})), Stamp(2.0)))
    summary = comparator.open_windows(2.5)[(T, S)]
    assert (summary.stale, summary.missing) == (1, 2)
    assert probe(comparator, 4.0, {"1.1.1.9"}, POD) == [(STALE, "watch", 2.0),
                                                      (PROPAGATION, "watch", 2.0)]


def test_cached_nxdomain_delays_the_first_endpoint() -> None:
    c = Comparator()
    c.set_servers([S])
    c.update(Update(T, {Q: frozenset()}, Stamp(0.0)))
    c.mark_synced()
    probe(c, 1.0, set())
    c.update(Update(T, {Q: frozenset({"1.1.1.1"})}, Stamp(2.0)))
    assert probe(c, 3.0, set()) == []
    assert probe(c, 6.5, {"1.1.1.1"}) == [(PROPAGATION, "watch", 4.5)]


def test_missing_window_that_ends_by_leaving_the_truth_is_a_race(
        comparator: Comparator) -> None:
    comparator.update(Update(T, answers(svc=frozenset({"1.1.1.1", "1.1.1.2", "1.1.1.3"})),
                             Stamp(1.0)))
    outcome = comparator.update(Update(T, answers(svc=frozenset({"1.1.1.1", "1.1.1.2"})),
                                       Stamp(2.0)))
    assert {(r.reason, r.value) for r in outcome.races} == {
        ("left_truth_while_missing", "1.1.1.3")}
    assert probe(comparator, 3.0, {"1.1.1.1", "1.1.1.2"}) == []


def test_probe_sent_before_the_change_is_a_race_not_a_window(
        comparator: Comparator) -> None:
    probe(comparator, 1.0, {"1.1.1.1", "1.1.1.2"})
    comparator.update(Update(T, answers(svc=frozenset({"1.1.1.1"})), Stamp(2.0)))
    outcome = comparator.observe(Observation(Q, S, 1.99, 2.01, frozenset({"1.1.1.1"})))
    assert outcome.windows == []
    assert [r.reason for r in outcome.races] == ["layer_ahead_of_watch"]


def test_value_served_again_after_removal_is_attributed_to_the_removal(
        comparator: Comparator) -> None:
    comparator.update(Update(T, answers(svc=frozenset({"1.1.1.1"})), Stamp(2.0)))
    # S2 was never probed before the removal; a replica that still serves the old IP later
    # is stale because of that removal.
    probe(comparator, 3.0, {"1.1.1.1", "1.1.1.2"}, server=S2)
    assert comparator.open_windows(4.0)[(T, S2)].stale_age == 2.0
    assert probe(comparator, 5.0, {"1.1.1.1"}, server=S2) == [(STALE, "watch", 3.0)]


def test_readded_while_still_served_is_a_race(comparator: Comparator) -> None:
    probe(comparator, 1.0, {"1.1.1.1", "1.1.1.2"})
    comparator.update(Update(T, answers(svc=frozenset({"1.1.1.1"})), Stamp(2.0)))
    outcome = comparator.update(Update(T, answers(svc=frozenset({"1.1.1.1", "1.1.1.2"})),
                                       Stamp(3.0)))
    assert [r.reason for r in outcome.races] == ["returned_while_stale"]
    assert probe(comparator, 4.0, {"1.1.1.1", "1.1.1.2"}) == []


def test_startup_state_shows_in_gauges_but_never_as_samples() -> None:
    c = Comparator()
    c.set_servers([S])
    c.update(Update(T, {Q: frozenset({"1.1.1.1"})}, Stamp(0.0)))
    assert probe(c, 1.0, {"9.9.9.9"}) == []
    c.mark_synced()
    summary = c.open_windows(11.0)[(T, S)]
    assert (summary.stale, summary.stale_age, summary.missing) == (1, 10.0, 1)
    assert probe(c, 12.0, {"1.1.1.1"}) == []
    assert c.open_windows(12.0) == {}


def test_negative_trigger_reference_is_clamped(comparator: Comparator) -> None:
    probe(comparator, 1.0, {"1.1.1.1", "1.1.1.2"})
    comparator.update(Update(T, answers(svc=frozenset({"1.1.1.1"})), Stamp(2.0, 2.5)))
    outcome = comparator.observe(Observation(Q, S, 2.2, 2.2, frozenset({"1.1.1.1"})))
    trigger = [w for w in outcome.windows if w.reference == "trigger"]
    assert [(w.seconds, w.clamped) for w in trigger] == [(0.0, True)]


def test_settled_needs_a_probe_after_the_change(comparator: Comparator) -> None:
    probe(comparator, 1.0, {"1.1.1.1", "1.1.1.2"})
    probe(comparator, 1.0, {"1.1.1.2"}, POD)
    assert comparator.settled(Q, S) and comparator.settled(POD, S)
    outcome = comparator.update(Update(T, answers(svc=frozenset({"1.1.1.1"}), pod=frozenset()),
                                       Stamp(2.0)))
    assert outcome.changed == {Q, POD}
    assert not comparator.settled(Q, S) and not comparator.settled(POD, S)
    probe(comparator, 3.0, {"1.1.1.1"})
    assert comparator.settled(Q, S) and not comparator.settled(POD, S)
    probe(comparator, 3.0, set(), POD)
    assert comparator.settled(POD, S)


def test_retired_names_are_probed_until_settled_then_forgotten() -> None:
    c = Comparator(history=60)
    c.set_servers([S])
    c.update(Update(T, {Q: frozenset({"1.1.1.1"}), POD: frozenset({"1.1.1.1"})}, Stamp(0.0)))
    c.mark_synced()
    probe(c, 1.0, {"1.1.1.1"}, POD)
    c.update(Update(T, {Q: frozenset({"1.1.1.1"})}, Stamp(2.0)))
    assert POD in c.questions(T)
    assert c.prune(3.0) == []
    probe(c, 4.0, set(), POD)
    assert c.prune(5.0) == [T]
    assert c.questions(T) == (Q,)


def test_target_removed_makes_every_record_stale(comparator: Comparator) -> None:
    probe(comparator, 1.0, {"1.1.1.1", "1.1.1.2"})
    comparator.update(Update(T, None, Stamp(2.0)))
    assert comparator.open_windows(3.0)[(T, S)].stale == 2


def test_changes_learned_by_a_relist_never_become_samples(comparator: Comparator) -> None:
    probe(comparator, 1.0, {"1.1.1.1", "1.1.1.2"})
    comparator.update(Update(T, answers(svc=frozenset({"1.1.1.1"})), Stamp(2.0), gap=True))
    assert comparator.open_windows(3.0)[(T, S)].stale == 1
    assert probe(comparator, 4.0, {"1.1.1.1"}) == []


def test_a_server_that_is_down_shows_no_windows_and_measures_no_outage(
        comparator: Comparator) -> None:
    probe(comparator, 1.0, {"1.1.1.1", "1.1.1.2"})
    comparator.failed(Q, S, 1.5)
    comparator.update(Update(T, answers(svc=frozenset({"1.1.1.1", "1.1.1.2", "1.1.1.3"})),
                             Stamp(2.0)))
    assert (T, S) not in comparator.open_windows(3.0)
    # Back after 20 s, already serving the new record: the window would be the outage.
    assert probe(comparator, 22.0, {"1.1.1.1", "1.1.1.2", "1.1.1.3"}) == []
    assert (T, S) not in comparator.open_windows(23.0)


def test_an_add_while_down_keeps_its_attribution(comparator: Comparator) -> None:
    probe(comparator, 1.0, {"1.1.1.1", "1.1.1.2"})
    comparator.failed(POD, S, 1.5)  # another name failed: the server is marked down
    added = frozenset({"1.1.1.1", "1.1.1.2", "1.1.1.3"})
    comparator.update(Update(T, answers(svc=added), Stamp(2.0)))
    probe(comparator, 2.1, {"1.1.1.1", "1.1.1.2"})
    assert probe(comparator, 3.0, set(added)) == [(PROPAGATION, "watch", 1.0)]


def test_a_removal_across_an_outage_is_a_race_not_a_sample(comparator: Comparator) -> None:
    probe(comparator, 1.0, {"1.1.1.1", "1.1.1.2"})
    comparator.update(Update(T, answers(svc=frozenset({"1.1.1.1"})), Stamp(2.0)))
    comparator.failed(Q, S, 2.1)
    comparator.failed(Q, S, 10.0)
    outcome = comparator.observe(Observation(Q, S, 12.0, 12.0, frozenset({"1.1.1.1"})))
    assert outcome.windows == []
    assert [r.reason for r in outcome.races] == ["outage"]


def test_a_stale_record_seen_after_the_change_survives_an_outage(
        comparator: Comparator) -> None:
    probe(comparator, 1.0, {"1.1.1.1", "1.1.1.2"})
    comparator.update(Update(T, answers(svc=frozenset({"1.1.1.1"})), Stamp(2.0)))
    probe(comparator, 3.0, {"1.1.1.1", "1.1.1.2"})  # still served after the change
    comparator.failed(Q, S, 4.0)
    [window] = comparator.observe(Observation(Q, S, 5.0, 5.0, frozenset({"1.1.1.1"}))).windows
    assert (window.kind, window.seconds, window.resolution) == (STALE, 3.0, 2.0)


def balanced_comparator(confirm: int = 3) -> Comparator:
    c = Comparator(confirm=confirm)
    c.set_servers([S, S2], balanced=[S2])
    c.update(Update(T, answers(svc=frozenset({"1.1.1.1", "1.1.1.2"})), Stamp(0.0)))
    c.mark_synced()
    return c


def test_behind_a_balancer_a_removal_gives_one_window_ending_at_the_last_sighting() -> None:
    c = balanced_comparator()
    probe(c, 1.0, {"1.1.1.1", "1.1.1.2"}, server=S2)
    c.update(Update(T, answers(svc=frozenset({"1.1.1.1"})), Stamp(2.0)))
    # Replica B has moved on; replica A's cache still serves the removed record.
    assert probe(c, 3.0, {"1.1.1.1"}, server=S2) == []
    assert probe(c, 3.1, {"1.1.1.1", "1.1.1.2"}, server=S2) == []
    assert probe(c, 23.0, {"1.1.1.1"}, server=S2) == []
    assert probe(c, 23.1, {"1.1.1.1"}, server=S2) == []
    [window] = c.observe(Observation(Q, S2, 23.2, 23.2, frozenset({"1.1.1.1"}))).windows
    assert (window.kind, window.seconds, round(window.resolution, 6)) == (STALE, 21.0, 19.9)
    # A replica seen later with the record shows as stale, but gives no second sample.
    probe(c, 30.0, {"1.1.1.1", "1.1.1.2"}, server=S2)
    assert c.open_windows(30.5)[(T, S2)].stale == 1
    assert [probe(c, 31.0 + i / 10, {"1.1.1.1"}, server=S2) for i in range(3)] == [[], [], []]


def test_a_server_that_is_not_balanced_still_ends_at_the_first_answer() -> None:
    c = balanced_comparator()
    probe(c, 1.0, {"1.1.1.1", "1.1.1.2"})
    c.update(Update(T, answers(svc=frozenset({"1.1.1.1"})), Stamp(2.0)))
    assert probe(c, 3.0, {"1.1.1.1"}) == [(STALE, "watch", 1.0)]


def test_an_add_to_a_server_that_never_answered_is_an_outage_race() -> None:
    """hypothesis found this: the server failed from the start, the record came at 1.5 and
    the first answer had it. No answer ever showed the old state, so it is no sample."""
    c = Comparator()
    c.set_servers([S])
    c.update(Update(T, answers(), Stamp(0.0)))
    c.mark_synced()
    for at in (0.6, 1.0, 1.4):
        c.failed(Q, S, at)
    c.update(Update(T, answers(svc=frozenset({"1.1.1.1"})), Stamp(1.5)))
    outcome = c.observe(Observation(Q, S, 1.513, 1.515, frozenset({"1.1.1.1"})))
    assert outcome.windows == []
    assert [r.reason for r in outcome.races] == ["outage"]


def test_an_answer_asked_before_the_change_does_not_show_the_old_state_after_it() -> None:
    """hypothesis found this: a probe sent at 2.413 came back at 2.415 with the record, the
    removal came at 2.414, then the server failed until 3.5. The answer was asked before the
    change, so nothing showed the old state after it: an outage race, not 1.1 s of
    staleness."""
    c = Comparator()
    c.set_servers([S])
    c.update(Update(T, answers(svc=frozenset({"1.1.1.1"})), Stamp(0.0)))
    c.mark_synced()
    c.observe(Observation(Q, S, 2.313, 2.315, frozenset({"1.1.1.1"})))
    c.update(Update(T, answers(), Stamp(2.414)))
    c.observe(Observation(Q, S, 2.413, 2.415, frozenset({"1.1.1.1"})))
    for at in (2.515, 3.415):
        c.failed(Q, S, at)
    outcome = c.observe(Observation(Q, S, 3.513, 3.515, frozenset()))
    assert outcome.windows == []
    assert [r.reason for r in outcome.races] == ["outage"]


def sharded(owned: set[ServerRef]) -> Comparator:
    """Measures the servers in `owned`, which the test may change before a reshard."""
    c = Comparator(measures=lambda target, server: server in owned)
    c.set_servers([S, S2])
    c.update(Update(T, answers(svc=frozenset({"1.1.1.1", "1.1.1.2"})), Stamp(0.0)))
    c.mark_synced()
    return c


def test_a_shard_keeps_cells_only_where_it_measures() -> None:
    c = sharded({S})
    probe(c, 1.0, {"1.1.1.1", "1.1.1.2"})
    c.update(Update(T, answers(svc=frozenset({"1.1.1.1", "1.1.1.3"})), Stamp(2.0)))
    # The new record is missing on S, which it measures; on S2 nothing opens, never probed.
    assert set(c.open_windows(3.0)) == {(T, S)}
    assert probe(c, 3.0, {"1.1.1.1", "1.1.1.2"}, server=S2) == []  # a probe from before


def test_a_window_open_when_the_target_moves_away_is_a_race() -> None:
    owned = {S}
    c = sharded(owned)
    probe(c, 1.0, {"1.1.1.1", "1.1.1.2"})
    c.update(Update(T, answers(svc=frozenset({"1.1.1.1"})), Stamp(2.0)))
    probe(c, 3.0, {"1.1.1.1", "1.1.1.2"})
    owned.clear()
    races = c.reshard([T], 4.0)
    assert [(r.reason, r.server, r.value) for r in races] == [
        (RaceReason.HANDED_OVER, S, "1.1.1.2")]
    assert c.open_windows(4.0) == {}
    assert probe(c, 5.0, {"1.1.1.1"}) == []  # its end, seen by no one here, is no sample


def test_a_window_caused_before_the_target_came_here_is_a_race_not_a_sample() -> None:
    owned = {S}
    c = sharded(owned)
    c.update(Update(T, answers(svc=frozenset({"1.1.1.1"})), Stamp(2.0)))
    owned.add(S2)
    assert c.reshard([T], 3.0) == []
    probe(c, 4.0, {"1.1.1.1", "1.1.1.2"}, server=S2)
    assert (T, S2) in c.open_windows(4.5)  # the layer is stale, and the gauges say so
    outcome = c.observe(Observation(Q, S2, 6.0, 6.0, frozenset({"1.1.1.1"})))
    assert outcome.windows == []
    assert [r.reason for r in outcome.races] == [RaceReason.HANDED_OVER]
    # A change after the handover is measured as ever.
    c.update(Update(T, answers(svc=frozenset({"1.1.1.1", "1.1.1.4"})), Stamp(7.0)))
    assert probe(c, 8.0, {"1.1.1.1", "1.1.1.4"}, server=S2) == [(PROPAGATION, "watch", 1.0)]


def test_a_pair_gets_its_cell_when_first_probed_or_changed_after_the_sync() -> None:
    """The memory of a name nobody asked yet is its expected answer alone (issue: 10,000
    slices held 72 MB of empty cells before any probe)."""
    c = Comparator()
    c.set_servers([S, S2])
    c.update(Update(T, answers(svc=frozenset({"1.1.1.1"})), Stamp(0.0)))
    c.mark_synced()
    cells = {q: set(qs.cells) for q, qs in c._questions.items()}
    assert cells == {Q: set(), POD: set()}
    probe(c, 1.0, {"1.1.1.1"})
    assert set(c._questions[Q].cells) == {S}
    # A change after the sync opens its window on every server, probed or not.
    c.update(Update(T, answers(svc=frozenset({"1.1.1.1"}), pod=frozenset({"1.1.1.3"})),
                    Stamp(2.0)))
    assert set(c._questions[POD].cells) == {S, S2}
    assert c.open_windows(3.0)[(T, S2)].missing == 1


def test_a_server_measured_all_along_but_not_yet_probed_is_not_handed_over() -> None:
    """A reshard that gives the target another server leaves the first one's windows alone,
    though its cell did not exist yet: the removal before it is still a sample there."""
    owned = {S}
    c = sharded(owned)
    c.update(Update(T, answers(svc=frozenset({"1.1.1.1"})), Stamp(2.0)))
    owned.add(S2)
    assert c.reshard([T], 3.0) == []
    assert probe(c, 4.0, {"1.1.1.1", "1.1.1.2"}) == []
    assert probe(c, 5.0, {"1.1.1.1"}) == [(STALE, "watch", 3.0)]
    # The server it gained at 3.0 did not see the change: its end is a race.
    probe(c, 4.0, {"1.1.1.1", "1.1.1.2"}, server=S2)
    outcome = c.observe(Observation(Q, S2, 6.0, 6.0, frozenset({"1.1.1.1"})))
    assert outcome.windows == [] and [r.reason for r in outcome.races] == [
        RaceReason.HANDED_OVER]


def test_the_census_counts_what_is_held_and_lets_it_go(comparator: Comparator) -> None:
    """/api/v1/status's internals: a soak sees a leak there before it sees it in RSS."""
    assert comparator.census() == {"targets": 1, "names": 2, "cells": 0, "removed_values": 0,
                                   "windows_noted": 0}
    probe(comparator, 1.0, {"1.1.1.1", "1.1.1.2"})
    probe(comparator, 1.0, {"1.1.1.2"}, POD, S2)
    comparator.update(Update(T, answers(svc=frozenset({"1.1.1.1"})), Stamp(2.0)))
    probe(comparator, 3.0, {"1.1.1.1", "1.1.1.2"})
    assert comparator.census() == {"targets": 1, "names": 2, "cells": 2, "removed_values": 2,
                                   "windows_noted": 2}
    comparator.update(Update(T, None, Stamp(4.0)))
    later = 4.0 + comparator.history + 1
    comparator.prune(later)
    assert comparator.open_windows(later) == {}  # a scrape forgets the noted cell
    assert comparator.census() == {"targets": 0, "names": 0, "cells": 0, "removed_values": 0,
                                   "windows_noted": 0}


def test_an_answer_cut_at_64_kb_measures_only_what_it_holds(comparator: Comparator) -> None:
    """CoreDNS sets TC even over TCP when a large Service's SRV records pass 64 KB: what the
    answer lacks may still be served (docs/design.md, "Semantics")."""
    def cut(at: float, values: set[str]) -> tuple[list[tuple[str, float]], list[str]]:
        outcome = comparator.observe(Observation(Q, S, at, at, frozenset(values),
                                                 complete=False))
        return ([(w.kind, round(w.seconds, 6)) for w in outcome.windows
                 if w.reference == "watch"], [f"{r.reason} {r.value}" for r in outcome.races])

    assert cut(1.0, {"1.1.1.1"}) == ([], [])
    assert comparator.open_windows(1.5) == {}  # 1.1.1.2 was cut, not missing
    probe(comparator, 2.0, {"1.1.1.1", "1.1.1.2"})
    comparator.update(Update(T, answers(svc=frozenset({"1.1.1.2", "1.1.1.3", "1.1.1.4"}),
                                        pod=frozenset({"1.1.1.2"})), Stamp(3.0)))
    # The change opened stale 1.1.1.1 and missing 1.1.1.3 and 1.1.1.4: a cut answer with the
    # first two extends the one and ends the other; 1.1.1.4, cut, ends as a race.
    assert cut(4.0, {"1.1.1.1", "1.1.1.3"}) == ([(PROPAGATION, 1.0)], ["cut 1.1.1.4"])
    assert comparator.open_windows(4.5)[(T, S)].stale == 1
    assert comparator.open_windows(4.5)[(T, S)].missing == 0
    assert cut(5.0, {"1.1.1.2"}) == ([], ["cut 1.1.1.1"])  # gone, or cut: unknown
    assert (T, S) not in comparator.open_windows(5.5)
