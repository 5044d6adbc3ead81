"""The abTest strategy end to end (issue 16 §1, §3): the real operator writes the A/B
route, the simulated data plane's users (``harness.abusers``) are routed by it with RE2
and convert at each version's true rate, the real Prometheus scrapes their counters, and
the verdict read every analysis interval decides. A candidate that converts better wins
and is promoted, with the figures in status."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
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


def clustered_objective() -> dict[str, Any]:
    """unit: requests with the delta method's sums, as harness.abclusters exports them."""

    def q(name: str) -> str:
        return f"sum(app_ab_{name}_total{{{SEL}}})"

    return {
        "unit": "requests",
        "trials": q("requests"),
        "successes": q("successes"),
        "deltaMethod": {
            "users": q("users"),
            "trialsSquared": q("requests_squared"),
            "successesSquared": q("successes_squared"),
            "trialsTimesSuccesses": q("requests_times_successes"),
        },
        "direction": "HigherIsBetter",
        "mde": 0.05,
    }


def test_clustered_requests_reach_a_verdict_with_the_delta_method(
    cluster: Cluster,
    namespace: str,
    dataplane: DataPlane,
    analysing_operator: OperatorProcess,
) -> None:
    """Users send 1 to 5 requests each, successes correlated within a user; the data
    plane exports the per-user sums as an application would (harness.abclusters), the
    objective counts requests with the delta method, and a candidate converting 20% of
    requests against 10% wins and is promoted, status saying requests are counted."""
    users = ABUsers(dataplane, users_per_s=120, clustered=True).start()
    try:
        strategy = ab_test(50)
        strategy["abTest"]["objective"] = clustered_objective()
        cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=namespace)
        cluster.apply(
            r.rollout("1.0.0", analysis=analysis(), strategy=strategy), namespace=namespace
        )
        stable_on(cluster, namespace, "1.0.0")
        users.rate.update({"1.0.0": 0.10, "1.1.0": 0.20})
        r.retarget(cluster, namespace, "1.1.0")
        wait_for(
            lambda: (
                (r.status(cluster, namespace).get("experiment") or {}).get("outcome")
                == "CandidateWins"
                or r.status(cluster, namespace).get("phase") in ("RolledBack", "Healthy", "Baking")
            ),
            timeout=120,
            message="a verdict",
        )
        stable_on(cluster, namespace, "1.1.0")
        status = r.status(cluster, namespace)
        e = status["experiment"]
        print(e)
        assert e["outcome"] == "CandidateWins", e
        assert e["unit"] == "requests clustered within users (delta method)"
        for variant, rate in (("stable", 0.10), ("candidate", 0.20)):
            v = e[variant]
            assert v["users"] >= 100 and v["trials"] > 2 * v["users"], e  # ~3 per user
            assert abs(v["rate"] - rate) < 0.04
            assert abs(v["rate"] - v["successes"] / v["trials"]) < 1e-9
        assert e["interval"][0] > 0 and e["pValue"] <= 0.05
        entry = status["history"][-1]
        assert entry["version"] == "1.1.0" and entry["outcome"] == "Promoted"
    finally:
        users.stop()


def test_a_pause_stops_the_tests_clock_across_an_operator_restart(
    cluster: Cluster,
    namespace: str,
    dataplane: DataPlane,
    users: ABUsers,
    analysing_operator: OperatorProcess,
) -> None:
    """A 20s test paused once it began, the operator SIGKILLed and restarted while
    paused, kept paused past the nominal deadline: looks go on but none says deadline;
    after resume the test keeps its start and ends with no difference only once it has
    run 20s, the time held (kept in status.experimentClock) added."""
    from e2e.test_pause_resume import at, ferryman

    duration = 20
    strategy = ab_test(50)
    strategy["abTest"]["duration"] = f"{duration}s"
    strategy["abTest"]["objective"]["mde"] = 0.01  # equal rates: nothing ruled out in time
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=namespace)
    cluster.apply(r.rollout("1.0.0", analysis=analysis(), strategy=strategy), namespace=namespace)
    stable_on(cluster, namespace, "1.0.0")
    users.rate.update({"1.0.0": 0.10, "1.1.0": 0.10})
    r.retarget(cluster, namespace, "1.1.0")
    wait_for(
        lambda: r.status(cluster, namespace).get("stageSince") is not None,
        timeout=60,
        message="the test began",
    )
    paused = ferryman(cluster, "pause", "fraud", "-n", namespace)
    assert paused.returncode == 0, paused.stderr
    st = r.status(cluster, namespace)
    since = at(st["stageSince"])
    pause_since = at(st["pause"]["since"])
    # the clock stopped in the pause's own reconcile
    assert at(st["experimentClock"]["heldSince"]) == pause_since, st.get("experimentClock")
    assert st["phase"] == "Paused" and pause_since < since + timedelta(seconds=duration)
    analysing_operator.restart()  # only status carries the clock over

    def look_past_deadline() -> bool:
        # The pause can come before the test's first look: no status.experiment yet.
        look = (r.status(cluster, namespace).get("experiment") or {}).get("at")
        return look is not None and at(look) > since + timedelta(seconds=duration + 4)

    wait_for(
        look_past_deadline, timeout=90, message="a look past the nominal deadline, while paused"
    )
    st = r.status(cluster, namespace)
    assert st["phase"] == "Paused", st
    assert st["experiment"]["outcome"] == "NoSignificantDifferenceYet", st["experiment"]
    held_at_least = at(st["experiment"]["at"]) - pause_since
    clock = st["experimentClock"]
    assert at(clock["stageSince"]) == since and at(clock["heldSince"]) == pause_since, clock
    resumed = ferryman(cluster, "resume", "fraud", "-n", namespace)
    assert resumed.returncode == 0, resumed.stderr
    st = r.status(cluster, namespace)
    why = (st.get("phase"), st.get("message"), (st.get("history") or [])[-1:])
    assert st.get("stageSince") and at(st["stageSince"]) == since, why  # the same test goes on
    wait_for(
        lambda: any(
            h["version"] == "1.1.0" for h in r.status(cluster, namespace).get("history") or []
        ),
        timeout=90,
        message="the test ended",
    )
    st = r.status(cluster, namespace)
    entry = st["history"][-1]
    assert (entry["outcome"], entry.get("cause")) == ("Stopped", "Experiment"), entry
    assert "no difference" in entry["reason"], entry
    assert st["experiment"]["outcome"] == "NoDifference"
    clock = st["experimentClock"]
    held = timedelta(seconds=clock["heldSeconds"])
    assert at(clock["stageSince"]) == since and clock.get("heldSince") is None
    assert held >= held_at_least, clock  # at least the pause until that look
    # it ended once it had run its duration, the held time not counted
    assert at(entry["at"]) >= since + timedelta(seconds=duration) + held, (entry, clock)
    print(f"held {held.total_seconds():.1f}s; ended {at(entry['at']) - since} after the start")
