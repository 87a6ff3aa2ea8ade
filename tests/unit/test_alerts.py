"""The Prometheus rules: generated output in sync, promtool-clean, tested, and by convention."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.generate import (
    ALERTING_GROUP,
    ALERTS,
    KNOBS,
    RECORDING,
    RECORDING_GROUP,
    RULES,
    SEVERITIES,
    dump,
    knobs_table,
    placeholders,
    render,
    rule_templates,
)
from tests.rig import rig_or_skip

ROOT = Path(__file__).resolve().parents[2]
TESTS = sorted((ROOT / "alerts" / "tests").glob("*.yaml"))
RUNBOOKS = ROOT / "docs" / "runbooks.md"
METRICS_DOC = ROOT / "docs" / "metrics.md"


def promtool() -> Path:
    return rig_or_skip().promtool


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def unit_tests() -> list[dict[str, Any]]:
    return [test for path in TESTS for test in yaml.safe_load(path.read_text())["tests"]]


def github_anchor(heading: str) -> str:
    """GitHub's heading slug: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_rules_file_is_generated_from_the_table() -> None:
    assert RULES.read_text() == dump(render()), "regenerate with: python -m alerts.generate"


def test_promtool_check_rules_passes() -> None:
    result = subprocess.run([str(promtool()), "check", "rules", str(RULES)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RECORDING) + len(ALERTS)} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = subprocess.run([str(promtool()), "test", "rules", *map(str, TESTS)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(TESTS), result.stdout


def test_every_alert_fires_and_stays_quiet_in_a_promtool_case() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in unit_tests():
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {alert.name for alert in ALERTS}
    assert names - firing == set(), "alerts without a firing case"
    assert names - quiet == set(), "alerts without a not-firing case"


def test_every_recording_rule_has_a_promtool_case() -> None:
    tested = {case["expr"].strip() for test in unit_tests()
              for case in test.get("promql_expr_test", [])}
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    assert recorded - tested == set()


def test_groups_and_names_follow_the_mixin_conventions() -> None:
    data = yaml.safe_load(RULES.read_text())
    assert [g["name"] for g in data["groups"]] == [RECORDING_GROUP, ALERTING_GROUP]
    recording, alerting = (g["rules"] for g in data["groups"])
    for rule in recording:
        level, metric, operations = rule["record"].split(":")
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", level), rule["record"]
        assert metric.startswith("dns_staleness_") and not metric.endswith("_total"), metric
        assert re.fullmatch(r"[a-z0-9_]+", operations), rule["record"]
    for rule in alerting:
        assert re.fullmatch(r"DNSStaleness[A-Z][A-Za-z0-9]+", rule["alert"]), rule
        assert rule["labels"]["severity"] in SEVERITIES, rule
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}, rule
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule
    severities = {rule["labels"]["severity"] for rule in alerting}
    assert severities == set(SEVERITIES), "each severity should be in use"


def test_runbook_urls_point_at_existing_sections() -> None:
    anchors = {github_anchor(line[3:]) for line in RUNBOOKS.read_text().splitlines()
               if line.startswith("## ")}
    base = KNOBS["runbook_url_base"].default
    for rule in rules():
        if "alert" in rule:
            url = rule["annotations"]["runbook_url"]
            page, _, anchor = url.partition("#")
            assert page == base and page.endswith("docs/runbooks.md"), url
            assert anchor in anchors, f"docs/runbooks.md has no section for {rule['alert']}"


def test_every_knob_is_used_known_and_documented() -> None:
    used = set().union(*(placeholders(text) for text in rule_templates()))
    used |= {alert.for_knob for alert in ALERTS} | {"runbook_url_base"}
    assert used == set(KNOBS)
    assert knobs_table() in RUNBOOKS.read_text(), (
        "regenerate the knob table in docs/runbooks.md with alerts.generate.knobs_table()")


def test_thresholds_are_knobs_not_literals() -> None:
    """Numbers in expressions are knobs, except the p99 itself and boolean comparisons."""
    for text in [rec.expr for rec in RECORDING] + [alert.expr for alert in ALERTS]:
        bare = re.sub(r'@\{\w+\}|"[^"]*"|[a-z_:]*[a-z_]\d+\w*', "", text)
        assert set(re.findall(r"\b\d+(?:\.\d+)?\b", bare)) <= {"0", "1", "0.99"}, text


def test_rules_query_only_documented_metrics() -> None:
    documented = set(re.findall(r"^### `(dns_staleness_\w+)`", METRICS_DOC.read_text(), re.M))
    for rule in rules():
        for name in re.findall(r"(?<![:\w])dns_staleness_\w+(?![\w:])", rule["expr"]):
            base = re.sub(r"_(bucket|count|sum)$", "", name)
            assert base in documented, f"{name} in {rule.get('alert') or rule['record']}"


def test_knob_overrides_render_a_test_copy() -> None:
    copy = render({"stale_for": "2s", "layer_error_window": "30s"})
    alerting = {r["alert"]: r for r in copy["groups"][1]["rules"]}
    assert alerting["DNSStalenessRecordStaleBeyondTTL"]["for"] == "2s"
    assert "ratio_rate30s" in alerting["DNSStalenessLayerErrors"]["expr"]
    with pytest.raises(KeyError):
        render({"no_such_knob": "1"})
