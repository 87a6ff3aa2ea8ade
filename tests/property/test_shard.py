"""Sharding targets over the fleet (exporter/core/shard.py), on random fleets and targets."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.core.records import Target
from exporter.core.shard import Shard

nodes = st.lists(st.from_regex(r"node-[a-z0-9]{1,6}", fullmatch=True), min_size=1,
                 max_size=12, unique=True)
targets = st.lists(st.builds(Target, st.sampled_from(["a", "b", "team"]),
                             st.from_regex(r"[a-z]{1,8}", fullmatch=True)),
                   min_size=1, max_size=40, unique=True)


def shard(me: str, members: list[str], k: int, found: list[Target], extra: int = 0) -> Shard:
    out = Shard(me, k, extra)
    for target in found:
        out.add(target)
    out.set_members(members)
    return out


@settings(max_examples=200, deadline=None)
@given(members=nodes, found=targets, k=st.integers(1, 4))
def test_every_target_has_exactly_k_owners_that_every_member_agrees_on(
        members: list[str], found: list[Target], k: int) -> None:
    shards = [shard(me, members, k, found) for me in members]
    for target in found:
        measuring = [s.me for s in shards if s.owns(target)]
        assert len(measuring) == min(k, len(members))
        assert all(s.owners(target) == sorted(measuring) for s in shards)


@settings(max_examples=200, deadline=None)
@given(members=nodes, found=targets, k=st.integers(1, 3), changes=st.lists(
    st.tuples(st.booleans(), st.from_regex(r"node-[a-z0-9]{1,6}", fullmatch=True)),
    min_size=1, max_size=6))
def test_a_view_changed_step_by_step_owns_what_a_fresh_one_does(
        members: list[str], found: list[Target], k: int,
        changes: list[tuple[bool, str]]) -> None:
    """The incremental rerank (one score per joiner, a rerank where an owner left) agrees
    with computing the owners from scratch, and counts every target it gives or takes."""
    me = members[0]
    live = shard(me, members, k, found)
    view = set(members)
    handed = taken = 0
    for join, member in changes:
        if member == me:
            continue
        before = {t for t in found if live.owns(t)}
        view = view | {member} if join else view - {member}
        moved = set(live.set_members(view))
        after = {t for t in found if live.owns(t)}
        assert moved == before ^ after
        handed, taken = handed + len(before - after), taken + len(after - before)
        fresh = shard(me, sorted(view), k, found)
        assert after == {t for t in found if fresh.owns(t)}
    assert (live.handed_out, live.taken_in) == (handed, taken)


@settings(max_examples=200, deadline=None)
@given(members=nodes, found=targets, k=st.integers(1, 3), extra=st.just("node-NEW"))
def test_a_member_joining_moves_only_what_it_takes(
        members: list[str], found: list[Target], k: int, extra: str) -> None:
    before = {t: set(shard(members[0], members, k, found).owners(t)) for t in found}
    grown = [*members, extra]
    after = {t: set(shard(members[0], grown, k, found).owners(t)) for t in found}
    for target in found:
        # Either nothing changes, or the newcomer takes exactly one member's place.
        lost = before[target] - after[target]
        gained = after[target] - before[target]
        assert gained <= {extra}
        assert len(lost) == len(gained) - (len(members) < k)
    # And each old member is told of exactly the targets it lost, and counts them.
    for me in members:
        live = shard(me, members, k, found)
        moved = live.set_members(grown)
        handed = sorted(t for t in found if me in before[t] and me not in after[t])
        assert moved == handed
        assert (live.handed_out, live.taken_in) == (len(handed), 0)


@settings(max_examples=100, deadline=None)
@given(members=nodes, found=targets, k=st.integers(1, 3), extra=st.integers(0, 5),
       gone=st.integers(0, 10))
def test_node_local_covers_the_shard_and_a_fixed_number_more(
        members: list[str], found: list[Target], k: int, extra: int, gone: int) -> None:
    for me in members:
        s = shard(me, members, k, found, extra)
        for target in found[:gone]:
            s.remove(target)
        left = found[gone:]
        local = {t for t in left if s.measures(t, "node-local")}
        owned = {t for t in left if s.owns(t)}
        assert owned <= local
        assert len(local - owned) <= extra
        assert len(local) >= min(extra, len(left))
        assert all(s.measures(t, "resolv-conf") for t in left)
        assert all(s.measures(t, "coredns") == s.owns(t) for t in left)


def test_the_extras_are_the_best_draws_whatever_the_order_of_arrival() -> None:
    found = [Target("ns", f"svc-{i}") for i in range(200)]
    forward, backward = Shard("node-a", 1, 3), Shard("node-a", 1, 3)
    for target in found:
        forward.add(target)
    for target in reversed(found):
        backward.add(target)
    picks = {t for t in found if forward.measures(t, "node-local")}
    assert len(picks) == 3
    assert picks == {t for t in found if backward.measures(t, "node-local")}
    other = Shard("node-b", 1, 3)
    for target in found:
        other.add(target)
    assert {t for t in found if other.measures(t, "node-local")} != picks  # its own draw


def test_nothing_is_owned_before_the_first_membership_list() -> None:
    s = Shard("node-a", 3, 1)
    target = Target("ns", "svc")
    assert s.add(target) == [target]  # the node-local extra needs no membership
    assert not s.owns(target) and not s.measures(target, "kube-dns")
    assert s.measures(target, "node-local")
    assert s.set_members([]) == [target]  # a fleet of one: it owns everything
    assert s.owns(target) and (s.handed_out, s.taken_in) == (0, 0)


def test_an_agent_not_yet_listed_owns_nothing_until_it_is() -> None:
    """The others do not count it yet: counting itself in would make k + 1 owners."""
    found = [Target("ns", f"svc-{i}") for i in range(40)]
    s = shard("node-new", ["node-a", "node-b", "node-c"], 2, found, 1)
    assert not any(s.owns(t) for t in found)
    assert sum(s.measures(t, "node-local") for t in found) == 1  # its extra all the same
    moved = s.set_members(["node-a", "node-b", "node-c", "node-new"])
    assert moved == sorted(t for t in found if s.owns(t)) and 5 < len(moved) < 35
    assert (s.handed_out, s.taken_in) == (0, len(moved))
    assert s.set_members(["node-a", "node-b", "node-c"]) == moved  # going: it hands all over
    assert s.handed_out == len(moved)


def test_the_budget_is_shared_by_the_fleet() -> None:
    s = Shard("a", 2)
    s.set_members(["a", "b", "c", "d"])
    assert s.budget_share(100.0) == 25.0
    s.set_members([])
    assert s.budget_share(100.0) == 100.0  # alone: all of it
