"""User actions: the one applicability rule (plan.actions) that the CLI asks before it sends
an action and the state machine asks when the action arrives, and the verdict the machine
records for each nonce in status.lastAction."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.api.rollout import ActionResult, RolloutPhase, RolloutStatus
from ferryman.plan import actions
from ferryman.plan.route import Route
from unit.machine_sim import Sim, canary_spec

STEPS = [{"setWeight": 50}, {"pause": {}}]


def healthy(**extra: object) -> Sim:
    sim = Sim(canary_spec(STEPS, **extra))
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    return sim


def retarget(sim: Sim, version: str) -> None:
    if version not in sim.versions:
        sim.versions.append(version)
    sim.spec = sim.spec.model_copy(
        update={"target": sim.spec.target.model_copy(update={"version": version})}
    )


def promoted(scale_down_delay: int = 60) -> Sim:
    """1.1.0 promoted over 1.0.0, which stays warm for ``scale_down_delay`` seconds."""
    sim = healthy(scaleDownDelaySeconds=scale_down_delay)
    retarget(sim, "1.1.0")
    sim.run_until(lambda s: s.status.phase == RolloutPhase.PAUSED)
    sim.reconcile("promote")
    sim.run_until(lambda s: s.status.stable_version == "1.1.0")
    return sim


def cli_refusal(sim: Sim, action: str) -> str | None:
    """What `kubectl ferryman` decides from what it can read: the status, and the previous
    stable version's Deployment."""
    prev = sim.status.previous_stable_version
    warm = (
        prev is not None
        and prev in sim.replicas
        and actions.previous_warm(
            replicas=sim.spec.replicas,
            scaled_to=sim.replicas[prev],
            available=sim.available.get(prev, 0),
        )
    )
    return actions.refusal(action, sim.status, previous_warm=warm)


# --- the rule -----------------------------------------------------------------------

IN_FLIGHT = {"stable_version": "1.0.0", "candidate_version": "1.1.0"}
SETTLED = {"stable_version": "1.1.0", "previous_stable_version": "1.0.0"}
MANUAL = {**IN_FLIGHT, "pause": {"reason": "Manual"}}
HISTORY = {"history": [{"version": "1.1.0", "outcome": "RolledBack", "at": "2026-11-22T10:00:00Z"}]}


@pytest.mark.parametrize("phase", [*RolloutPhase, None])
@pytest.mark.parametrize("action", [a.value for a in actions.ActionName])
def test_each_action_applies_only_in_its_phases(action: str, phase: RolloutPhase | None) -> None:
    # A status where every other precondition holds: only the phase decides.
    status = RolloutStatus.model_validate(
        {
            **(IN_FLIGHT if action in ("promote", "promote-full", "abort", "pause") else SETTLED),
            **(MANUAL if action == "resume" else {}),
            **HISTORY,
            "phase": phase,
        }
    )
    if action == "abort" and phase == RolloutPhase.BAKING:
        status = RolloutStatus.model_validate({**SETTLED, "phase": phase})
    refusal = actions.refusal(action, status, previous_warm=True)
    assert (refusal is None) == (phase in actions.PHASES[actions.ActionName(action)])
    if refusal:
        assert (phase.value if phase else "Pending") in refusal and action in refusal


@pytest.mark.parametrize(
    ("action", "status", "warm", "expected"),
    [
        ("undo", {**SETTLED, "phase": "Healthy"}, False, "1.0.0 still warm and Ready"),
        ("undo", {"stableVersion": "1.0.0", "phase": "Healthy"}, True, "no"),
        ("promote", {"candidateVersion": "1.0.0", "phase": "Progressing"}, True, "candidate"),
        ("abort", {"candidateVersion": "1.0.0", "phase": "Progressing"}, True, "candidate"),
        ("abort", {**SETTLED, "phase": "Baking"}, False, "warm and Ready"),
        ("abort", {"stableVersion": "1.1.0", "phase": "Baking"}, True, "previous stable"),
        ("retry", {"stableVersion": "1.0.0", "phase": "Rejected"}, True, "history"),
        ("rollback", {**SETTLED, "phase": "Healthy"}, True, "unknown action 'rollback'"),
    ],
)
def test_refusals_name_their_cause(
    action: str, status: dict[str, object], warm: bool, expected: str
) -> None:
    st_ = RolloutStatus.model_validate(status)
    assert expected in (actions.refusal(action, st_, previous_warm=warm) or "")


def test_previous_warm_needs_full_size_and_ready() -> None:
    assert actions.previous_warm(replicas=3, scaled_to=3, available=3)
    assert not actions.previous_warm(replicas=3, scaled_to=None, available=0)
    assert not actions.previous_warm(replicas=3, scaled_to=3, available=2)
    assert not actions.previous_warm(replicas=3, scaled_to=1, available=3)


def test_deployment_readiness_counts_only_updated_replicas_until_observed() -> None:
    dep = {
        "metadata": {"generation": 2},
        "spec": {"replicas": 3},
        "status": {"observedGeneration": 1, "availableReplicas": 3, "updatedReplicas": 1},
    }
    assert actions.deployment_readiness(dep) == (3, 1)
    dep["status"]["observedGeneration"] = 2  # type: ignore[index]
    assert actions.deployment_readiness(dep) == (3, 3)
    assert actions.deployment_readiness({}) == (0, 0)


# --- the operator's verdict ------------------------------------------------------------


