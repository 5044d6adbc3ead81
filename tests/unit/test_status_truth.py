"""The status says what the cluster does (field cases 12 and 14b in the pure core): a
Rollout whose route belongs to someone else holds (no weight change, no promotion, no
scale-down), and a stable version without enough Ready replicas is reported as
``Available=False`` (reason ``StableNotReady``) with a Warning Event."""

from __future__ import annotations

from ferryman.api.common import ConditionStatus
from ferryman.api.rollout import RolloutPhase
from ferryman.plan import conditions
from ferryman.plan.availability import AVAILABLE
from unit.machine_sim import Sim, canary_spec, retarget

STEPS = [{"setWeight": 50}, {"pause": {}}]
FOREIGN = "HTTPRoute fraud exists and is not owned by this Rollout"


def healthy() -> Sim:
    sim = Sim(canary_spec(STEPS))
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    return sim


def available(sim: Sim) -> tuple[ConditionStatus, str] | None:
    c = conditions.find(sim.status.conditions, AVAILABLE)
    return (c.status, c.reason) if c else None


def test_blocked_route_holds_a_first_rollout() -> None:
    sim = Sim(canary_spec(STEPS), blocked=FOREIGN)
    for _ in range(5):
        d = sim.tick()
        assert d.route is None and d.deployments is None
    assert sim.status.stable_version is None
    assert sim.status.phase == RolloutPhase.PROGRESSING
    assert (sim.status.message or "").startswith("blocked:")


def test_blocked_route_never_advances_promotes_or_scales_down() -> None:
    sim = healthy()
    retarget(sim, "1.1.0")
    sim.run_until(lambda s: s.status.phase == RolloutPhase.PAUSED)
    before = (sim.status.canary_weight, sim.status.current_step, dict(sim.replicas))
    writes = len(sim.writes)
    sim.blocked = FOREIGN
    for action in ("promote-full", None, "promote", None):
        d = sim.reconcile(action) if action else sim.tick(30)
        assert d.route is None and d.deployments is None
    assert (sim.status.canary_weight, sim.status.current_step, dict(sim.replicas)) == before
    assert sim.status.stable_version == "1.0.0" and len(sim.writes) == writes
    rejected = [e for e in sim.events if e.reason == "ActionRejected"]
    assert len(rejected) == 2
    # Once the route is ours again, the rollout carries on where it was (still paused).
    sim.blocked = None
    sim.tick()
    assert sim.status.phase == RolloutPhase.PAUSED and sim.status.stable_version == "1.0.0"


def test_stable_without_ready_replicas_is_reported_once_and_recovers() -> None:
    sim = healthy()
    assert available(sim) == (ConditionStatus.TRUE, "StableReady")
    sim.unready["1.0.0"] = 4
    sim.tick()
    sim.tick()
    assert available(sim) == (ConditionStatus.FALSE, "StableNotReady")
    assert sim.status.phase == RolloutPhase.HEALTHY  # no new phase
    warnings = [e for e in sim.events if e.reason == "StableNotReady"]
    assert len(warnings) == 1 and "has 0 Ready replicas; 4 needed" in warnings[0].message
    sim.unready["1.0.0"] = 0
    sim.tick()
    assert available(sim) == (ConditionStatus.TRUE, "StableReady")
    assert [e.type for e in sim.events if e.reason == "StableReady"] == ["Normal"]


def test_stable_short_of_its_share_mid_canary_is_reported() -> None:
    """At 50/50 the stable needs 2 of its 4 replicas Ready; 1 is not enough."""
    sim = healthy()
    retarget(sim, "1.1.0")
    sim.run_until(lambda s: s.status.phase == RolloutPhase.PAUSED)
    sim.unready["1.0.0"] = 2
    sim.tick()
    assert available(sim) == (ConditionStatus.TRUE, "StableReady")
    sim.unready["1.0.0"] = 3
    sim.tick()
    assert available(sim) == (ConditionStatus.FALSE, "StableNotReady")


def test_candidate_unready_is_reported_once_per_withdrawal() -> None:
    sim = healthy()
    retarget(sim, "1.1.0")
    sim.run_until(lambda s: s.status.phase == RolloutPhase.PAUSED)
    sim.unready["1.1.0"] = 2
    for _ in range(4):
        sim.tick()
    assert sim.route is not None and sim.route.candidate_weight == 0
    assert [e.reason for e in sim.events].count("CandidateUnready") == 1
    sim.unready["1.1.0"] = 0
    sim.tick()
    sim.unready["1.1.0"] = 2
    sim.tick()
    assert [e.reason for e in sim.events].count("CandidateUnready") == 2
