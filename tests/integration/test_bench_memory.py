"""The memory benchmark's short run (`bench/memory.py --quick`) on the rig: 1,000 slices, this
tree alone. It must print the RSS table and the SIGTERM one; the agent must exit within 2 s
of a SIGTERM under load, as docs/operations.md promises, and no phase may read as nonsense."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.rig import Rig

pytestmark = pytest.mark.rig

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(600)
def test_quick_run_prints_sane_memory_and_a_prompt_exit(rig_bins: Rig) -> None:
    run = subprocess.run([sys.executable, "-m", "bench.memory", "--quick", "--baseline", "none"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    [row] = re.findall(r"^this tree\s+\|" + r"\s+([\d,.]+)\s+\|" * 6 + r"\s+([\d,.]+)$",
                       run.stdout, re.M)
    idle, peak, after, retained, per_k, relist_peak, relist_after = (
        float(v.replace(",", "")) for v in row)
    assert 20 < idle < after <= peak and 0 < retained == pytest.approx(after - idle, abs=0.11)
    assert per_k > 0 and idle < relist_after <= relist_peak, run.stdout
    [(unready, exited)] = re.findall(r"^this tree\s+\|\s+([\d,]+) ms\s+\|\s+([\d,]+) ms",
                                     run.stdout, re.M)
    assert int(unready.replace(",", "")) <= int(exited.replace(",", "")) < 2000, run.stdout
