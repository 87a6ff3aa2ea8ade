"""The fleet benchmark's short run (`bench/fleet.py --quick`) on the rig.

It must finish and print what it promises: the load table of four fleets, the cost model at
100, 1,000 and 5,000 nodes, and a last line with the ratio of 6 agents to 3 per replica. The
ratio's tolerance is test_fleet.py's to assert on longer spans; here it must only be sane.
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


@pytest.mark.timeout(600)  # the run takes about 2 minutes
def test_quick_run_prints_the_loads_the_model_and_the_ratio(rig_bins: Rig) -> None:
    run = subprocess.run([sys.executable, "-m", "bench.fleet", "--quick"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    loads = re.findall(r"^\s+([36]) \| (k=2|off)\s+\|\s+([\d.]+) \|\s+([\d.]+) \|", out, re.M)
    assert [(n, s) for n, s, _, _ in loads] == [("3", "k=2"), ("6", "k=2"), ("3", "off"),
                                                ("6", "off")], out
    # nodes | sharding | watches: agent / fleet | list MB | cluster-wide qps: agent / fleet
    model = re.findall(r"^\s*([\d,]+) \| (off|k=3)\s+\| (\d) / [\d,]+\s+\|[^|]*\| "
                       r"[\d.]+ / ([\d,]+)", out, re.M)
    assert [(n, s, w) for n, s, w, _ in model] == [
        (n, s, w) for n in ("100", "1,000", "5,000") for s, w in (("off", "5"), ("k=3", "6"))]
    fleet = {(n, s): int(q.replace(",", "")) for n, s, _, q in model}
    # Unsharded, the fleet's load grows with the nodes; sharded, it stops growing.
    assert abs(fleet[("5,000", "off")] - 5 * fleet[("1,000", "off")]) <= 5  # rounding
    assert fleet[("5,000", "k=3")] == fleet[("1,000", "k=3")] < fleet[("1,000", "off")]
    last = out.strip().splitlines()[-1]
    ratios = [float(x) for x in re.findall(r"[\d.]+", last.split(":")[1])]
    assert last.startswith("ratio 6 agents / 3 agents, per-replica qps with sharding:"), last
    assert len(ratios) == 2 and all(0.75 < r < 1.25 for r in ratios), last
