"""Docs that are derived from code must match it."""

from __future__ import annotations

import re
from pathlib import Path

from exporter.core.comparator import RaceReason
from exporter.core.events import Kind, RestartReason
from exporter.settings import reference_table

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_reference_is_generated_from_settings() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    assert reference_table() in text, "run scripts/regen-docs"


def test_every_exported_metric_is_documented_with_a_query() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "exporter").rglob("*.py"))
    names = set(re.findall(r'"(dns_staleness_[a-z_]+)"', source))
    assert len(names) >= 20, "the metric names were not found in the sources"
    doc = (ROOT / "docs" / "metrics.md").read_text()
    for name in names:
        suffix = "_total" if re.search(rf'Counter(MetricFamily)?\(\s*"{name}"', source) else ""
        section = doc.split(f"### `{name}{suffix}`")
        assert len(section) == 2, f"{name}{suffix} has no section in docs/metrics.md"
        assert "```promql" in section[1].split("### ")[0], f"{name} has no example query"


def test_every_label_value_of_an_enum_is_documented() -> None:
    doc = (ROOT / "docs" / "metrics.md").read_text()
    for enum in (Kind, RestartReason, RaceReason):
        for member in enum:
            assert f"`{member.value}`" in doc, f"{enum.__name__}.{member.name} in docs/metrics.md"
