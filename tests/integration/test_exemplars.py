"""Exemplars on the window histograms, stored and returned by the real Prometheus
(--enable-feature=exemplar-storage): a bucket leads to the record that landed in it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration.alerting import Prometheus
from tests.rig import Rig, free_port

pytestmark = pytest.mark.rig
ROOT = Path(__file__).resolve().parents[2]


def test_prometheus_returns_the_exemplar_of_a_closed_window(rig_bins: Rig,
                                                            tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    demo = subprocess.Popen(
        [sys.executable, "-m", "exporter", "demo", "--duration", "60",
         "--web.listen-address", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    prometheus = Prometheus(rig_bins.prometheus, tmp_path / "prometheus",
                            targets={"demo": f"127.0.0.1:{port}"}, rules={"groups": []},
                            alertmanager="127.0.0.1:9", job="dns-staleness", cluster="lab",
                            features=["exemplar-storage"])
    prometheus.start()
    start = time.time()
    try:
        found: list[dict[str, str | float]] = []
        deadline = time.monotonic() + 50
        while time.monotonic() < deadline and not found:
            time.sleep(1)
            data = prometheus.api("query_exemplars", {
                "query": 'dns_staleness_window_seconds_bucket{reference="watch"}',
                "start": start, "end": time.time()})
            found = [{**e["labels"], "value": float(e["value"]), "layer": s["seriesLabels"]
                      ["layer"]} for s in data for e in s["exemplars"]]
        assert found, "no exemplar stored"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/status") as resp:
            closed = json.load(resp)["closed_windows"]
    finally:
        prometheus.stop()
        demo.terminate()
        demo.wait(10)
    # The demo deletes web-2 (10.0.0.12): its stale windows, A and SRV, are the first
    # closed; a bucket keeps the exemplar of its last observation.
    named = [e for e in found if e["record"] in ("10.0.0.12",
                                                 "80 web-2.web.demo.svc.cluster.local.")]
    assert named, found
    exemplar = named[0]
    assert (exemplar["namespace"], exemplar["service"]) == ("demo", "web")
    assert exemplar["type"] in ("A", "SRV")
    assert str(exemplar["name"]).endswith("web.demo.svc.cluster.local.")
    # The same window as the agent's own list of closed windows, value and all.
    assert any(w["value"] == exemplar["record"] and w["name"] == exemplar["name"]
               and w["layer"] == exemplar["layer"] and w["kind"] == "stale"
               and abs(w["seconds"] - float(exemplar["value"])) < 0.001 for w in closed), \
        (exemplar, closed)
    print(f"\nexemplar from Prometheus: {exemplar}")
