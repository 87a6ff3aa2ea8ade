"""The expiry model: what CoreDNS cache answers say about when an entry expires."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from exporter.core.expiry import MARGIN, PRECISION, Expiry

OLD, NEW = frozenset({"10.1.1.1"}), frozenset({"10.1.1.2"})


def countdown(stored: float, ttl: int, t: float) -> int:
    """The TTL CoreDNS's cache answers with at `t` for an entry stored at `stored`."""
    return ttl - math.floor(t - stored)


@settings(max_examples=500, deadline=None)
@given(st.floats(-29.0, 0.0), st.sampled_from([5, 10, 30]), st.floats(0.0, 0.004),
       st.integers(0, 30))
def test_the_expiry_stays_inside_the_interval_and_is_bracketed(
        stored: float, ttl: int, rtt: float, full: int) -> None:
    """Whatever the store time and round trip, the true expiry never leaves (lo, hi], and
    the probes the model asks for end with one just before it and one just after."""
    expires = stored + ttl
    assume(expires > 0)
    model = Expiry()
    now, sent_at, predicted = 0.0, list[float](), list[float]()
    while now + rtt / 2 < expires:  # the cache's clock: it serves the entry until then
        sent_at.append(now)
        model.observe(now, now + rtt, OLD, countdown(stored, ttl, now + rtt / 2), full)
        # Exact float ties aside, the interval always holds the expiry.
        assert model.lo < expires + 1e-9 and expires <= model.hi + 1e-9
        if model.predictable:
            predicted.append(now)
        now = model.next_probe(now + rtt, 0.1, 1.0)
        assert now > sent_at[-1]
    # Until a cache shows (a TTL below the highest seen, or a countdown): the back-off.
    assert len(sent_at) - len(predicted) <= 5
    if predicted:
        assert now - expires <= PRECISION + MARGIN + rtt
        assert expires - sent_at[-1] <= PRECISION + 2 * MARGIN + rtt
        # A split needs a probe a whole second before it: known only a few seconds ahead,
        # the entry's last second may be stepped up to rather than bisected.
        stepped = predicted[0] >= expires - 3
        assert len(predicted) <= (8 + math.ceil(1 / PRECISION) if stepped else 9)
    else:
        assert now - expires <= 1.0


def test_a_refetch_right_after_the_expiry_is_known_to_the_round_trip() -> None:
    model = Expiry()
    now = 0.0
    while now < 2.5:
        model.observe(now, now + 0.001, OLD, countdown(-27.5, 30, now), 30)
        now = model.next_probe(now + 0.001, 0.1, 1.0)
    assert model.predictable and 2.5 - PRECISION <= model.lo < 2.5 <= model.hi
    # At its expiry node-local fetched the old answer again from a cache upstream, which
    # had 4 s left: this entry was stored during our own query.
    model.observe(now, now + 0.002, OLD, 4, 30)
    assert model.aged and model.hi - model.lo <= PRECISION + MARGIN + 0.002
    assert model.lo < now + 4 <= model.hi


def test_ttl_zero_and_no_ttl_give_no_prediction() -> None:
    model = Expiry()
    model.observe(0.0, 0.001, OLD, 12, 30)
    assert model.predictable
    model.observe(1.0, 1.001, OLD, 0, 30)
    assert not model.predictable
    assert model.next_probe(1.001, 0.1, 1.0) == 1.001 + 0.1
    model.observe(2.0, 2.001, NEW, None, 30)
    assert model.next_probe(2.001, 0.1, 1.0) == 2.001 + 0.2


def test_a_layer_whose_ttl_never_counts_down_is_backed_off() -> None:
    model = Expiry()
    now, gaps = 0.0, []
    for _ in range(8):
        model.observe(now, now, OLD, 30, 30)
        after = model.next_probe(now, 0.1, 1.0)
        gaps.append(round(after - now, 3))
        now = after
    assert gaps == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0]


def test_a_bisection_probe_that_waited_is_placed_again_not_sent() -> None:
    model = Expiry()
    model.observe(0.0, 0.001, OLD, 7, 30)  # expires in (6.0, 7.001]
    at = model.next_probe(0.001, 0.1, 1.0)
    assert not model.missed(at)
    late = at + 0.3  # the split is now in the top quarter of the interval: worth little
    assert model.missed(late)
    again = model.next_probe(late, 0.1, 1.0)
    assert late < again and not model.missed(again)


def test_how_much_the_next_probe_matters() -> None:
    """The steps and the probe past the expiry are the window's error; missed, the last
    bisection a whole second ahead leaves a second of steps to pay."""
    model = Expiry()
    model.observe(0.25, 0.252, OLD, 3, full=30)  # expires in (2.25, 3.252]
    assert model.urgency(0.252) == 2  # two whole seconds ahead: it can wait
    assert model.next_probe(0.252, 0.1, 1.0) == pytest.approx((2.25 + 3.252) / 2 - 2)
    assert model.urgency(1.5) == 1  # one second ahead: the last chance to halve it
    assert model.urgency(2.1) == 1  # just before `lo`: the probe that bounds the resolution
    model.observe(2.24, 2.241, OLD, 1, full=30)
    assert model.urgency(2.3) == 0  # stepping up to it
    assert Expiry().urgency(0.0) == 2  # nothing to predict from
