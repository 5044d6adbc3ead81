"""The Rollout state machine, scenario by scenario."""

from __future__ import annotations

from ferryman.api.rollout import RolloutPhase
from ferryman.plan.route import Route
from unit.machine_sim import Sim, canary_spec, retarget

STEPS = [{"setWeight": 10}, {"pause": {"duration": "5s"}}, {"setWeight": 50}, {"pause": {}}]


def healthy_sim(**extra: object) -> Sim:
    sim = Sim(canary_spec(STEPS, **extra))
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    return sim


def test_first_rollout_goes_straight_to_stable_once_ready() -> None:
    sim = Sim(canary_spec(STEPS))
    d = sim.reconcile()
    assert d.route is None and sim.status.phase == RolloutPhase.PROGRESSING
    assert sim.replicas == {"1.0.0": 4}
    sim.tick()
    assert sim.status.phase == RolloutPhase.HEALTHY
    assert sim.status.stable_version == "1.0.0" and sim.status.candidate_version is None
    assert sim.route == Route(stable="1.0.0")
    assert [h.outcome for h in sim.status.history or []] == ["Promoted"]


def test_canary_steps_pause_and_promote() -> None:
    sim = healthy_sim()
    retarget(sim, "1.1.0")
    sim.reconcile()
    assert sim.status.candidate_version == "1.1.0"
    assert sim.replicas == {"1.0.0": 4, "1.1.0": 1}  # ceil(4 * 10%) = 1
    assert sim.route is not None and sim.route.candidate_weight == 0  # not Ready yet
    sim.tick()
    assert sim.route.candidate_weight == 10
    assert sim.status.phase == RolloutPhase.PAUSED and sim.status.current_step == 1
    sim.tick(3)
    assert sim.status.phase == RolloutPhase.PAUSED
    sim.tick(3)  # 6s > pause 5s: on to setWeight 50, which needs 2 Ready
    assert sim.replicas["1.1.0"] == 2 and sim.route.candidate_weight == 10
    sim.tick()
    assert sim.route.candidate_weight == 50
    assert sim.status.phase == RolloutPhase.PAUSED and sim.status.current_step == 3
    for _ in range(5):  # pause {} waits for promote, however long
        sim.tick(100)
    assert sim.route.candidate_weight == 50
    sim.reconcile("promote")  # past the last step: promotion needs 4 Ready
    assert sim.replicas["1.1.0"] == 4 and sim.route.candidate_weight == 50
    sim.tick()
    assert sim.status.phase == RolloutPhase.HEALTHY
    assert (sim.status.stable_version, sim.status.previous_stable_version) == ("1.1.0", "1.0.0")
    assert sim.route == Route(stable="1.1.0")
    assert sim.status.history[-1].outcome == "Promoted"  # type: ignore[index]
    # The old stable stays warm for scaleDownDelaySeconds (60), then goes.
    sim.tick(30)
    assert "1.0.0" in sim.replicas
    sim.tick(31)
    assert "1.0.0" not in sim.replicas


def test_promote_full_skips_the_remaining_steps() -> None:
    sim = healthy_sim()
    retarget(sim, "1.1.0")
    sim.reconcile()
    sim.tick()
    sim.reconcile("promote-full")
    sim.tick()
    assert sim.status.stable_version == "1.1.0" and sim.status.phase == RolloutPhase.HEALTHY


def test_candidate_that_never_gets_ready_is_rolled_back_at_the_deadline() -> None:
    sim = healthy_sim()
    retarget(sim, "1.1.0")
    sim.broken.add("1.1.0")
    d = sim.reconcile()
    assert d.requeue_after is not None and d.requeue_after <= 120
    sim.run_until(lambda s: s.status.phase == RolloutPhase.ROLLED_BACK, seconds=10)
    assert sim.route == Route(stable="1.0.0")
    assert "1.1.0" not in sim.replicas
    assert sim.status.rolled_back_versions == ["1.1.0"]
    assert "progress deadline" in sim.status.history[-1].reason  # type: ignore[index]
    # It stays RolledBack (GitOps still asks for 1.1.0) and is not retried by itself.
    sim.tick(500)
    assert sim.status.phase == RolloutPhase.ROLLED_BACK and "1.1.0" not in sim.replicas


def test_rollback_writes_the_route_before_any_scale_down() -> None:
    sim = healthy_sim()
    retarget(sim, "1.1.0")
    sim.reconcile()
    sim.tick()
    assert sim.route is not None and sim.route.candidate_weight == 10
    sim.writes.clear()
    sim.reconcile("abort")
    assert sim.status.phase == RolloutPhase.ABORTED
    kinds = [w[0] for w in sim.writes]
    assert kinds == ["route", "delete"], sim.writes
    assert sim.writes[0][1] == Route(stable="1.0.0")


