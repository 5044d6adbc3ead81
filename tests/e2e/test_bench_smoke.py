"""The benchmarks keep working: ``bench/rollback.py --smoke`` (one rollback, bounded to
120 s) runs against this cluster and prints its figures. Only that it ran is asserted:
figures are for reading (docs/benchmarks.md), never a pass/fail on a timing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.kube import Cluster

pytestmark = pytest.mark.prometheus
ROOT = Path(__file__).resolve().parents[2]


def test_rollback_bench_smoke_runs_and_prints_figures(cluster: Cluster) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.rollback", "--smoke"],
        cwd=ROOT,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=240,  # the script bounds itself: 120 s of runs, then at most 60 s of cleanup
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "1 run(s) completed, 0 did not" in out, out
    figure = r"went bad -> route 100% stable \(watch\): p50 (\d+\.\d+)s .* max (\d+\.\d+)s"
    assert re.search(figure, out), out
    assert re.search(r"design bound \d+s", out) and "ratio to the design bound" in out, out
