"""The precision benchmark's short run (`bench/precision.py --quick`) on the rig.

It must finish, close windows in every scenario on every layer, have every window's end seen
by its checker (a window whose end the checker never saw would be a phantom), and count at the
servers, through CoreDNS's own metrics, exactly the queries the agent counted. Its precision
and cost figures are the benchmark's to report (docs/benchmarks.md), not asserted here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.rig import Rig

pytestmark = pytest.mark.rig

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(900)  # the run takes about 6 minutes
def test_quick_run_sees_every_window_and_counts_agree_at_the_servers(rig_bins: Rig) -> None:
    run = subprocess.run([sys.executable, "-m", "bench.precision", "--quick"], cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = re.findall(r"^(scale-down 1 of 3|10-pod rolling restart|scale-up from zero)\s+\|"
                      r"\s+(coredns|node-local)\s+\|\s+(\d+)\s+\|\s+(\d+)\s+\|", run.stdout, re.M)
    assert len(rows) == 6, run.stdout
    for scenario, layer, windows, unseen in rows:
        assert int(windows) > 0, (scenario, layer)
        assert int(unseen) == 0, (scenario, layer, run.stdout)
    counts = re.findall(r"^(coredns|node-local)\s+\|\s+([\d,]+)\s+\|\s+([\d,]+)\s+\|",
                        run.stdout, re.M)
    assert [layer for layer, _, _ in counts] == ["coredns", "node-local"], run.stdout
    for _, agent, server in counts:
        assert int(agent.replace(",", "")) > 0
        assert agent == server, run.stdout
    assert re.search(r"^precision: p99 error \d+ ms \(3 pods\)", run.stdout, re.M), run.stdout
