"""The status document (docs/status.schema.json) and its page, from the agent's state."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import jsonschema

from exporter.core.comparator import PROPAGATION, STALE, OpenWindow, Window
from exporter.core.records import Question, ServerRef, Target
from exporter.core.shard import Shard
from exporter.core.status import SCHEMA, ClosedLog, Inputs, document
from exporter.io.metrics import EXEMPLAR_MAX, exemplar_of
from exporter.io.statuspage import render

ROOT = Path(__file__).resolve().parents[2]
STATUS_SCHEMA = json.loads((ROOT / "docs" / "status.schema.json").read_text())
NL = ServerRef("node-local", "169.254.20.10:53")
CD = ServerRef("coredns", "10.244.0.5:53")
T = Target("shop", "web")


def opened(age: float, value: str, server: ServerRef = NL, kind: str = STALE,
           attributed: bool = True) -> OpenWindow:
    return OpenWindow(kind, T, Question("web.shop.svc.cluster.local.", "A"), server, value,
                      age, attributed)


def closed(seconds: float, value: str, reference: str = "watch") -> Window:
    return Window(PROPAGATION, T, Question("web.shop.svc.cluster.local.", "A"), CD, value,
                  reference, seconds, 0.05)


def inputs(**over: object) -> Inputs:
    log = ClosedLog(3)
    for i in range(5):
        log.add([closed(i, f"10.0.0.{i}"), closed(i + 0.5, f"10.0.0.{i}", "trigger")],
                1.8e9 + i)
    base: dict[str, object] = dict(
        wall=1.8e9, node="node-a", synced=True,
        open_windows=[opened(3.0, "10.0.0.1"), opened(40.0, "10.0.0.2", CD),
                      opened(12.0, "10.0.0.3", attributed=False)],
        closed=log.newest(), ttl={"node-local": 30, "coredns": 5}, servers=[NL, CD],
        layer_up={NL: True}, sweep_period=31.5, budget_qps=20.0, budget_burst=4,
        budget_used=7, probes_deferred=2, monitored=[T, Target("a", "b")], monitored_total=2,
        dropped=[Target("z", "over")], dropped_now=1, dropped_total=3, limit=2)
    base.update(over)
    return Inputs(**base)  # type: ignore[arg-type]


def test_the_document_is_valid_bounded_and_ordered() -> None:
    doc = document(inputs(), "0.1.0")
    jsonschema.validate(doc, STATUS_SCHEMA)
    assert doc["schema"] == SCHEMA == STATUS_SCHEMA["$id"]
    assert doc["generated_at"] == "2027-01-15T08:00:00.000+00:00"
    assert doc["open_windows_total"] == 3
    # The oldest first, cut to the limit.
    assert [(w["value"], w["age_seconds"], w["past_bound"]) for w in doc["open_windows"]] == [
        ("10.0.0.2", 40.0, True), ("10.0.0.3", 12.0, False)]
    assert doc["open_windows"][1]["caused_by_truth"] is False
    # The newest first, one per window (the trigger reference is the same window), kept to
    # the log's own length and cut to the limit.
    assert [w["value"] for w in doc["closed_windows"]] == ["10.0.0.4", "10.0.0.3"]
    assert doc["closed_windows"][0]["closed_at"] == "2027-01-15T08:00:04.000+00:00"
    assert doc["layers"] == [
        {"layer": "coredns", "server": "10.244.0.5:53", "up": None, "ttl": 5},
        {"layer": "node-local", "server": "169.254.20.10:53", "up": True, "ttl": 30}]
    assert doc["targets"] == {
        "monitored_total": 2, "monitored": [{"namespace": "a", "service": "b"},
                                            {"namespace": "shop", "service": "web"}],
        "dropped_total": 3, "dropped_now": 1,
        "dropped": [{"namespace": "z", "service": "over"}]}
    assert doc["budget"] == {"qps": 20.0, "burst": 4, "used_last_second": 7,
                             "deferred_total": 2}
    assert doc["shard"] is None


def test_a_sharded_agent_says_which_targets_it_measures() -> None:
    shard = Shard("node-a", 2, 1)
    found = [Target("shop", f"svc-{i}") for i in range(30)]
    for target in found:
        shard.add(target)
    shard.set_members(["node-a", "node-b", "node-c", "node-d"])
    doc = document(inputs(shard=shard, limit=5), "0.1.0")
    jsonschema.validate(doc, STATUS_SCHEMA)
    owned = sorted(t for t in found if shard.owns(t))
    assert doc["shard"] == {
        "members_total": 4, "members": ["node-a", "node-b", "node-c", "node-d"], "owners": 2,
        "known": True, "owned_total": len(owned),
        "owned": [{"namespace": "shop", "service": t.service} for t in owned[:5]],
        "node_local_total": len(owned) + sum(
            1 for t in found if shard.measures(t, "node-local") and not shard.owns(t))}
    assert 5 < len(owned) < 25  # about half of them, with 2 owners of 4


def test_a_layer_without_a_ttl_has_no_bound_to_be_past() -> None:
    doc = document(inputs(ttl={}), "0.1.0")
    jsonschema.validate(doc, STATUS_SCHEMA)
    assert not any(w["past_bound"] for w in doc["open_windows"])
    assert all(w["ttl"] is None for w in doc["open_windows"])


class Rows(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr" and dict(attrs).get("data-kind"):
            self.rows.append(dict(attrs))


def test_the_page_lists_what_the_document_says_and_escapes_it() -> None:
    odd = opened(50.0, '<script>alert("x")</script>')
    doc = document(inputs(open_windows=[odd, opened(1.0, "10.0.0.9")], limit=10), "0.1.0")
    page = render(doc)
    assert "<script>" not in page
    parser = Rows()
    parser.feed(page)
    open_rows = [r for r in parser.rows if "open" in (r["class"] or "")]
    assert [(r["data-value"], "past" in (r["class"] or "")) for r in open_rows] == [
        ('<script>alert("x")</script>', True), ("10.0.0.9", False)]
    assert len([r for r in parser.rows if r["class"] == "closed"]) == 3
    assert "Targets dropped by the cap: 1" in page and "31.5 s" in page


def test_exemplars_name_the_record_within_the_openmetrics_limit() -> None:
    short = exemplar_of(closed(1.0, "10.0.0.1"))
    assert short == {"namespace": "shop", "service": "web", "type": "A",
                     "record": "10.0.0.1", "name": "web.shop.svc.cluster.local."}
    long_name = "x" * 63
    window = Window(STALE, Target(long_name, long_name),
                    Question(f"_http._tcp.{long_name}.{long_name}.svc.cluster.local.", "SRV"),
                    CD, f"8080 {long_name}.{long_name}.svc.cluster.local.", "watch", 3.0, 0.1)
    labels = exemplar_of(window)
    assert sum(len(k) + len(v) for k, v in labels.items()) <= EXEMPLAR_MAX
    assert labels["namespace"] == labels["service"] == long_name[:len(labels["record"])]
    assert labels["record"] == window.value[:len(labels["record"])]
    assert len(labels["record"]) >= 30
