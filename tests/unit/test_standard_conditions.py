"""The standard conditions of a Rollout (plan.conditions.rollout_conditions, set on every
decision): Ready as kstatus reads it (the target stable at 100%, no rollback pending),
Progressing, Paused with the pause reason, and kstatus' Reconciling / Stalled."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ferryman.api.common import ConditionStatus
from ferryman.api.rollout import RolloutPhase
from ferryman.plan import conditions
from unit.machine_sim import Sim, canary_spec, retarget

T, F = ConditionStatus.TRUE, ConditionStatus.FALSE
NOW = datetime(2026, 11, 30, tzinfo=UTC)


def state(sim: Sim) -> dict[str, tuple[ConditionStatus, str]]:
    out = {}
    for type_ in conditions.STANDARD_TYPES:
        c = conditions.find(sim.status.conditions, type_)
        if c is not None:
            out[type_] = (c.status, c.reason)
    return out


def test_first_rollout_is_reconciling_then_ready() -> None:
    sim = Sim(canary_spec([{"setWeight": 50}, {"pause": {}}]))
    sim.reconcile()
    s = state(sim)
    assert s["Ready"] == (F, "Progressing") and s["Reconciling"] == (T, "Progressing")
    assert s["Progressing"] == (T, "Progressing") and s["Stalled"] == (F, "Progressing")
    assert s["Paused"] == (F, "NotPaused")
    sim.run_until(lambda x: x.status.phase == RolloutPhase.HEALTHY)
    s = state(sim)
    assert s["Ready"] == (T, "TargetStable") and s["Available"] == (T, "StableReady")
    assert s["Reconciling"][0] == F and s["Stalled"][0] == F and s["Progressing"][0] == F


def test_step_pause_then_promotion_then_bake() -> None:
    sim = Sim(canary_spec([{"setWeight": 50}, {"pause": {}}], bake={"duration": "1m"}))
    sim.run_until(lambda x: x.status.phase == RolloutPhase.HEALTHY)
    retarget(sim, "1.1.0")
    sim.run_until(lambda x: x.status.phase == RolloutPhase.PAUSED)
    s = state(sim)
    assert s["Paused"] == (T, "Step") and s["Ready"] == (F, "Paused")
    assert s["Progressing"] == (F, "Paused") and s["Reconciling"] == (T, "Paused")
    sim.reconcile("promote")
    sim.run_until(lambda x: x.status.phase != RolloutPhase.PAUSED)
    if sim.status.phase == RolloutPhase.BAKING:
        s = state(sim)
        assert s["Ready"] == (F, "Baking") and s["Progressing"] == (T, "Baking")
    sim.run_until(lambda x: x.status.phase == RolloutPhase.HEALTHY, seconds=10)
    assert state(sim)["Ready"] == (T, "TargetStable")


def test_abort_is_stalled_and_not_ready_until_retry() -> None:
    sim = Sim(canary_spec([{"setWeight": 50}, {"pause": {}}]))
    sim.run_until(lambda x: x.status.phase == RolloutPhase.HEALTHY)
    retarget(sim, "1.1.0")
    sim.run_until(lambda x: x.status.phase == RolloutPhase.PAUSED)
    sim.reconcile("abort")
    sim.tick()
    assert sim.status.phase == RolloutPhase.ABORTED
    s = state(sim)
    assert s["Stalled"] == (T, "Aborted") and s["Ready"] == (F, "Aborted")
    assert s["Reconciling"][0] == F and s["Paused"] == (F, "NotPaused")
    sim.reconcile("retry")
    s = state(sim)
    assert s["Stalled"][0] == F and s["Reconciling"][0] == T


@pytest.mark.parametrize(
    ("phase", "stalled"),
    [("RolledBack", True), ("Rejected", True), ("Invalid", True), ("Healthy", False)],
)
def test_stalled_by_phase(phase: str, stalled: bool) -> None:
    out = conditions.rollout_conditions(
        None,
        phase=phase,
        pause_reason=None,
        candidate=None,
        stopped=False,
        message="m",
        generation=3,
        now=NOW,
    )
    c = conditions.find(out, conditions.STALLED)
    assert c is not None and c.status == (T if stalled else F) and c.observed_generation == 3
    ready = conditions.find(out, conditions.READY)
    assert ready is not None and ready.status == (T if phase == "Healthy" else F)


def test_ready_needs_the_stable_available_and_names_a_shadow_stop() -> None:
    base = conditions.set_condition(
        None,
        type=conditions.AVAILABLE,
        status=F,
        reason=conditions.REASON_STABLE_NOT_READY,
        message="",
        generation=1,
        now=NOW,
    )
    kw = {"pause_reason": None, "candidate": None, "message": "", "generation": 1, "now": NOW}
    out = conditions.rollout_conditions(base, phase="Healthy", stopped=False, **kw)  # type: ignore[arg-type]
    assert conditions.find(out, "Ready").status == F  # type: ignore[union-attr]
    out = conditions.rollout_conditions(None, phase="Healthy", stopped=True, **kw)  # type: ignore[arg-type]
    assert conditions.find(out, "Ready").reason == "ShadowStopped"  # type: ignore[union-attr]


def test_paused_reason_and_transition_time_kept() -> None:
    kw = {"candidate": "2", "stopped": False, "message": "", "generation": 1}
    first = conditions.rollout_conditions(
        None,
        phase="Paused",
        pause_reason="Inconclusive",
        now=NOW,
        **kw,  # type: ignore[arg-type]
    )
    later = datetime(2026, 12, 1, tzinfo=UTC)
    again = conditions.rollout_conditions(
        first,
        phase="Paused",
        pause_reason="AnalysisError",
        now=later,
        **kw,  # type: ignore[arg-type]
    )
    c = conditions.find(again, conditions.PAUSED)
    assert c is not None and c.reason == "AnalysisError" and c.last_transition_time == NOW
