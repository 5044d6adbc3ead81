"""review14: reproductions of faults found in the merged work of issues 14 and 16.

Each test asserts what should hold and is marked ``xfail(strict=True)`` while the fault
is there: it fails today, and the mark turns into an error once the fault is fixed (then
drop the mark).
"""

from __future__ import annotations

import pytest

from ferryman.analysis import sequential
from ferryman.analysis.sequential import Arm, Design, Direction, Outcome
from ferryman.api.rollout import RolloutPhase
from unit.machine_sim import Sim, check_writes
from unit.test_autoscaling import paused_at_half, resize
from unit.test_machine_strategies import ISTIO, settled, spec_with, to_version

# --- autoscaling: scale to zero and back ------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="review14 R1: after spec.replicas 0 -> N, capacityReplicas 0 lets a canary keep "
    "its weight on a candidate with no Ready pod",
)
def test_canary_back_from_zero_gives_no_weight_to_an_unready_candidate() -> None:
    sim = paused_at_half()
    resize(sim, 0)
    sim.tick()
    sim.tick()
    assert sim.status.capacity_replicas == 0
    resize(sim, 4)
    sim.broken.add("1.1.0")  # the candidate's new pods never turn Ready
    for _ in range(3):
        sim.tick()
    assert sim.available == {"1.0.0": 4, "1.1.0": 0}
    # What ferryman does on any other scale-up with an unready candidate
    # (test_candidate_pods_unready_during_a_scale_up_still_lose_weight): weight 0.
    assert sim.route is not None and sim.route.candidate_weight == 0, sim.route


@pytest.mark.xfail(
    strict=True,
    reason="review14 R2: after spec.replicas 0 -> N, a blue-green preview mirrors traffic "
    "to a candidate with no Ready pod and says 'preview Ready'",
)
def test_blue_green_back_from_zero_mirrors_nothing_to_an_unready_preview() -> None:
    sim = settled(Sim(spec_with({"blueGreen": {"previewMirrorPercent": 20}}, ISTIO)))
    to_version(sim, "1.1.0")
    sim.run_until(lambda s: s.status.phase == RolloutPhase.PAUSED)
    resize(sim, 0)
    sim.tick()
    sim.tick()
    since = len(sim.moments)
    resize(sim, 4)
    sim.broken.add("1.1.0")
    for _ in range(3):
        sim.tick()
    assert sim.available.get("1.1.0") == 0
    assert "preview Ready" not in (sim.status.message or "")
    check_writes(sim, since)  # no mirror written to a version without a Ready pod


# --- sequential A/B verdict ------------------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="review14 R3: at the deadline the verdict stays Undecided when an arm has "
    "fewer than min_successes successes (a candidate converting nobody is never judged)",
)
def test_deadline_ends_an_experiment_whose_candidate_converts_nobody() -> None:
    design = Design(direction=Direction.HIGHER, mde=0.01)
    stable = Arm.per_user(users=20_000, successes=10_000)
    candidate = Arm.per_user(users=20_000, successes=0)
    result = sequential.evaluate(stable, candidate, design, deadline=True)
    # 0 of 20,000 against 10,000 of 20,000: the stable wins; at the very least the
    # deadline ends the experiment (the issue: "no significant difference by the deadline").
    assert result.outcome in (Outcome.STABLE_WINS, Outcome.NO_DIFFERENCE), result.message


@pytest.mark.xfail(
    strict=True,
    reason="review14 R3: max_users reached but too few users/successes in an arm: "
    "Undecided forever instead of NoDifference",
)
def test_deadline_with_too_few_users_is_no_difference() -> None:
    design = Design(direction=Direction.HIGHER, mde=0.01, min_users=100)
    stable = Arm.per_user(users=1_000, successes=100)
    candidate = Arm.per_user(users=50, successes=5)  # a tiny share that never grew
    result = sequential.evaluate(stable, candidate, design, deadline=True)
    assert result.outcome == Outcome.NO_DIFFERENCE, result.message
