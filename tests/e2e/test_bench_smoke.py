"""The benchmarks keep working: each script's ``--smoke`` variant (bench/rollback.py: one
rollback, bounded to 120 s; bench/reaction.py: 3 Rollouts retargeted, 60 s; bench/idle.py:
3 Rollouts and a 3 s idle window, 60 s) runs against this cluster and prints its figures.
Only that it ran and printed each figure is asserted: figures are for reading
(docs/benchmarks.md), never a pass/fail on a timing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.kube import Cluster

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.prometheus
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


def run_smoke(cluster: Cluster, module: str) -> str:
    """``python -m <module> --smoke`` against this cluster; its stdout (exit 0 asserted)."""
    proc = subprocess.run(
        [sys.executable, "-m", module, "--smoke"],
        cwd=ROOT,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=180,  # the scripts bound themselves: 60 s of waits, then the cleanup
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def spread_of(label: str, out: str) -> re.Match[str] | None:
    """The percentile line the harness prints for ``label`` (bench.harness.spread)."""
    number = r"(\d+\.\d+)s"
    pattern = (
        re.escape(label) + rf": n (\d+)  p50 {number}  p95 {number}  p99 {number}  max {number}"
    )
    return re.search(pattern, out)


# bench/reaction.py's ModelVersions run a fictional image only kwok makes Ready.
@pytest.mark.kwok
def test_reaction_bench_smoke_runs_and_prints_figures(cluster: Cluster) -> None:
    out = run_smoke(cluster, "bench.reaction")
    reaction = spread_of("target write -> candidate Deployment (watch)", out)
    assert reaction and reaction.group(1) == "3", out  # one figure per Rollout
    # Two step pauses per Rollout, each followed by new weights on the route watch.
    step = spread_of("pause elapsed -> route weights received (watch)", out)
    assert step and step.group(1) == "6", out
    assert re.search(r"operator RSS \d+ MiB", out), out
    assert re.search(r"CPU operator: \d+\.\d+ s", out), out
    assert re.search(r"CPU control plane: \d+\.\d+ s", out), out
    if not cluster.local:  # FERRYMAN_TEST_KUBECONFIG: no audit log to count from
        assert "operator requests: no audit log for this cluster" in out, out
        return
    # The same route writes, in the audit log (matched to the watch with 250 ms of slack,
    # so a very loaded machine may leave one unmatched: at least one, at most six).
    audited = spread_of("pause elapsed -> route write (audit stageTimestamp)", out)
    assert audited and 1 <= int(audited.group(1)) <= 6, out
    # The rollout's requests by verb and resource: at least the candidate Deployment's
    # creation and the route writes, and a total line.
    assert re.search(r"patch +deployments +\d+", out), out
    assert re.search(r"patch +httproutes +\d+", out), out
    assert re.search(r"all +\d+ +\d+\.\d+", out), out


# bench/reaction.py's ModelVersions run a fictional image only kwok makes Ready.
@pytest.mark.kwok
def test_idle_bench_smoke_runs_and_prints_figures(cluster: Cluster) -> None:
    out = run_smoke(cluster, "bench.idle")
    assert re.search(r"3 Rollouts created in \d+\.\d+s .* all Healthy \d+\.\d+s", out), out
    assert re.search(r"CPU operator: \d+\.\d+ s in \d+\.\d+ s \(\d+\.\d+ s/min\)", out), out
    assert re.search(r"operator RSS \d+ MiB", out), out
    if not cluster.local:  # FERRYMAN_TEST_KUBECONFIG: no audit log to count from
        assert "operator requests: no audit log for this cluster" in out, out
        return
    assert "operator requests in the idle window, per minute:" in out, out
    assert re.search(r"all +\d+ +\d+\.\d+", out), out
