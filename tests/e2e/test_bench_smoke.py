"""The benchmarks keep working: each script's ``--smoke`` variant (bench/rollback.py: one
rollback, bounded to 120 s; bench/reaction.py: 3 Rollouts retargeted, 60 s; bench/idle.py:
3 Rollouts and a 3 s idle window, 60 s; bench/growth.py: points 1 and 2, each Rollout
through a one-step canary with analysis, then bench/scale.py's report, 90 s) runs against
this cluster and prints its figures.
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
    visible = r"breach visible in Prometheus -> route 100% stable \(watch\): p50 (-?\d+\.\d+)s"
    assert re.search(visible, out), out
    if cluster.local:  # the audit log of the local control plane: the route write's times
        audited = r"went bad -> route write completed \(audit stageTimestamp\): p50 \d+\.\d+s"
        assert re.search(audited, out), out


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


def assert_window_figures(out: str, audited: bool) -> None:
    """A scale or growth window printed its figures: lateness, RSS, CPU, requests. (A
    smoke rollout may take a single measurement: the analysis lateness, from consecutive
    ones, may have no values.)"""
    steps = spread_of("step lateness (route watch)", out)
    assert steps and int(steps.group(1)) >= 1, out
    label = re.escape("analysis lateness (measurement at - scheduled)")
    assert re.search(label + r": (n \d+  p50 |no values)", out), out
    assert re.search(r"operator RSS peak \d+ MiB, steady \d+ MiB", out), out
    assert re.search(r"CPU operator: \d+\.\d+ s in \d+\.\d+ s \(\d+\.\d+ s/min\)", out), out
    assert re.search(r"CPU control plane: \d+\.\d+ s in \d+\.\d+ s", out), out
    if not audited:  # FERRYMAN_TEST_KUBECONFIG: no audit log to count from
        assert "operator requests: no audit log for this cluster" in out, out
        return
    assert spread_of("step lateness (audit route write)", out), out
    assert re.search(r"operator requests per minute \(\d+ in the window\)", out), out
    assert re.search(r"patch +httproutes +\d+", out), out


# bench/scale.py's ModelVersions run a fictional image only kwok makes Ready.
@pytest.mark.kwok
@pytest.mark.prometheus
def test_scale_and_growth_bench_smoke_runs_and_prints_figures(cluster: Cluster) -> None:
    """bench/growth.py --smoke: points 1 and 2 (grown, not recreated), each Rollout with
    three ModelVersions and a one-step canary (setWeight 50, a 1 s pause, promotion) with
    Prometheus analysis every 1 s, one wave and a 1 s idle window per point; the table
    has a row per point; then bench/scale.py's report of the last load window (the two
    scripts share that code: one run keeps both working)."""
    out = run_smoke(cluster, "bench.growth")
    assert re.search(r"--- N=1, K=1: created in .*\n.*N=1 load: ", out), out
    assert re.search(r"--- N=2, K=1: created in ", out), out
    assert "N=2 idle: " in out, out
    assert_window_figures(out, cluster.local)
    rows = re.findall(r"^([12]) +1 +\d+\.\d+ +\d+ / \d+ ", out, re.MULTILINE)
    assert rows == ["1", "2"], out
    assert "scale benchmark at commit" in out, out
    scale = out[out.index("scale benchmark at commit") :]
    assert re.search(r"2 Rollouts \(6 ModelVersions\), 1 progressing at once", scale), out
    assert re.search(r"load: \d+s, 1 rollouts started, 1 finished; load average", scale), out
    steps = spread_of("step lateness (route watch)", scale)
    assert steps and steps.group(1) == "1", out  # the one pause of the one rollout
    assert_window_figures(scale, cluster.local)
