"""The abTest stage in the state machine (``plan.experiment_stage``), driven through the
simulator: the candidate serves its users by the A/B route, sized for their share, until
the verdict in ``status.experiment`` (which the handler's look writes; here the test
writes it, as ``test_machine_analysis`` writes measurements) ends it: promote, report,
roll back, keep the stable; and at the deadline without a look."""

from __future__ import annotations

from typing import Any

from cases.api_cases import AB_TEST
from ferryman.api.rollout import HistoryOutcome, RolloutPhase, Verdict
from ferryman.api.rollout_experiment import ExperimentStatus, VariantFigures
from ferryman.plan import evidence
from ferryman.plan.route import Route
from unit.machine_sim import Sim, retarget
from unit.test_machine_analysis import ANALYSIS, measure
from unit.test_machine_strategies import ISTIO, spec_with

GATEWAY = {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}}


def ab_sim(routing: dict[str, Any] = GATEWAY, **ab: Any) -> Sim:
    spec = spec_with({"abTest": {**AB_TEST["abTest"], **ab}}, routing, analysis=ANALYSIS)
    sim = Sim(spec)
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    retarget(sim, "1.1.0")
    sim.reconcile()
    sim.run_until(lambda s: s.route is not None and s.route.users is not None)
    return sim


def verdict(sim: Sim, outcome: str) -> None:
    sim.status.experiment = ExperimentStatus(
        outcome=outcome,
        unit="users (one trial per user)",
        stable=VariantFigures(users=3000, successes=300, rate=0.1),
        candidate=VariantFigures(users=300, successes=60, rate=0.2),
        p_value=0.001,
        message=f"look says {outcome}",
        at=sim.now,
    )


def test_the_candidate_serves_its_users_sized_for_their_share() -> None:
    sim = ab_sim()
    route = sim.route
    assert route is not None and route.users is not None
    assert route.stable == "1.0.0" and route.candidate == "1.1.0"
    assert route.candidate_weight == 0 and route.mirror_percent == 0
    assert (
        route.users.header == "x-user-id" and route.users.regex == "^.*([0][0-9a-fA-F]|[1][0-9])$"
    )
    # 10.16% of users on 4 replicas: one candidate replica, the stable at full size
    assert sim.replicas == {"1.0.0": 4, "1.1.0": 1}
    assert sim.status.phase == RolloutPhase.PROGRESSING
    assert "serves 10.16% of users by x-user-id; no look yet" in (sim.status.message or "")
    for _ in range(5):  # undecided: it stays so
        verdict(sim, "NoSignificantDifferenceYet")
        sim.tick(10)
    assert sim.route is not None and sim.route.users is not None


def test_candidate_wins_then_promotion_keeps_its_users_until_the_switch() -> None:
    sim = ab_sim(ISTIO)
    verdict(sim, "CandidateWins")
    measure(sim, Verdict.SUCCESSFUL)
    sim.writes.clear()
    sim.run_until(lambda s: s.status.stable_version == "1.1.0")
    routes = [w[1] for w in sim.writes if w[0] == "route"]
    assert routes == [Route(stable="1.1.0")]  # the users' route held until the switch
    scale = [w[1] for w in sim.writes if w[0] == "scale"]
    assert scale[0] == ("1.1.0", 4)  # full size before the switch
    assert sim.status.history is not None and sim.status.history[-1].outcome == "Promoted"


def test_candidate_wins_with_report_only_keeps_the_stable() -> None:
    sim = ab_sim(onCandidateWins="report")
    verdict(sim, "CandidateWins")
    sim.tick()
    assert sim.status.phase == RolloutPhase.HEALTHY and sim.status.stable_version == "1.0.0"
    assert sim.route == Route(stable="1.0.0") and "1.1.0" not in sim.replicas
    entry = (sim.status.history or [])[-1]
    assert entry.outcome == HistoryOutcome.STOPPED and "candidate wins" in (entry.reason or "")
    assert entry.cause == "Experiment"
    ready = [c for c in sim.status.conditions or [] if c.type == "Ready"]
    assert [(c.status, c.reason) for c in ready] == [("True", "ExperimentEnded")]


def test_stable_wins_rolls_back() -> None:
    sim = ab_sim()
    verdict(sim, "StableWins")
    sim.tick()
    assert sim.status.phase == RolloutPhase.ROLLED_BACK
    assert sim.route == Route(stable="1.0.0")
    assert "1.1.0" in (sim.status.rolled_back_versions or [])
    assert (sim.status.history or [])[-1].cause == "Experiment"
    assert "stable wins: look says StableWins" in (sim.status.history or [])[-1].reason


def test_no_difference_keeps_the_stable_and_reports() -> None:
    sim = ab_sim()
    verdict(sim, "NoDifference")
    sim.tick()
    assert sim.status.phase == RolloutPhase.HEALTHY and sim.status.stable_version == "1.0.0"
    assert "no difference" in (sim.status.message or "")


def test_a_guardrail_failure_rolls_back_as_in_a_canary() -> None:
    sim = ab_sim()
    for _ in range(2):  # failureLimit 1
        measure(sim, Verdict.FAILED, 0.5)
    sim.tick()
    assert sim.status.phase == RolloutPhase.ROLLED_BACK and sim.route == Route(stable="1.0.0")


def test_a_verdict_from_before_the_test_began_does_not_count() -> None:
    sim = ab_sim()
    verdict(sim, "StableWins")
    assert sim.status.experiment is not None and sim.status.stage_since is not None
    sim.status.experiment.at = sim.status.stage_since - (sim.now - sim.now.replace(year=2000))
    sim.tick()
    assert sim.status.phase == RolloutPhase.PROGRESSING


def test_no_look_after_the_deadline_ends_with_no_difference() -> None:
    sim = ab_sim(duration="60s")  # analysis interval 10s: grace 30s
    sim.tick(60)
    assert sim.status.phase == RolloutPhase.PROGRESSING  # waits for the deadline's look
    sim.tick(31)
    assert sim.status.phase == RolloutPhase.HEALTHY and sim.route == Route(stable="1.0.0")
    assert "no verdict by the deadline 60s" in (sim.status.history or [])[-1].reason


def test_analysis_runs_once_the_users_are_on_the_candidate_not_while_its_pods_come_up() -> None:
    spec = spec_with({"abTest": AB_TEST["abTest"]}, GATEWAY, analysis=ANALYSIS)
    sim = Sim(spec)
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    retarget(sim, "1.1.0")
    sim.reconcile()  # the candidate's Deployment is created, not Ready yet
    assert sim.status.candidate_version == "1.1.0" and sim.status.stage_since is None
    assert evidence.analysis_target(sim.spec, sim.status) is None
    sim.run_until(lambda s: s.route is not None and s.route.users is not None)
    target = evidence.analysis_target(sim.spec, sim.status)
    assert target is not None and (target.version, target.stable) == ("1.1.0", "1.0.0")
