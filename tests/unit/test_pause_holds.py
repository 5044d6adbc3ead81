"""What a manual pause holds, case by case (found by a review as a user would try it):
the pods it waited for stay, a spec edit's lower weight or traffic-free stage applies at
once, and with plain Services the Ready-pod split does not grow while paused. The rule is
``plan.manual.hold_stage``; the property test in test_pause_resume.py covers the rest."""

from __future__ import annotations

from ferryman.api.modelversion import Role
from ferryman.api.rollout import PauseReason, RolloutPhase
from ferryman.plan.roles import candidate_role
from unit.machine_sim import Sim, canary_spec, retarget
from unit.test_spec_edits import FIELD_CASE, edit, paused_at_the_manual_gate, with_strategy


def manually_paused_at_50() -> Sim:
    sim = paused_at_the_manual_gate(canary_spec(FIELD_CASE, replicas=2))
    sim.reconcile("pause")
    assert sim.status.pause is not None and sim.status.pause.reason == PauseReason.MANUAL
    return sim


def test_strategy_edit_to_blue_green_while_manually_paused_drops_live_weight() -> None:
    """docs/rollouts.md: a candidate moved onto a preview loses its live weight at once."""
    sim = manually_paused_at_50()
    edit(sim, with_strategy(sim.spec, {"blueGreen": {}}))
    for _ in range(5):
        sim.tick(1)
    assert candidate_role(sim.spec, sim.status) == Role.PREVIEW
    assert sim.route is not None and sim.route.candidate_weight == 0, sim.route


def test_lower_first_step_applies_at_once_while_manually_paused() -> None:
    """docs/rollouts.md: a setWeight of the new plan that is lower applies at once."""
    sim = manually_paused_at_50()
    edit(sim, with_strategy(sim.spec, {"canary": {"steps": [{"setWeight": 10}, {"pause": {}}]}}))
    for _ in range(5):
        sim.tick(1)
    assert sim.status.phase == RolloutPhase.PAUSED
    assert sim.route is not None and sim.route.candidate_weight == 10, sim.route


def test_pause_while_waiting_for_pods_keeps_the_candidates_pods() -> None:
    """docs/rollouts.md: whatever the rollout waited for (pods for the next weight ...) it
    does not move on -- but pausing must not delete the pods it was waiting for (a user
    pauses to look at them)."""
    sim = Sim(canary_spec([{"setWeight": 25}, {"pause": {}}]))
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    retarget(sim, "1.1.0")
    sim.broken.add("1.1.0")
    sim.tick()
    sim.tick()
    asked = sim.replicas.get("1.1.0")
    assert asked == 1, sim.replicas
    sim.reconcile("pause")
    sim.tick()
    assert sim.replicas.get("1.1.0") == asked, sim.replicas


def test_plain_service_pause_while_promotion_waits_for_pods_holds_the_split() -> None:
    """docs/rollouts.md: a manual pause holds the route's weights. With plain Services the
    weight is the Ready-pod ratio: a candidate asked to full size for promotion keeps
    growing while paused (33-50% -> 67% here) and stays there."""
    sim = Sim(canary_spec([{"setWeight": 50}], trafficRouting={"service": {}}))
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    retarget(sim, "1.1.0")
    sim.broken.add("1.1.0")
    for _ in range(3):
        sim.tick()
    sim.broken.discard("1.1.0")
    sim.run_until(lambda s: (s.status.current_step or 0) >= 1, limit=50)
    sim.reconcile("pause")
    assert sim.status.weights is not None
    before = sim.status.weights.candidate
    for _ in range(5):
        sim.tick(5)
    assert sim.status.phase == RolloutPhase.PAUSED
    assert sim.status.weights is not None and sim.status.weights.candidate <= before, (
        before,
        sim.status.weights,
    )
