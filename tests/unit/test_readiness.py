"""What `wait` waits for, over a real comparator fed by hand."""

from __future__ import annotations

from exporter.core.comparator import Comparator, Observation
from exporter.core.readiness import Want, pending
from exporter.core.records import Question, ServerRef, Target
from exporter.core.truth import Stamp, Update

T = Target("team", "workers")
SVC = Question("workers.team.svc.cluster.local.", "A")
W0 = Question("worker-0.workers.team.svc.cluster.local.", "A")
W1 = Question("worker-1.workers.team.svc.cluster.local.", "A")
NL = ServerRef("node-local", "169.254.20.10:53")
ZONE = "cluster.local"


def comparator(answers: dict[Question, frozenset[str]]) -> Comparator:
    c = Comparator()
    c.set_servers([NL])
    c.update(Update(T, answers, Stamp(1.0)))
    c.mark_synced()
    return c


def test_an_unknown_service_is_said_so() -> None:
    c = Comparator()
    c.set_servers([NL])
    assert pending(c, T, ZONE, Want(), [NL]) == [
        "team/workers: no headless Service with that name is monitored yet (it does not exist, "
        "is not headless, or is not in the namespaces watched)"]


def test_replicas_and_names_in_the_truth_then_every_name_served() -> None:
    c = comparator({SVC: frozenset({"10.0.0.1"}), W0: frozenset({"10.0.0.1"})})
    want = Want(2, ("worker-0", "worker-1"))
    assert pending(c, T, ZONE, want, [NL]) == [
        "team/workers: 1 ready address in the truth, waiting for 2",
        "team/workers: no ready endpoint with hostname worker-1 in the truth",
        f"node-local 169.254.20.10:53: {W0} not asked yet",
        f"node-local 169.254.20.10:53: {SVC} not asked yet"]
    both = frozenset({"10.0.0.1", "10.0.0.2"})
    c.update(Update(T, {SVC: both, W0: frozenset({"10.0.0.1"}), W1: frozenset({"10.0.0.2"})},
                    Stamp(2.0)))
    c.observe(Observation(SVC, NL, 3.0, 3.0, frozenset({"10.0.0.1"}), 5))
    c.observe(Observation(W0, NL, 3.0, 3.0, frozenset({"10.0.0.1"}), 5))
    c.observe(Observation(W1, NL, 3.0, 3.0, frozenset(), 5))  # the cached NXDOMAIN
    assert pending(c, T, ZONE, want, [NL]) == [
        f"node-local 169.254.20.10:53: {W1} lacks 10.0.0.2",
        f"node-local 169.254.20.10:53: {SVC} lacks 10.0.0.2"]
    c.observe(Observation(SVC, NL, 4.0, 4.0, both, 5))
    c.observe(Observation(W1, NL, 4.0, 4.0, frozenset({"10.0.0.2"}), 5))
    assert pending(c, T, ZONE, want, [NL]) == []


def test_a_removed_address_still_served_is_missing_too() -> None:
    c = comparator({SVC: frozenset({"10.0.0.1", "10.0.0.9"})})
    c.observe(Observation(SVC, NL, 2.0, 2.0, frozenset({"10.0.0.1", "10.0.0.9"}), 5))
    c.update(Update(T, {SVC: frozenset({"10.0.0.1"})}, Stamp(3.0)))
    c.observe(Observation(SVC, NL, 4.0, 4.0, frozenset({"10.0.0.1", "10.0.0.9"}), 5))
    assert pending(c, T, ZONE, Want(), [NL]) == [
        f"node-local 169.254.20.10:53: {SVC} still serves 10.0.0.9"]


def test_no_server_is_never_done() -> None:
    c = comparator({SVC: frozenset({"10.0.0.1"})})
    assert pending(c, T, ZONE, Want(), []) == [
        "no DNS server to probe: no layer of `layers` was found"]
