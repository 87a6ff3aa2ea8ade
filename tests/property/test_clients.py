"""Client profiles against simulated clients (docs/metrics.md, "Client profiles").

A simulated layer serves the old state of a name until it switches, and the truth changes at
0. Two kinds of layer: one that hands out a fixed TTL (CoreDNS's kubernetes plugin, its answer
changing when its informer does) and a cache whose TTL counts down in whole seconds as
CoreDNS's cache does, until its entry expires. The agent's probes at random times go through
the real comparator; clients of a profile ask at random times and hold what they got as the
profile says. The comparator's window, turned into the profile's worst case, must:

- never fall short of a simulated client by more than the window's resolution plus the TTL's
  one-second granularity (a client that asked between the last probe in the old state and
  the switch may have been handed more);
- be reached, to within the resolution, by a client that asked at the moments the probes saw.
"""

from __future__ import annotations

import math

from hypothesis import event, given, settings
from hypothesis import strategies as st

from exporter.core.clients import BUILTIN, FOREVER, ClientProfile, Hold
from exporter.core.comparator import Comparator, Observation, Window
from exporter.core.records import Question, ServerRef, Target
from exporter.core.truth import Stamp, Update

T = Target("ns", "web")
Q = Question("web-0.web.ns.svc.cluster.local.", "A")
S = ServerRef("node-local", "10.0.0.10:53")
OLD = "10.244.0.5"

holds = st.one_of(
    st.builds(Hold, st.floats(0, 60)),
    st.builds(lambda f, c: Hold(None, min(f, c), max(f, c)), st.floats(0, 20), st.floats(0, 90)),
    st.just(Hold(None)))
profiles = st.one_of(st.sampled_from([p for p in BUILTIN.values()
                                      if p.positive.fixed != FOREVER]),
                     st.builds(ClientProfile, st.just("custom"), holds, holds))


class Layer:
    """The old state until `switch`, then the new one (the new pod's record, or none)."""

    def __init__(self, switch: float, ttl: int, counting: bool, stored: float) -> None:
        self.switch, self.ttl, self.counting, self.stored = switch, ttl, counting, stored

    def old_ttl(self, at: float) -> int:
        if not self.counting:
            return self.ttl
        # CoreDNS's cache: the original TTL less the whole seconds since it was stored.
        return max(0, self.ttl - int(at - self.stored))


def simulate(layer: Layer, gaps: list[float], negative: bool) -> tuple[Comparator, list[Window]]:
    """The comparator after probes at the gaps' times, and the windows they closed."""
    c = Comparator()
    c.set_servers([S])
    before = frozenset() if negative else frozenset({OLD})
    after = frozenset({OLD}) if negative else frozenset()
    c.update(Update(T, {Q: before}, Stamp(-100.0)))
    c.mark_synced()
    at = -sum(gaps[:2])  # a probe or two before the change
    windows = []
    changed = False
    for gap in gaps:
        if not changed and at >= 0:
            c.update(Update(T, {Q: after}, Stamp(0.0)))
            changed = True
        old = at < layer.switch
        served = before if old else after
        ttl = layer.old_ttl(at) if old else 5
        windows += c.observe(Observation(Q, S, at, at, served, ttl)).windows
        at += gap
    return c, [w for w in windows if w.reference == "watch"]


def client_end(profile: ClientProfile, layer: Layer, asked: float, negative: bool) -> float:
    """Until when a client that asked the layer at `asked` (before the switch) keeps the old
    state: its hold from then, or, holding nothing, the moment it asked."""
    hold = (profile.negative if negative else profile.positive).seconds(layer.old_ttl(asked))
    return asked + hold


@settings(max_examples=300, deadline=None)
@given(profile=profiles, counting=st.booleans(), negative=st.booleans(),
       ttl=st.integers(1, 60), switch=st.floats(0.05, 40),
       gaps=st.lists(st.floats(0.05, 3.0), min_size=60, max_size=120),
       clients=st.lists(st.floats(0, 1), min_size=1, max_size=30))
def test_the_profile_bounds_every_simulated_client(
        profile: ClientProfile, counting: bool, negative: bool, ttl: int, switch: float,
        gaps: list[float], clients: list[float]) -> None:
    # A counting cache switches when its entry expires: it was stored `ttl` before then.
    layer = Layer(switch, ttl, counting, switch - ttl)
    _, windows = simulate(layer, gaps, negative)
    event("no window: the probes ended first" if not windows else "a window")
    if not windows:
        return
    (window,) = windows
    model = profile.seconds(window)
    event("the client's hold decides" if model > window.seconds else "the layer decides")
    assert model >= window.seconds
    # Clients that asked while the layer served the old state, from the change on.
    asked = [f * layer.switch for f in clients]
    for t in asked:
        end = max(client_end(profile, layer, t, negative), t)
        assert end <= model + window.resolution + 1.0, (t, end, model, window)
    # The worst case is no mere bound: a client that asked when the last old answer came (the
    # probe saw it), or just before the switch, gets there.
    last_old = window.last_old
    reached = max(max(client_end(profile, layer, max(0.0, last_old), negative), last_old),
                  math.nextafter(layer.switch, 0))
    assert reached >= model - window.resolution - 1e-9, (reached, model, window)
