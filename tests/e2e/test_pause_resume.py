"""`kubectl ferryman pause` and `resume` against the real API server and operator: the
pause shows as Paused/Manual in status, conditions and `kubectl get`, holds the weights
past the pause step's own duration, and resume continues to promotion with the step's
clock restarted (checked on the timestamps the operator wrote). The ModelVersions'
roles and last outcomes follow."""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta
from typing import Any

import pytest

from e2e import rollouts as r
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess

pytestmark = pytest.mark.usefixtures("ferryman_crds")

PAUSE_STEP = 10  # seconds: long enough that `pause` lands before the step ends


def ferryman(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("ferryman", *args, check=False, timeout=60)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def mv_status(cluster: Cluster, ns: str, version: str) -> dict[str, Any]:
    obj = cluster.get_json("modelversion.ferryman.dev", "fraud-" + version.replace(".", "-"), ns)
    return dict((obj or {}).get("status") or {})


def pause_reason(st: dict[str, Any]) -> str | None:
    return (st.get("pause") or {}).get("reason")


def test_pause_holds_and_resume_continues(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    ns = namespace
    steps = [{"setWeight": 50}, {"pause": {"duration": f"{PAUSE_STEP}s"}}]
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=ns)
    cluster.apply(r.rollout("1.0.0", strategy={"canary": {"steps": steps}}), namespace=ns)
    wait_for(lambda: r.status(cluster, ns).get("phase") == "Healthy", timeout=60, message="stable")
    r.retarget(cluster, ns, "1.1.0")
    wait_for(
        lambda: pause_reason(r.status(cluster, ns)) == "Step",
        timeout=60,
        message="at the timed pause step",
    )

    paused = ferryman(cluster, "pause", "fraud", "-n", ns)
    assert paused.returncode == 0, paused.stderr
    assert "applied: pause — phase Paused" in paused.stdout
    st = r.status(cluster, ns)
    assert st["phase"] == "Paused" and st["pause"]["reason"] == "Manual"
    paused_since = at(st["pause"]["since"])
    cond = {c["type"]: c for c in st["conditions"]}["Paused"]
    assert (cond["status"], cond["reason"]) == ("True", "Manual")
    row = cluster.kubectl("get", "rollout.ferryman.dev", "fraud", "-n", ns).stdout
    assert "Paused" in row.splitlines()[1], row
    wide = cluster.kubectl("get", "rollout.ferryman.dev", "fraud", "-n", ns, "-o", "wide").stdout
    # Columns start where their header does (the MESSAGE column holds spaces).
    header, row = wide.splitlines()[:2]
    assert row[header.index(" PAUSE ") + 1 :].split()[0] == "Manual", wide
    assert r.http_route(cluster, ns) == {"fraud-1-0-0": 50, "fraud-1-1-0": 50}
    assert mv_status(cluster, ns, "1.1.0")["role"] == "candidate"

    again = ferryman(cluster, "pause", "fraud", "-n", ns)
    assert again.returncode == 1 and "already paused" in again.stderr

    # Held for the whole window (every state the API server shows), well past the pause
    # step's own duration.
    def held(o: Any) -> bool:
        st = o["status"]
        return (
            st["phase"] == "Paused"
            and pause_reason(st) == "Manual"
            and st["stableVersion"] == "1.0.0"
            and st["weights"]["candidate"] == 50
        )

    r.holds(
        cluster,
        ns,
        PAUSE_STEP + 5,
        rollout=held,
        httproute=lambda o: r.route_weights(o) == {"fraud-1-0-0": 50, "fraud-1-1-0": 50},
    )

    resumed = ferryman(cluster, "resume", "fraud", "-n", ns)
    assert resumed.returncode == 0, resumed.stderr
    assert "applied: resume" in resumed.stdout
    resume_at = at(r.status(cluster, ns)["lastAction"]["at"])
    wait_for(
        lambda: r.status(cluster, ns).get("stableVersion") == "1.1.0",
        timeout=60,
        message="promoted after resume",
    )
    st = r.status(cluster, ns)
    promoted = st["history"][-1]
    assert (promoted["version"], promoted["outcome"]) == ("1.1.0", "Promoted")
    # The pause step counted its duration afresh from the resume, none of it while paused.
    assert at(promoted["at"]) >= resume_at + timedelta(seconds=PAUSE_STEP)
    assert resume_at - paused_since >= timedelta(seconds=PAUSE_STEP)

    new, old = mv_status(cluster, ns, "1.1.0"), mv_status(cluster, ns, "1.0.0")
    assert new["role"] == "stable" and new["phase"] == "Serving"
    assert new["lastOutcome"]["outcome"] == "Promoted"
    assert new["lastOutcome"]["reason"] == promoted["reason"]
    wait_for(
        lambda: mv_status(cluster, ns, "1.0.0").get("phase") == "Retired",
        timeout=30,
        message="1.0.0 retired",
    )
    old = mv_status(cluster, ns, "1.0.0")
    assert old["role"] == "none" and "rollout" not in old and old["servedUntil"]
    assert old["lastOutcome"]["outcome"] == "Promoted"  # its first-version promotion
