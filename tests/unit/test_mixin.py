"""The monitoring mixin, built by the real jsonnet: it renders alerts/rules.yaml exactly, its
_config reaches every knob, promtool accepts its rules, jsonnet-lint finds nothing, and its
dashboards are the repository's.
"""

from __future__ import annotations

import json
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from alerts import generate as rules
from scripts import gen_mixin
from tests.rig import Rig, rig_or_skip

ROOT = Path(__file__).resolve().parents[2]
MIXIN = ROOT / "mixin"


@cache
def rig() -> Rig:
    return rig_or_skip()


def build(expression: str) -> Any:
    """`jsonnet -e` with mixin/ on the import path, as JSON."""
    out = subprocess.run([str(rig().jsonnet), "-J", str(MIXIN), "-e", expression],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def groups(config: dict[str, str] | None = None) -> list[Any]:
    """The mixin's recording then alerting groups, as alerts/rules.yaml orders them."""
    override = f" + {{ _config+:: {json.dumps(config)} }}" if config else ""
    mixin = f"(import 'mixin.libsonnet'){override}"
    built = build(f"local m = {mixin}; m.prometheusRules.groups + m.prometheusAlerts.groups")
    assert isinstance(built, list)
    return built


def test_generated_files_match_their_sources() -> None:
    assert gen_mixin.main(["--check"]) == 0


def test_defaults_render_the_committed_rule_file() -> None:
    assert {"groups": groups()} == yaml.safe_load(rules.RULES.read_text())


def test_config_reaches_every_knob() -> None:
    changed = {"job": "dse", "runbook_url_base": "https://runbooks.example/dse",
               "stale_for": "2s", "stale_slack_seconds": "7", "layer_error_window": "10m"}
    assert set(changed) < set(rules.KNOBS)
    assert {"groups": groups(changed)} == rules.render(changed)
    assert set(build("(import 'mixin.libsonnet')._config")) == set(rules.KNOBS)


def test_promtool_accepts_the_built_rules(tmp_path: Path) -> None:
    path = tmp_path / "mixin-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups()}))
    out = subprocess.run([str(rig().promtool), "check", "rules", str(path)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules.RECORDING) + len(rules.ALERTS)} rules found" in out.stdout


def test_jsonnet_lint_finds_nothing() -> None:
    for path in sorted(MIXIN.glob("*.libsonnet")):
        out = subprocess.run([str(rig().jsonnet_lint), "-J", str(MIXIN), str(path)],
                             capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, (path.name, out.stdout + out.stderr)


def test_dashboards_are_the_repositorys() -> None:
    built = build("(import 'mixin.libsonnet').grafanaDashboards")
    sources = {p.name: json.loads(p.read_text()) for p in (ROOT / "dashboards").glob("*.json")}
    assert built == sources
