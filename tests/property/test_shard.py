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


def fleet(members: list[str], k: int, sample: float = 0.0) -> list[Shard]:
    return [Shard(me, frozenset(members), k, sample) for me in members]


@settings(max_examples=200, deadline=None)
@given(members=nodes, found=targets, k=st.integers(1, 4))
def test_every_target_has_exactly_k_owners_that_every_member_agrees_on(
        members: list[str], found: list[Target], k: int) -> None:
    shards = fleet(members, k)
    for target in found:
        measuring = [s.me for s in shards if s.cluster_wide(target)]
        assert len(measuring) == min(k, len(members))
        assert all(s.owners(target) == sorted(measuring) for s in shards)


@settings(max_examples=200, deadline=None)
@given(members=nodes, found=targets, k=st.integers(1, 3), extra=st.just("node-NEW"))
def test_a_member_joining_moves_only_what_it_takes(
        members: list[str], found: list[Target], k: int, extra: str) -> None:
    before = {t: set(Shard(members[0], frozenset(members), k).owners(t)) for t in found}
    grown = [*members, extra]
    after = {t: set(Shard(members[0], frozenset(grown), k).owners(t)) for t in found}
    for target in found:
        # Either nothing changes, or the newcomer takes exactly one member's place.
        lost = before[target] - after[target]
        gained = after[target] - before[target]
        assert gained <= {extra}
        assert len(lost) == len(gained) - (len(members) < k)
    # And the old member that lost a target under the new membership is told to hand it over.
    for me in members:
        old, new = Shard(me, frozenset(members), k), Shard(me, frozenset(grown), k)
        assert new.handed_over(old, found) == sorted(
            t for t in found if me in before[t] and me not in after[t])


@settings(max_examples=100, deadline=None)
@given(members=nodes, found=targets, k=st.integers(1, 3),
       sample=st.sampled_from([0.0, 0.1, 0.5, 1.0]))
def test_node_local_covers_the_shard_and_a_sample_never_less(
        members: list[str], found: list[Target], k: int, sample: float) -> None:
    for shard in fleet(members, k, sample):
        for target in found:
            if shard.cluster_wide(target):
                assert shard.node_local(target)
            assert shard.measures(target, "resolv-conf")
            assert shard.measures(target, "coredns") == shard.cluster_wide(target)
        if sample == 1.0:
            assert all(shard.node_local(t) for t in found)


def test_a_sample_is_about_its_share() -> None:
    shard = Shard("node-a", frozenset({f"node-{i}" for i in range(50)}), 1, 0.1)
    found = [Target("ns", f"svc-{i}") for i in range(5000)]
    foreign = [t for t in found if not shard.cluster_wide(t)]
    sampled = sum(shard.node_local(t) for t in foreign) / len(foreign)
    assert 0.08 < sampled < 0.12, sampled


def test_the_budget_is_shared_by_the_fleet() -> None:
    assert Shard("a", frozenset({"a", "b", "c", "d"}), 2).budget_share(100.0) == 25.0
    assert Shard("a", frozenset(), 2).budget_share(100.0) == 100.0  # alone: all of it
