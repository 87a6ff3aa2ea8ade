"""The Grafana dashboards: committed JSON equals the generator's, and the conventions hold."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from dashboards.generate import (
    DASHBOARDS,
    OVERVIEW_UID,
    ROOT,
    SERVICE_UID,
    dump,
    panel_queries,
    render,
    variable_queries,
)

METRICS_DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
UIDS = {"dns-staleness-overview.json": OVERVIEW_UID, "dns-staleness-service.json": SERVICE_UID}
SELECTOR = re.compile(r"(dns_staleness_\w+|\{__name__=~\"[^\"]+\")\{?([^}]*)\}")


def committed(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / name).read_text())
    return data


def panels(name: str) -> list[dict[str, Any]]:
    return [p for p in committed(name)["panels"] if p["type"] != "row"]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_committed_json_is_what_the_generator_renders(name: str) -> None:
    assert (ROOT / name).read_text() == dump(render(DASHBOARDS[name]())), (
        f"dashboards/{name} is out of date: run python -m dashboards.generate and commit it")


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_uid_is_stable_and_valid(name: str) -> None:
    uid = committed(name)["uid"]
    assert uid == UIDS[name]
    assert re.fullmatch(r"[a-z0-9-]{1,40}", uid)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_variables(name: str) -> None:
    variables = {v["name"]: v for v in committed(name)["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for var in ("cluster", "namespace", "node"):
        assert var in variables, f"{name} has no {var} variable"
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"]["uid"] == "${datasource}", var["name"]
        if var.get("includeAll"):
            assert var.get("allValue") == ".*", f"{var['name']}: All must also match no label"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_panel_has_unit_description_and_datasource(name: str) -> None:
    ids = [p["id"] for p in committed(name)["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels(name):
        title = panel["title"]
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{title}: no unit"
        assert len(panel.get("description", "")) >= 40, f"{title}: no description"
        assert panel["datasource"]["uid"] == "${datasource}", title
        assert panel.get("targets"), title
        assert panel.get("options") is not None, title
        assert {t["refId"] for t in panel["targets"]} == {
            chr(ord("A") + i) for i in range(len(panel["targets"]))}, title


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_rates_use_rate_interval(name: str) -> None:
    for title, expr in panel_queries(committed(name)):
        for func, window in re.findall(r"\b(rate|increase|irate)\([^\[]*\[([^\]]+)\]", expr):
            assert window == "$__rate_interval", f"{title}: {func}(...[{window}])"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_selector_filters_cluster_and_node(name: str) -> None:
    for title, expr in panel_queries(committed(name)):
        selectors = SELECTOR.findall(expr)
        assert selectors, f"{title}: no dns_staleness selector in {expr}"
        for metric, matchers in selectors:
            assert 'cluster=~"$cluster"' in matchers, f"{title}: {metric} ignores $cluster"
            assert 'node=~"$node"' in matchers, f"{title}: {metric} ignores $node"


def test_namespace_filters_the_per_service_series() -> None:
    for name in DASHBOARDS:
        for title, expr in panel_queries(committed(name)):
            for metric in ("stale_records", "stale_record_age_seconds", "missing_records",
                           "misconfigurations"):
                for matchers in re.findall(rf"dns_staleness_{metric}\{{([^}}]*)\}}", expr):
                    assert "$namespace" in matchers, f"{title}: {metric} ignores $namespace"


def test_queries_use_only_documented_metrics() -> None:
    documented = set(re.findall(r"^### `(dns_staleness_\w+)`", METRICS_DOC.read_text(), re.M))
    seen = set()
    for name in DASHBOARDS:
        data = committed(name)
        texts = [expr for _, expr in panel_queries(data)] + list(variable_queries(data).values())
        for text in texts:
            names = set(re.findall(r"\bdns_staleness_\w+", text))
            names |= {f"dns_staleness_{alt}" for group in re.findall(
                r'"dns_staleness_\(([^)]*)\)', text) for alt in group.split("|")}
            for metric in names - {"dns_staleness_"}:
                base = re.sub(r"_(bucket|count|sum)$", "", metric)
                assert base in documented, f"{name}: {metric} is not in docs/metrics.md"
                seen.add(base)
    # The overview covers what the issue lists: windows, open records, TTL, probes, watch,
    # budget and targets.
    for required in ("window_seconds", "propagation_seconds", "stale_records",
                     "stale_record_age_seconds", "missing_records", "record_ttl_seconds",
                     "probes_total", "probe_duration_seconds", "watch_delay_seconds",
                     "probes_deferred_total", "targets", "misconfigurations"):
        assert f"dns_staleness_{required}" in seen, required


def test_overview_has_per_layer_heatmaps() -> None:
    heatmaps = [p for p in panels("dns-staleness-overview.json") if p["type"] == "heatmap"]
    assert {p["title"] for p in heatmaps} == {"Stale windows: $layer", "Propagation: $layer"}
    for panel in heatmaps:
        assert panel["repeat"] == "layer"
        assert panel["targets"][0]["format"] == "heatmap"


def test_every_panel_is_described_in_the_docs() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "dashboards.md").read_text()
    doc = " ".join(text.split())
    for name in DASHBOARDS:
        for panel in committed(name)["panels"]:
            assert panel["title"] in doc, f"docs/dashboards.md misses {panel['title']}"