def test_unready_candidate_loses_its_weight_and_gets_it_back() -> None:
    sim = healthy_sim()
    retarget(sim, "1.1.0")
    sim.reconcile()
    sim.tick()
    sim.tick(6)
    sim.tick()
    assert sim.route is not None and sim.route.candidate_weight == 50
    sim.unready["1.1.0"] = 1  # one of the two candidate pods turns unready
    sim.tick()
    assert sim.route.candidate_weight == 25  # what 1 of 4 replicas carries
    assert any(e.reason == "CandidateUnready" for e in sim.events)
    sim.unready.clear()
    sim.tick()
    assert sim.route.candidate_weight == 50


def test_new_target_mid_rollout_returns_traffic_to_stable_first() -> None:
    sim = healthy_sim()
    retarget(sim, "1.1.0")
    sim.reconcile()
    sim.tick()
    sim.writes.clear()
    retarget(sim, "1.2.0")
    sim.reconcile()
    assert sim.status.candidate_version == "1.2.0" and sim.status.current_step == 0
    assert sim.route == Route(stable="1.0.0", candidate="1.2.0", candidate_weight=0)
    assert "1.1.0" not in sim.replicas
    assert sim.status.history[-1].outcome == "Superseded"  # type: ignore[index]
    assert "1.1.0" not in (sim.status.rolled_back_versions or [])  # superseded, not failed


def test_track_latest_skips_rolled_back_until_retry() -> None:
    sim = Sim(canary_spec(STEPS, target={"track": "latest"}))
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    sim.versions.append("1.1.0")
    sim.broken.add("1.1.0")
    sim.reconcile()
    assert sim.status.candidate_version == "1.1.0"
    sim.run_until(lambda s: s.status.phase == RolloutPhase.ROLLED_BACK, seconds=10)
    sim.tick(10)
    assert sim.status.candidate_version is None and sim.route == Route(stable="1.0.0")
    sim.versions.append("1.2.0")  # a newer version starts at once
    sim.reconcile()
    assert sim.status.candidate_version == "1.2.0"
    sim.broken.discard("1.1.0")


def test_retry_after_rollback_tries_again() -> None:
    sim = healthy_sim()
    retarget(sim, "1.1.0")
    sim.broken.add("1.1.0")
    sim.reconcile()
    sim.run_until(lambda s: s.status.phase == RolloutPhase.ROLLED_BACK, seconds=10)
    sim.broken.clear()
    sim.reconcile("retry")
    assert sim.status.phase == RolloutPhase.PROGRESSING
    assert sim.status.candidate_version == "1.1.0"
    assert sim.status.rolled_back_versions == []


def test_unknown_version_is_invalid_and_touches_nothing() -> None:
    sim = healthy_sim()
    sim.spec = sim.spec.model_copy(
        update={"target": sim.spec.target.model_copy(update={"version": "9.9.9"})}
    )
    sim.writes.clear()
    d = sim.reconcile()
    assert sim.status.phase == RolloutPhase.INVALID
    assert "no ModelVersion of model fraud with version 9.9.9" in (sim.status.message or "")
    assert d.route is None and d.deployments is None and sim.writes == []


def test_actions_are_recorded_as_handled() -> None:
    sim = healthy_sim()
    sim.reconcile("retry")
    assert sim.status.handled_action_id == "id-1"
    assert any(e.reason == "ActionRejected" for e in sim.events)


def test_a_target_set_back_to_the_stable_version_after_an_abort_is_healthy() -> None:
    """A reverted release in Git (target back to the stable version) makes the Rollout
    Healthy; while the spec still asks for the aborted version it stays Aborted."""
    sim = healthy_sim()
    retarget(sim, "1.1.0")
    sim.reconcile()
    sim.tick()
    sim.reconcile("abort")
    sim.tick(5)
    assert sim.status.phase == RolloutPhase.ABORTED
    retarget(sim, "1.0.0")
    sim.reconcile()
    assert sim.status.phase == RolloutPhase.HEALTHY, sim.status.message
    assert sim.route == Route(stable="1.0.0")


def test_available_stays_true_to_the_stable_while_the_rollout_is_invalid() -> None:
    """`Invalid` changes nothing in traffic, but the stable keeps serving: `Available`
    still describes it (so `kubectl wait --for=condition=Available` and Argo CD see a
    stable that loses its pods while the spec names a version that does not exist)."""
    sim = healthy_sim()
    retarget(sim, "9.9.9")
    sim.versions.remove("9.9.9")  # the target names no ModelVersion
    sim.reconcile()
    assert sim.status.phase == RolloutPhase.INVALID
    sim.unready["1.0.0"] = 3
    sim.tick(1)
    sim.reconcile()
    assert sim.status.phase == RolloutPhase.INVALID
    available = next(c for c in sim.status.conditions or [] if c.type == "Available")
    assert available.status == "False", available
