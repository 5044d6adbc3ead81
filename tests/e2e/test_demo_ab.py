"""``make demo-ab`` keeps working: ``hack/demo_ab.py --smoke`` (the demo's story with
1-second analysis rounds, 50% of users and a larger true effect; its docstring) runs
against this cluster with its own Prometheus, data planes and operator process, and its
output shows what the demo promises: the A/B statistics at each look until the candidate
wins and is promoted, the shadow's PSI each round until the drift stops it with the PSI
in the reason, and the teardown. Figures are read from the output; no timing is
asserted (the run's length is in the README)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.kube import Cluster, wait_for

ROOT = Path(__file__).resolve().parents[2]
NS = "ferryman-demo-ab"
PCT = r"[+-]?\d+\.\d+%"


# The demo's ModelVersions run a fictional image only kwok makes Ready.
@pytest.mark.kwok
@pytest.mark.prometheus
def test_demo_ab_promotes_the_ab_winner_and_stops_the_drifting_shadow(cluster: Cluster) -> None:
    proc = subprocess.run(
        [sys.executable, "hack/demo_ab.py", "--smoke"],
        cwd=ROOT,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=540,  # the script bounds itself: four waits of at most 120 s, and set-up
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr

    # Act A: each look printed with kubectl ferryman status' A/B rendering, the last a win.
    looks = re.findall(
        r"A/B look (\d+)\n +└─ A/B test: +(\w+); look \d+ .*\n"
        r" +variant +users +successes +rate\n"
        r" +stable +(\d+) +(\d+) +(\d+\.\d+)%\n"
        r" +candidate +(\d+) +(\d+) +(\d+\.\d+)%\n"
        rf" +difference {PCT}, 95% CI \[{PCT}, {PCT}\], p-value \S+, e-value \S+, "
        r"users needed \d+\n",
        out,
    )
    assert looks, out
    assert [int(look[0]) for look in looks] == sorted({int(look[0]) for look in looks}), out
    assert all(look[1] == "NoSignificantDifferenceYet" for look in looks[:-1]), out
    last = looks[-1]
    assert last[1] == "CandidateWins", out
    # expected counts (no random draws): the true rates, 10% and 15%, within a point
    assert abs(float(last[4]) - 10) < 1 and abs(float(last[7]) - 15) < 1, last
    assert "PROMOTED: 2.1.0 won the A/B test" in out, out

    # Act B: the PSI of each round, under the bound until the drift, then over it.
    rounds = re.findall(r"predictions +(Successful|Failed) +(\S+) +PSI <= 0\.2", out)
    verdicts = [v for v, _ in rounds]
    assert "Successful" in verdicts and verdicts[-1] == "Failed", out
    assert verdicts.index("Failed") > verdicts.index("Successful"), out
    assert float(rounds[-1][1]) > 0.2, rounds
    assert "!! 1.3.0's predictions drift" in out, out
    stopped = re.search(r"STOPPED: .*PSI (\d+\.\d+) .*: PSI > 0\.2", out)
    assert stopped and float(stopped.group(1)) > 0.2, out

    # The closing kubectl ferryman status of both, then the teardown.
    assert re.search(r"2\.1\.0 +Promoted +all steps completed", out), out
    assert re.search(r"1\.3\.0 +RolledBack \(Analysis\) +analysis: metric predictions", out), out
    assert "tearing down" in out and "demo-ab finished in" in out, out
    # the namespace goes (the finalizers of the stopped operator taken off), so the next
    # run does not wait on a namespace stuck Terminating
    wait_for(
        lambda: cluster.get_json("namespace", NS) is None,
        timeout=90,
        interval=0.5,
        message=f"namespace {NS} deleted",
    )
