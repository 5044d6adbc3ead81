"""review14: reproductions of faults found in the merged work of issues 14 and 16.

Each test asserts what should hold and is marked ``xfail(strict=True)`` while the fault
is there: it fails today, and the mark turns into an error once the fault is fixed (then
drop the mark).
"""

from __future__ import annotations

import pytest

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
