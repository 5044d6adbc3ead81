"""``kubectl ferryman pause`` and ``resume`` in the state machine: a manual pause holds
the rollout at its step with pause reason Manual (weights, mirror and preview kept,
analysis still rolls back, no deadline), resume continues at the same step with the
step's clock restarted, promote on a manual pause advances a step."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import event, given, settings
from hypothesis import strategies as st

from ferryman.api.rollout import ActionResult, PauseReason, RolloutPhase, RolloutSpec, Verdict
from ferryman.plan.route import Route
from ferryman.routing import router_for
from unit.machine_sim import Sim, canary_spec, retarget
from unit.test_machine_analysis import ANALYSIS, measure
from unit.test_machine_properties import specs
from unit.test_machine_strategies import ISTIO, shadow, spec_with

STEPS = [{"setWeight": 25}, {"pause": {"duration": "60s"}}, {"setWeight": 50}, {"pause": {}}]


def rolling(spec: object) -> Sim:
    sim = Sim(spec)  # type: ignore[arg-type]
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    retarget(sim, "1.1.0")
    sim.reconcile()
    return sim


def verdict(sim: Sim) -> tuple[str, ActionResult]:
    last = sim.status.last_action
    assert last is not None
    return last.action, last.result


def test_pause_holds_a_timed_pause_step_and_resume_restarts_its_clock() -> None:
    sim = rolling(canary_spec(STEPS))
    sim.run_until(lambda s: s.status.pause is not None)
    assert sim.status.pause.reason == PauseReason.STEP  # type: ignore[union-attr]
    sim.tick(30)
    paused_at = sim.now
    sim.reconcile("pause")
    assert verdict(sim) == ("pause", ActionResult.APPLIED)
    pause = sim.status.pause
    assert pause is not None and pause.reason == PauseReason.MANUAL and pause.since == paused_at
    assert sim.status.phase == RolloutPhase.PAUSED
    cond = {c.type: c for c in sim.status.conditions or []}["Paused"]
    assert (cond.status, cond.reason) == ("True", "Manual")
    step, route = sim.status.current_step, sim.route
    for _ in range(10):  # far past the pause step and the progress deadline (120 s)
        sim.tick(100)
        assert sim.status.phase == RolloutPhase.PAUSED and sim.route == route
        assert sim.status.current_step == step
        assert sim.status.pause.reason == PauseReason.MANUAL  # type: ignore[union-attr]
    sim.reconcile("resume")
    resumed_at = sim.now
    assert verdict(sim) == ("resume", ActionResult.APPLIED)
    pause = sim.status.pause
    assert pause is not None and pause.reason == PauseReason.STEP and pause.since == resumed_at
    sim.tick(59)
    assert sim.status.current_step == step and sim.route == route  # counts 60 s afresh
    sim.tick(2)
    sim.tick()
    assert sim.route is not None and sim.route.candidate_weight == 50


def test_pause_while_progressing_holds_the_weight_and_resume_continues() -> None:
    sim = rolling(canary_spec(STEPS))
    assert sim.status.phase == RolloutPhase.PROGRESSING
    sim.reconcile("pause")
    assert sim.status.phase == RolloutPhase.PAUSED
    for _ in range(5):
        sim.tick(50)  # the candidate's pods turn Ready: no weight while paused
        assert sim.route == Route(stable="1.0.0", candidate="1.1.0", candidate_weight=0)
    sim.reconcile("resume")
    sim.tick()
    assert sim.status.phase == RolloutPhase.PAUSED  # on to the 60 s pause step
    assert sim.route == Route(stable="1.0.0", candidate="1.1.0", candidate_weight=25)


def test_promote_on_a_manual_pause_advances_one_step() -> None:
    sim = rolling(canary_spec(STEPS))
    sim.run_until(lambda s: s.status.pause is not None)
    sim.reconcile("pause")
    step = sim.status.current_step or 0
    sim.reconcile("promote")
    assert verdict(sim) == ("promote", ActionResult.APPLIED)
    sim.tick()
    assert sim.status.current_step is not None and sim.status.current_step > step
    assert sim.route is not None and sim.route.candidate_weight == 50
    assert sim.status.pause is None or sim.status.pause.reason != PauseReason.MANUAL


def test_analysis_failure_still_rolls_back_a_manually_paused_rollout() -> None:
    sim = rolling(canary_spec(STEPS, analysis=ANALYSIS))
    sim.tick()
    sim.reconcile("pause")
    for _ in range(2):
        measure(sim, Verdict.FAILED, 0.5)
        sim.tick()
    assert sim.status.phase == RolloutPhase.ROLLED_BACK
    assert sim.route == Route(stable="1.0.0")


def test_manual_shows_over_an_analysis_hold_which_returns_after_resume() -> None:
    sim = rolling(canary_spec(STEPS, analysis=ANALYSIS))
    sim.tick()
    sim.reconcile("pause")
    for _ in range(2):
        measure(sim, Verdict.INCONCLUSIVE)
        sim.tick()
    assert sim.status.pause.reason == PauseReason.MANUAL  # type: ignore[union-attr]
    # ... and the analysis trouble stays visible beside it (no measurement can roll back).
    assert "paused by user" in (sim.status.message or "")
    assert "inconclusive" in (sim.status.message or "").lower()
    sim.reconcile("resume")
    assert sim.status.pause.reason == PauseReason.INCONCLUSIVE  # type: ignore[union-attr]


def test_pause_twice_and_resume_without_a_manual_pause_are_rejected() -> None:
    sim = rolling(canary_spec(STEPS))
    sim.run_until(lambda s: s.status.pause is not None)
    sim.reconcile("resume")
    last = sim.status.last_action
    assert last is not None and last.result == ActionResult.REJECTED
    assert "Step" in last.message and "promote" in last.message
    sim.reconcile("pause")
    sim.reconcile("pause")
    last = sim.status.last_action
    assert last is not None and last.result == ActionResult.REJECTED
    assert "already paused" in last.message


def test_pause_keeps_a_shadows_mirror_and_resume_restarts_its_duration() -> None:
    sim = rolling(shadow("promote"))
    sim.tick()
    assert sim.route == Route(stable="1.0.0", candidate="1.1.0", mirror_percent=50)
    sim.tick(5)
    sim.reconcile("pause")
    for _ in range(5):
        sim.tick(10)
        assert sim.route == Route(stable="1.0.0", candidate="1.1.0", mirror_percent=50)
        assert sim.status.candidate_version == "1.1.0"
    sim.reconcile("resume")
    sim.tick(9)  # the 10 s shadow counts afresh from the resume
    assert sim.status.candidate_version == "1.1.0" and sim.route.mirror_percent == 50
    sim.run_until(lambda s: s.status.stable_version == "1.1.0")


def test_pause_keeps_a_blue_green_preview_past_auto_promotion() -> None:
    sim = rolling(
        spec_with({"blueGreen": {"autoPromotionSeconds": 30, "previewMirrorPercent": 20}}, ISTIO)
    )
    d = sim.tick()
    assert sim.status.phase == RolloutPhase.PAUSED and d.preview == "1.1.0"
    sim.reconcile("pause")
    for _ in range(4):
        d = sim.tick(20)
        assert d.preview == "1.1.0" and sim.status.stable_version == "1.0.0"
        assert sim.route == Route(stable="1.0.0", candidate="1.1.0", mirror_percent=20)
    sim.reconcile("resume")
    sim.tick(29)
    assert sim.status.stable_version == "1.0.0"
    sim.tick(2)
    assert sim.status.stable_version == "1.1.0"


def test_pause_holds_promotion_after_the_last_step() -> None:
    sim = rolling(canary_spec([{"setWeight": 50}]))
    sim.reconcile("pause")
    sim.tick()
    sim.reconcile("resume")
    # Its pods stayed (and turned Ready) while paused, so the step applies at the resume.
    assert sim.route is not None and sim.route.candidate_weight == 50  # last step done
    sim.reconcile("pause")
    for _ in range(5):
        sim.tick(timedelta(minutes=1).total_seconds())
        assert sim.status.stable_version == "1.0.0" and sim.route.candidate_weight == 50
    sim.reconcile("resume")
    sim.run_until(lambda s: s.status.stable_version == "1.1.0")


@settings(max_examples=150, deadline=None)
@given(
    spec=specs(),
    before=st.lists(st.integers(1, 20), max_size=6),
    during=st.lists(st.integers(1, 90), min_size=1, max_size=10),
    unready=st.integers(0, 3),
)
def test_a_manual_pause_holds_whatever_the_strategy_router_and_time(
    spec: RolloutSpec, before: list[int], during: list[int], unready: int
) -> None:
    """Any valid strategy x router: from the moment a pause is applied until resume,
    nothing moves on (step, committed weight, stable version), no deadline rolls back,
    the route never carries more than it did; after resume promote --full promotes."""
    sim = rolling(spec)
    for seconds in before:
        sim.tick(seconds)
    sim.reconcile("pause")
    last = sim.status.last_action
    assert last is not None
    if last.result != ActionResult.APPLIED:
        # Only where the rule refuses it: not rolling out any more (a shadow that
        # stopped, a promotion that already happened).
        assert sim.status.phase not in (RolloutPhase.PROGRESSING, RolloutPhase.PAUSED)
        event("pause refused: not rolling out")
        return
    event("paused")
    step, weight, stable = (
        sim.status.current_step,
        sim.status.canary_weight,
        sim.status.stable_version,
    )
    assert sim.route is not None and sim.status.weights is not None
    carried = (sim.route.candidate_weight, sim.route.mirror_percent)
    share = sim.status.weights.candidate  # with plain Services: the Ready-pod split
    asked = sim.replicas.get("1.1.0", 0)
    keeps_pods = not (router_for(spec).capabilities.weights_by_replicas and (weight or 0) > 0)
    for i, seconds in enumerate(during):
        if i == 1 and unready:
            sim.unready["1.1.0"] = unready  # pods come and go while paused
        sim.tick(seconds)
        st_ = sim.status
        assert st_.phase == RolloutPhase.PAUSED and st_.pause is not None
        assert st_.pause.reason == PauseReason.MANUAL
        assert (st_.current_step, st_.canary_weight, st_.stable_version) == (step, weight, stable)
        assert sim.route.candidate_weight <= carried[0] and sim.route.mirror_percent <= carried[1]
        assert st_.weights is not None and st_.weights.candidate <= share
        if keeps_pods:  # the pods a user may be looking at stay (module docstring)
            assert sim.replicas.get("1.1.0", 0) >= asked
    sim.unready.clear()
    sim.reconcile("resume")
    assert verdict(sim) == ("resume", ActionResult.APPLIED)
    sim.tick()
    if sim.status.phase in (RolloutPhase.PROGRESSING, RolloutPhase.PAUSED):
        sim.reconcile("promote-full")
    sim.run_until(lambda s: s.status.candidate_version is None, limit=300, seconds=5)
    assert sim.status.phase in (RolloutPhase.HEALTHY, RolloutPhase.BAKING)
