"""review8's repros: faults found reviewing the int8 branch (artifact stores, companion
and shared routes, the abTest strategy, autoscaling), each a test that failed before its
fix (or is marked xfail strict while unfixed)."""

from __future__ import annotations

from cases.api_cases import AB_TEST
from ferryman.api.rollout import PauseReason, RolloutPhase, Verdict
from unit.machine_sim import Sim, retarget
from unit.test_abtest_machine import GATEWAY, ab_sim
from unit.test_machine_analysis import ANALYSIS, measure
from unit.test_machine_strategies import spec_with


def test_r1_a_users_pause_keeps_the_ab_tests_users_on_the_candidate() -> None:
    """docs/rollouts.md "Pause and resume": a pause holds the rollout where it is and the
    route keeps what it carries. An abTest's route lost its users' rule under a pause
    (every user back on stable, the experiment still counting)."""
    sim = ab_sim()
    users = sim.route.users if sim.route else None
    assert users is not None
    sim.reconcile("pause")
    for _ in range(3):
        sim.tick(5)
        assert sim.status.phase == RolloutPhase.PAUSED
        assert sim.route is not None and sim.route.users == users
        assert sim.route.candidate_weight == 0
    sim.unready["1.1.0"] = 1  # held only while Ready: unready pods lose the users
    sim.tick()
    sim.tick()
    assert sim.route is not None and sim.route.users is None
    sim.unready.clear()
    sim.tick()
    sim.tick()
    assert sim.route is not None and sim.route.users == users
    sim.reconcile("resume")
    sim.tick()
    assert sim.route is not None and sim.route.users == users


def test_r2_an_analysis_hold_keeps_the_ab_tests_users_on_the_candidate() -> None:
    """docs/rollouts.md: inconclusive rounds pause the Rollout "keeping traffic where it
    is". An abTest's users went back to stable under that hold."""
    sim = ab_sim()
    users = sim.route.users if sim.route else None
    measure(sim, Verdict.INCONCLUSIVE)
    measure(sim, Verdict.INCONCLUSIVE)
    sim.tick()
    assert sim.status.pause is not None and sim.status.pause.reason == PauseReason.INCONCLUSIVE
    assert sim.route is not None and sim.route.users == users


def test_r3_a_paused_canary_edited_to_an_ab_test_has_no_live_weight() -> None:
    """A paused canary at 50% whose strategy becomes an abTest: the abTest stage carries
    no per-request weight (as a shadow or preview stage under a pause, docs/rollouts.md);
    half of every request stayed on the candidate, whoever the user."""
    spec = spec_with({"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}, GATEWAY)
    sim = Sim(spec)
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    retarget(sim, "1.1.0")
    sim.run_until(lambda s: s.route is not None and s.route.candidate_weight == 50)
    sim.reconcile("pause")
    data = sim.spec.model_dump(by_alias=True, exclude_none=True)
    data["strategy"], data["analysis"] = AB_TEST, ANALYSIS
    sim.spec = type(sim.spec).model_validate(data)
    sim.tick()
    assert sim.status.phase == RolloutPhase.PAUSED
    assert sim.route is not None and sim.route.candidate_weight == 0
    assert sim.status.weights is not None and sim.status.weights.candidate == 0