def test_case_31_undo_after_the_previous_stable_was_scaled_away_is_rejected() -> None:
    sim = promoted(scale_down_delay=0)
    sim.tick()
    assert "1.0.0" not in sim.replicas
    sim.reconcile("undo")
    last = sim.status.last_action
    assert last is not None and last.id == sim.status.handled_action_id == "id-2"
    assert last.result == ActionResult.REJECTED and last.action == "undo"
    assert "previous stable version 1.0.0 still warm and Ready" in last.message
    assert sim.status.stable_version == "1.1.0" and sim.route == Route(stable="1.1.0")
    assert any(e.reason == "ActionRejected" and last.message in e.message for e in sim.events)


def test_undo_while_the_previous_stable_is_warm_is_applied() -> None:
    sim = promoted()
    sim.reconcile("undo")
    last = sim.status.last_action
    assert last is not None and last.result == ActionResult.APPLIED
    assert "1.0.0 is stable again" in last.message
    assert sim.route == Route(stable="1.0.0")


def test_an_action_sent_past_the_cli_is_rejected_with_the_same_reason() -> None:
    sim = healthy()
    refusal = cli_refusal(sim, "promote")
    assert refusal is not None
    sim.reconcile("promote")
    assert sim.status.last_action is not None
    assert sim.status.last_action.result == ActionResult.REJECTED
    assert sim.status.last_action.message == refusal


def test_promote_that_meets_a_new_target_is_rejected_as_superseded() -> None:
    # The CLI checked while 1.1.0 was Paused; GitOps retargets before the operator acts.
    sim = healthy()
    retarget(sim, "1.1.0")
    sim.run_until(lambda s: s.status.phase == RolloutPhase.PAUSED)
    assert cli_refusal(sim, "promote") is None
    retarget(sim, "1.2.0")
    sim.reconcile("promote")
    last = sim.status.last_action
    assert last is not None and last.result == ActionResult.REJECTED
    assert last.message == "promote not applied: candidate 1.1.0 was superseded by target 1.2.0"
    assert sim.status.candidate_version == "1.2.0" and sim.status.current_step == 0


def test_abort_during_the_first_rollout_is_rejected_not_ignored() -> None:
    sim = Sim(canary_spec(STEPS))
    sim.broken.add("1.0.0")
    sim.reconcile()
    assert sim.status.phase == RolloutPhase.PROGRESSING
    sim.reconcile("abort")
    last = sim.status.last_action
    assert last is not None and last.result == ActionResult.REJECTED
    assert "next to a stable version" in last.message


def test_an_action_on_an_invalid_rollout_is_rejected() -> None:
    sim = healthy()
    retarget(sim, "1.1.0")
    sim.run_until(lambda s: s.status.phase == RolloutPhase.PAUSED)
    sim.spec = sim.spec.model_copy(
        update={"target": sim.spec.target.model_copy(update={"version": "9.9.9"})}
    )
    sim.reconcile("promote")
    last = sim.status.last_action
    assert last is not None and last.result == ActionResult.REJECTED
    assert "Invalid" in last.message and "9.9.9" in last.message


def test_verdict_message_is_bounded() -> None:
    sim = healthy()
    sim.reconcile("x" * 5000)
    last = sim.status.last_action
    assert last is not None and last.result == ActionResult.REJECTED
    assert len(last.message) <= 1024 and len(last.action) <= 32


OPS = st.one_of(
    st.tuples(st.just("tick"), st.integers(1, 40)),
    st.tuples(st.just("action"), st.sampled_from([a.value for a in actions.ActionName])),
    st.tuples(st.just("new-version"), st.sampled_from([False, False, True])),
)


@settings(max_examples=300, deadline=None)
@given(
    delay=st.sampled_from([0, 30]),
    ops=st.lists(OPS, max_size=30),
)
def test_cli_and_operator_agree_on_every_action(delay: int, ops: list[tuple[str, object]]) -> None:
    """For any history, an action the CLI would refuse is rejected by the operator with
    the same reason, and one it would send is applied (no spec change raced it here), and
    every action gets a verdict for its own nonce."""
    sim = Sim(
        canary_spec(
            [{"setWeight": 50}, {"pause": {"duration": "10s"}}], scaleDownDelaySeconds=delay
        )
    )
    sim.run_until(lambda s: s.status.stable_version is not None)
    version = 1
    for op, arg in ops:
        if op == "tick":
            sim.tick(float(arg))  # type: ignore[arg-type]
        elif op == "new-version":
            version += 1
            retarget(sim, f"1.{version}.0")
            if arg:
                sim.broken.add(f"1.{version}.0")
            sim.reconcile()
        else:
            action = str(arg)
            before = copy.deepcopy(sim.status)
            expected = cli_refusal(sim, action)
            sim.reconcile(action)
            last = sim.status.last_action
            assert last is not None and last.id == f"id-{sim.action_seq}"
            if expected is not None:
                assert (last.result, last.message) == (ActionResult.REJECTED, expected)
                continue
            assert last.result == ActionResult.APPLIED, last.message
            if action == "abort":
                assert sim.status.phase == RolloutPhase.ABORTED
            elif action == "undo":
                assert sim.status.stable_version == before.previous_stable_version
            elif action == "retry":
                assert sim.status.phase not in (RolloutPhase.ROLLED_BACK, RolloutPhase.ABORTED)


def test_a_retry_that_meets_an_invalid_target_changes_nothing() -> None:
    sim = healthy(progressDeadlineSeconds=5)
    sim.broken.add("1.1.0")
    retarget(sim, "1.1.0")
    sim.run_until(lambda s: s.status.phase == RolloutPhase.ROLLED_BACK, seconds=10)
    sim.spec = sim.spec.model_copy(
        update={"target": sim.spec.target.model_copy(update={"version": "9.9.9"})}
    )
    sim.reconcile("retry")
    last = sim.status.last_action
    assert last is not None and last.result == ActionResult.REJECTED and "Invalid" in last.message
    assert sim.status.rolled_back_versions == ["1.1.0"]  # not half applied
