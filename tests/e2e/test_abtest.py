"""The abTest strategy end to end (issue 16 §1, §3): the real operator writes the A/B
route, the simulated data plane's users (``harness.abusers``) are routed by it with RE2
and convert at each version's true rate, the real Prometheus scrapes their counters, and
the verdict read every analysis interval decides. A candidate that converts better wins
and is promoted, with the figures in status."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from e2e import rollouts as r
from e2e.test_analysis import ERRORS, SAMPLES, analysing_operator, settings_file, stable_on
from harness.abusers import ABUsers
from harness.dataplane import DataPlane
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess

pytestmark = [pytest.mark.usefixtures("ferryman_crds"), pytest.mark.prometheus]
__all__ = ["analysing_operator", "settings_file"]  # fixtures used here

SEL = 'namespace="{{namespace}}",version="{{version}}"'


@pytest.fixture
def users(dataplane: DataPlane) -> Iterator[ABUsers]:
    u = ABUsers(dataplane, users_per_s=120).start()
    yield u
    u.stop()


def ab_test(percent: int) -> dict[str, Any]:
    return {
        "abTest": {
            "users": {"percentOfUsers": {"percent": percent, "userId": {"header": "x-user-id"}}},
            "objective": {
                "successes": f"sum(app_converted_users_total{{{SEL}}})",
                "trials": f"sum(app_exposed_users_total{{{SEL}}})",
                "direction": "HigherIsBetter",
                "mde": 0.05,
            },
            "duration": "120s",
        }
    }


def analysis() -> dict[str, Any]:
    return {
        "provider": "default",
        "interval": "2s",
        "failureLimit": 1,
        "inconclusiveLimit": 5,
        "consecutiveErrorLimit": 3,
        "minSamples": {"query": SAMPLES, "min": 5},
        "metrics": [{"name": "error-rate", "query": ERRORS, "max": 0.05}],
    }


@pytest.mark.parametrize("routing", [r.GATEWAY, r.ISTIO], ids=["gatewayAPI", "istio"])
def test_a_candidate_that_converts_better_wins_and_is_promoted(
    cluster: Cluster,
    namespace: str,
    dataplane: DataPlane,
    users: ABUsers,
    analysing_operator: OperatorProcess,
    routing: dict[str, Any],
) -> None:
    """Over Gateway API (RegularExpression header match) and Istio (regex header match)."""
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=namespace)
    cluster.apply(
        r.rollout("1.0.0", analysis=analysis(), strategy=ab_test(50), routing=routing),
        namespace=namespace,
    )
    stable_on(cluster, namespace, "1.0.0")
    users.rate.update({"1.0.0": 0.10, "1.1.0": 0.20})
    r.retarget(cluster, namespace, "1.1.0")
    wait_for(
        lambda: (
            (r.status(cluster, namespace).get("experiment") or {}).get("outcome") == "CandidateWins"
            or r.status(cluster, namespace).get("phase") in ("RolledBack", "Healthy", "Baking")
        ),
        timeout=120,
        message="a verdict",
    )
    stable_on(cluster, namespace, "1.1.0")
    status = r.status(cluster, namespace)
    e = status["experiment"]
    assert e["outcome"] == "CandidateWins", e
    assert e["unit"] == "users (one trial per user)"
    assert e["stable"]["users"] >= 100 and e["candidate"]["users"] >= 100
    assert abs(e["stable"]["rate"] - 0.10) < 0.02 and abs(e["candidate"]["rate"] - 0.20) < 0.02
    assert e["interval"][0] > 0 and e["pValue"] <= 0.05
    # every user reached one version; about half of them the candidate while it ran
    assert users.experiments == [("fraud-1-1-0", "fraud-1-0-0")], users.experiments
    reached = users.reached
    share = reached.get("1.1.0", 0) / (sum(reached.values()) or 1)
    assert 0.3 < share < 0.7, reached
    entry = status["history"][-1]
    assert entry["version"] == "1.1.0" and entry["outcome"] == "Promoted"


def test_an_equal_candidate_ends_with_no_difference_and_a_worse_one_is_rolled_back(
    cluster: Cluster,
    namespace: str,
    dataplane: DataPlane,
    users: ABUsers,
    analysing_operator: OperatorProcess,
) -> None:
    """One Rollout, two experiments: 1.1.0 converts as the stable does (10%) and the test
    ends with no difference (the interval inside +-MDE), the stable kept; 1.2.0 converts
    4% and the stable wins: rolled back."""
    cluster.apply(r.versions("1.0.0", "1.1.0", "1.2.0"), namespace=namespace)
    cluster.apply(
        r.rollout("1.0.0", analysis=analysis(), strategy=ab_test(50)), namespace=namespace
    )
    stable_on(cluster, namespace, "1.0.0")
    users.rate.update({"1.0.0": 0.10, "1.1.0": 0.10, "1.2.0": 0.04})
    r.retarget(cluster, namespace, "1.1.0")
    wait_for(
        lambda: any(
            h["version"] == "1.1.0" for h in r.status(cluster, namespace).get("history") or []
        ),
        timeout=120,
        message="the equal candidate's test ended",
    )
    status = r.status(cluster, namespace)
    entry = status["history"][-1]
    assert (entry["outcome"], entry.get("cause")) == ("Stopped", "Experiment"), entry
    assert "no difference" in entry["reason"], entry
    assert status["phase"] == "Healthy" and status["stableVersion"] == "1.0.0"
    e = status["experiment"]
    assert e["outcome"] == "NoDifference" and -0.05 < e["interval"][0] < e["interval"][1] < 0.05
    ready = [c for c in status["conditions"] if c["type"] == "Ready"]
    assert [(c["status"], c["reason"]) for c in ready] == [("True", "ExperimentEnded")]

    r.retarget(cluster, namespace, "1.2.0")
    wait_for(
        lambda: r.status(cluster, namespace).get("phase") == "RolledBack",
        timeout=120,
        message="the worse candidate rolled back",
    )
    status = r.status(cluster, namespace)
    entry = status["history"][-1]
    assert (entry["version"], entry["outcome"], entry.get("cause")) == (
        "1.2.0",
        "RolledBack",
        "Experiment",
    )
    assert "stable wins" in entry["reason"]
    e = status["experiment"]
    assert e["outcome"] == "StableWins" and e["interval"][1] < 0
    assert e["candidate"]["users"] < 1000  # a fresh experiment's counts, not the last one's
    assert status["stableVersion"] == "1.0.0"
