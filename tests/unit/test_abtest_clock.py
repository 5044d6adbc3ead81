"""The abTest's clock stops while the Rollout is paused (issue 16 §1): a user's pause or an
analysis hold extends the test's deadline by the time held, and the time held lives in
status (``status.experimentClock``), so the simulator, which keeps nothing but status
between reconciles (as a restarted operator), carries it. Driven through the simulator;
the rule is ``plan.experiment_stage`` (``tick``, ``deadline_of``)."""

from __future__ import annotations

from datetime import timedelta

from ferryman.api.rollout import PauseReason, RolloutPhase, Verdict
from ferryman.plan import experiment_stage
from ferryman.plan.route import Route
from unit.machine_sim import Sim
from unit.test_abtest_machine import ab_sim
from unit.test_machine_analysis import measure

GRACE = timedelta(seconds=30)  # GRACE_INTERVALS (3) x the analysis interval (10s)


def deadline_reached(sim: Sim) -> bool:
    """What the handler's look is told (``deadline=``) at this instant."""
    return experiment_stage.deadline_reached(sim.spec, sim.status, sim.now)


def ended(sim: Sim) -> bool:
    return sim.status.phase == RolloutPhase.HEALTHY


def test_a_users_pause_extends_the_deadline_by_the_time_paused() -> None:
    sim = ab_sim(duration="60s")
    started = sim.status.stage_since
    assert started is not None
    sim.tick(20)
    sim.reconcile("pause")
    assert sim.status.phase == RolloutPhase.PAUSED
    for _ in range(10):  # 100s paused: the deadline (60s of running) never comes
        sim.tick(10)
        assert sim.status.phase == RolloutPhase.PAUSED and not deadline_reached(sim)
    assert sim.status.pause is not None and sim.status.pause.since is not None
    paused = sim.now - sim.status.pause.since
    sim.reconcile("resume")
    assert sim.status.stage_since == started  # the test keeps its start (and its looks)
    clock = sim.status.experiment_clock
    assert clock is not None and clock.held_since is None
    assert clock.held_seconds == paused.total_seconds() == 100
    # 20s ran before the pause: 40s more to the deadline, then the grace for a look.
    sim.tick(39)
    assert not deadline_reached(sim)
    sim.tick(1)
    assert deadline_reached(sim)
    assert sim.now == started + timedelta(seconds=60 + 100)
    sim.tick(GRACE.total_seconds() - 1)
    assert sim.status.phase == RolloutPhase.PROGRESSING
    sim.tick(1)
    assert ended(sim) and sim.route == Route(stable="1.0.0")
    reason = (sim.status.history or [])[-1].reason or ""
    assert "no verdict by the deadline 60s + 100s held" in reason, reason


def test_an_analysis_hold_stops_the_clock_too() -> None:
    sim = ab_sim(duration="60s")
    started = sim.status.stage_since
    assert started is not None
    sim.tick(10)
    for _ in range(2):  # inconclusiveLimit 1: the second inconclusive round holds
        measure(sim, Verdict.INCONCLUSIVE)
        sim.tick(10)
    assert sim.status.pause is not None and sim.status.pause.reason == PauseReason.INCONCLUSIVE
    held_from = sim.now
    for _ in range(10):
        measure(sim, Verdict.INCONCLUSIVE)
        sim.tick(10)
        assert not deadline_reached(sim)
    measure(sim, Verdict.SUCCESSFUL)
    sim.tick(1)  # the hold lifts
    assert sim.status.phase == RolloutPhase.PROGRESSING
    clock = sim.status.experiment_clock
    assert clock is not None and clock.held_since is None
    held = sim.now - held_from
    assert clock.held_seconds == held.total_seconds()
    deadline = started + timedelta(seconds=60) + held
    sim.tick((deadline - sim.now).total_seconds() - 1)
    assert not deadline_reached(sim)
    sim.tick(1)
    assert deadline_reached(sim)


def test_the_clock_of_an_earlier_test_does_not_count() -> None:
    """A stale clock (another stageSince) is ignored: a new test starts with none held."""
    sim = ab_sim(duration="60s")
    sim.reconcile("pause")
    sim.tick(50)
    sim.reconcile("resume")
    clock = sim.status.experiment_clock
    assert clock is not None and clock.held_seconds == 50
    sim.status.stage_since = sim.now  # as a restarted plan would set it
    assert experiment_stage.held_for(sim.status, sim.now) == timedelta(0)
    assert experiment_stage.clock(sim.status) is None


def test_kubectl_ferryman_status_shows_the_time_held() -> None:
    from ferryman.api.rollout_experiment import ExperimentStatus, VariantFigures
    from ferryman.cli import render

    sim = ab_sim(duration="60s")
    sim.reconcile("pause")
    sim.tick(30)
    sim.status.experiment = ExperimentStatus(
        outcome="NoSignificantDifferenceYet",
        unit="users (one trial per user)",
        stable=VariantFigures(users=300, successes=30, rate=0.1),
        candidate=VariantFigures(users=30, successes=3, rate=0.1),
        at=sim.now,
    )
    shown = sim.rollout().model_copy(update={"status": sim.status})
    assert "clock stopped (held 0s before this hold)" in render.status(shown)
    kept = sim.status.experiment
    sim.reconcile("resume")
    sim.status.experiment = kept
    shown = sim.rollout().model_copy(update={"status": sim.status})
    assert "clock held 30s (the deadline moves by it)" in render.status(shown)
