"""Client profiles: the built-ins, the custom syntax and its errors, and worked examples."""

from __future__ import annotations

import pytest

from exporter.core.clients import BUILTIN, FOREVER, ClientProfile, Hold, parse, parse_all
from exporter.core.comparator import STALE, Comparator, Observation, Window
from exporter.core.records import Question, ServerRef, Target
from exporter.core.truth import Stamp, Update

T = Target("ns", "web")
Q = Question("web.ns.svc.cluster.local.", "A")
S = ServerRef("node-local", "10.0.0.10:53")


def window(seconds: float, last_old: float, ttl: int | None, *, empty: bool = False,
           blind: bool = False) -> Window:
    return Window(STALE, T, Q, S, "10.244.0.5", "watch", seconds, seconds - last_old,
                  last_old=last_old, old_ttl=ttl, old_empty=empty, blind=blind)


def test_builtins() -> None:
    assert list(BUILTIN) == ["jvm", "jvm-security-manager", "grpc", "glibc", "nscd",
                             "systemd-resolved"]
    w = window(11.0, 10.9, 5)
    seen = {name: p.seconds(w) for name, p in BUILTIN.items()}
    assert seen == {"jvm": pytest.approx(40.9), "jvm-security-manager": FOREVER,
                    "grpc": pytest.approx(40.9), "glibc": 11.0, "nscd": pytest.approx(15.9),
                    "systemd-resolved": pytest.approx(15.9)}


def test_a_client_without_a_cache_sees_the_layer() -> None:
    assert BUILTIN["glibc"].seconds(window(11.0, 10.9, 30)) == 11.0


def test_a_ttl_respecting_client_through_an_expiring_cache_adds_nothing() -> None:
    # The last old answer came with 0 s left: the client's copy expires with the layer's.
    assert BUILTIN["nscd"].seconds(window(11.0, 10.9, 0)) == 11.0


def test_failures_are_held_as_failures() -> None:
    # The last old state was NXDOMAIN (a new pod's name): the JVM keeps it 10 s.
    assert BUILTIN["jvm"].seconds(window(3.0, 2.5, 5, empty=True)) == pytest.approx(12.5)


def test_stale_retention_counts_only_when_a_refresh_may_have_failed() -> None:
    edge = parse("edge=positive:ttl(1..60);negative:5;stale:30")
    assert edge.seconds(window(11.0, 10.9, 5)) == pytest.approx(15.9)
    assert edge.seconds(window(11.0, 10.9, 5, blind=True)) == pytest.approx(45.9)


def test_an_answer_seen_before_the_change_counts_from_the_change() -> None:
    # The layer was last seen serving the record 2 s before the removal: it served it until
    # the removal as far as anyone knows, and a client that asked then holds it 30 s.
    assert BUILTIN["jvm"].seconds(window(0.5, -2.0, 30)) == pytest.approx(30.0)


@pytest.mark.parametrize(("spec", "want"), [
    ("jvm", BUILTIN["jvm"]),
    ("edge=positive:ttl;negative:10", ClientProfile("edge", Hold(None), Hold(10.0))),
    ("edge=positive:ttl(5..60);negative:ttl(..30)",
     ClientProfile("edge", Hold(None, 5.0, 60.0), Hold(None, 0.0, 30.0))),
    ("pinned = positive:forever ; negative:0 ; stale:2.5",
     ClientProfile("pinned", Hold(FOREVER), Hold(0.0), 2.5)),
])
def test_custom_syntax(spec: str, want: ClientProfile) -> None:
    assert parse(spec) == want


@pytest.mark.parametrize(("spec", "message"), [
    ("bogus", "'bogus' is no built-in profile (jvm, jvm-security-manager, grpc, glibc, nscd, "
              "systemd-resolved); a custom one is NAME=positive:HOLD;negative:HOLD"),
    ("Edge=positive:1;negative:1", "'Edge' is not a profile name"),
    ("edge=positive:1", "edge: give both positive: and negative:"),
    ("edge=positive:1;negative:1;positive:2", "edge: positive given twice"),
    ("edge=positive:1;negative:soon", "edge: 'soon' is not a hold"),
    ("edge=positive:ttl(9..6);negative:1", "edge: 'ttl(9..6)': the floor is above the cap"),
    ("edge=positive:1;negative:1;stale:-1", "edge: stale:-1 is not seconds"),
    ("edge=ttl:1;negative:1", "edge: 'ttl:1' is not positive:, negative: or stale:"),
])
def test_bad_specs_name_the_part_at_fault(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse(spec)
    assert str(err.value).startswith(message), err.value


def test_a_profile_given_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="profile jvm given twice"):
        parse_all(("jvm", "grpc", "jvm"))


def test_describe() -> None:
    assert BUILTIN["jvm"].describe() == "answers 30 s, failures 10 s"
    assert BUILTIN["nscd"].describe() == "answers the TTL (at most 3600 s), failures 20 s"
    assert parse("e=positive:ttl(5..);negative:forever;stale:3").describe() == \
        "answers the TTL (at least 5 s), failures forever, 3 s stale on a failed refresh"


def test_the_comparator_keeps_the_last_old_answer_and_its_ttl() -> None:
    c = Comparator()
    c.set_servers([S])
    c.update(Update(T, {Q: frozenset({"10.244.0.5"})}, Stamp(0.0)))
    c.mark_synced()
    c.observe(Observation(Q, S, 1.0, 1.0, frozenset({"10.244.0.5"}), 30))
    c.update(Update(T, {Q: frozenset()}, Stamp(2.0, 1.5)))
    c.observe(Observation(Q, S, 4.0, 4.0, frozenset({"10.244.0.5"}), 27))
    windows = c.observe(Observation(Q, S, 4.5, 4.5, frozenset(), 5)).windows
    assert [(w.reference, w.seconds, w.last_old, w.old_ttl, w.old_empty) for w in windows] == [
        ("watch", 2.5, 2.0, 27, False), ("trigger", 3.0, 2.5, 27, False)]
