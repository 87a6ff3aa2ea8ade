"""check's verdicts on windows seen while following, against the Corefile's bounds."""

from __future__ import annotations

from exporter.core.corefile import Bounds
from exporter.core.diagnosis import follow_checks

DOMAIN = "web.ns.svc.cluster.local."
BOUNDS = {"node-local": Bounds(stale=35, negative=10)}


def closed(kind: str, name: str, seconds: float) -> dict[str, object]:
    return {"event": "closed", "kind": kind, "layer": "node-local", "name": name,
            "value": "10.0.0.9", "seconds": seconds}


def test_a_new_name_is_held_to_the_negative_bound() -> None:
    [verdict] = follow_checks([closed("propagation", f"web-3.{DOMAIN}", 20.0)], BOUNDS, DOMAIN)
    assert verdict.message.endswith("over its bound of 10 s")
    assert follow_checks([closed("propagation", f"web-3.{DOMAIN}", 10.5)], BOUNDS, DOMAIN) == []


def test_the_service_names_may_wait_for_a_cached_answer_to_expire() -> None:
    # A new IP at the Service name waits for the cached answer without it, up to 35 s.
    for name in (DOMAIN, f"_http._tcp.{DOMAIN}"):
        assert follow_checks([closed("propagation", name, 30.0)], BOUNDS, DOMAIN) == []
    [verdict] = follow_checks([closed("stale", DOMAIN, 37.0)], BOUNDS, DOMAIN)
    assert verdict.message.endswith("over its bound of 35 s")
