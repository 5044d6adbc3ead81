"""Spec edits while a rollout runs, against the real API server and operator: a change of
the steps or of the strategy kind restarts the new plan and never skips its manual gate
(docs/rollouts.md, "Spec edits mid-rollout")."""

from __future__ import annotations

import json
from typing import Any

import pytest

from e2e import rollouts as r
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess

pytestmark = pytest.mark.usefixtures("ferryman_crds")

# Field case 21 (shared/field-cases/21-shortened-steps-skip-manual-gate).
STEPS = [{"setWeight": 10}, {"pause": {"duration": "2s"}}, {"setWeight": 50}, {"pause": {}}]


def edit(cluster: Cluster, ns: str, spec: dict[str, Any]) -> None:
    """What GitOps does: a merge patch of the Rollout's spec."""
    cluster.kubectl(
        "patch", "mro", "fraud", "-n", ns, "--type=merge", "-p", json.dumps({"spec": spec})
    )


def healthy_on(cluster: Cluster, ns: str, version: str) -> bool:
    st = r.status(cluster, ns)
    return st.get("phase") == "Healthy" and st.get("stableVersion") == version


def paused_at_manual_gate(cluster: Cluster, ns: str, stable: str, candidate: str) -> None:
    wait_for(lambda: healthy_on(cluster, ns, stable), timeout=60, message="stable")
    r.retarget(cluster, ns, candidate)
    wait_for(
        lambda: (
            r.status(cluster, ns).get("phase") == "Paused"
            and "promote" in r.status(cluster, ns).get("message", "")
        ),
        timeout=60,
        message="paused at the manual gate",
    )


def never_promoted(cluster: Cluster, ns: str, candidate: str, seconds: float) -> None:
    """Bounded watch: the candidate is not promoted in any version of the Rollout written
    during ``seconds`` (no user action is sent meanwhile)."""

    def check(obj: dict[str, Any]) -> bool:
        st = obj.get("status") or {}
        assert st.get("stableVersion") != candidate, st
        outcomes = [h["outcome"] for h in st.get("history", []) if h["version"] == candidate]
        assert "Promoted" not in outcomes, st
        return True

    r.holds(cluster, ns, seconds, rollout=check)


def event_posted(cluster: Cluster, ns: str, reason: str) -> bool:
    out = cluster.kubectl("get", "events", "-n", ns, f"--field-selector=reason={reason}").stdout
    return reason in out


def test_field_case_21_shortened_steps_wait_for_promote(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(r.versions("1.2.0", "1.3.0"), namespace=namespace)
    cluster.apply(
        r.rollout("1.2.0", strategy={"canary": {"steps": STEPS}}, progressDeadlineSeconds=120),
        namespace=namespace,
    )
    paused_at_manual_gate(cluster, namespace, "1.2.0", "1.3.0")
    st = r.status(cluster, namespace)
    assert st["currentStep"] == 3
    assert r.http_route(cluster, namespace) == {"fraud-1-2-0": 50, "fraud-1-3-0": 50}
    sampler = r.Sampler(cluster, namespace, replicas=2)
    # GitOps changes the steps to a slower plan that still ends in a manual gate.
    edit(cluster, namespace, {"strategy": {"canary": {"steps": [STEPS[0], {"pause": {}}]}}})
    # The new plan restarts: its first step lowers the weight, then its manual gate waits.
    wait_for(
        lambda: r.http_route(cluster, namespace) == {"fraud-1-2-0": 90, "fraud-1-3-0": 10},
        timeout=30,
        message="new first step: 10%",
    )
    never_promoted(cluster, namespace, "1.3.0", seconds=3)
    st = r.status(cluster, namespace)
    assert st["phase"] == "Paused" and st["currentStep"] == 1
    assert st["pause"]["reason"] == "Step" and "promote" in st["message"]
    wait_for(
        lambda: event_posted(cluster, namespace, "PlanChanged"),
        timeout=20,
        message="PlanChanged event",
    )
    r.act(cluster, namespace, "promote")
    wait_for(lambda: healthy_on(cluster, namespace, "1.3.0"), timeout=60, message="promoted")
    assert sampler.stop() == []


def test_canary_to_blue_green_mid_rollout_waits_for_promote(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=namespace)
    cluster.apply(r.rollout("1.0.0"), namespace=namespace)  # canary [50%, pause {}]
    paused_at_manual_gate(cluster, namespace, "1.0.0", "1.1.0")
    sampler = r.Sampler(cluster, namespace, replicas=2)
    # blueGreen without autoPromotionSeconds: a preview that waits for promote.
    edit(cluster, namespace, {"strategy": {"canary": None, "blueGreen": {}}})
    wait_for(
        lambda: (
            r.http_route(cluster, namespace) == {"fraud-1-0-0": 100, "fraud-1-1-0": 0}
            and cluster.get_json("service", "fraud-preview", namespace) is not None
        ),
        timeout=30,
        message="live weight withdrawn, preview up",
    )
    never_promoted(cluster, namespace, "1.1.0", seconds=3)
    st = r.status(cluster, namespace)
    assert st["phase"] == "Paused" and "waiting for `kubectl ferryman promote`" in st["message"]
    r.act(cluster, namespace, "promote")
    wait_for(lambda: healthy_on(cluster, namespace, "1.1.0"), timeout=60, message="promoted")
    assert r.http_route(cluster, namespace) == {"fraud-1-1-0": 100}
    assert sampler.stop() == []
