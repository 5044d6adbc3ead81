"""The abTest stage of the state machine (``plan.progress`` runs it like the other stages):
the candidate serves the users ``plan.experiment.user_match`` picks, sized for their
share, until the verdict the handler keeps in ``status.experiment`` (one look per
analysis interval, ``plan.experiment.look``) says how it ends:

- ``CandidateWins``: on to promotion (the usual promotion: full size, guardrail evidence,
  one route write), or, with ``onCandidateWins: report``, end and keep the stable;
- ``StableWins``: roll back (phase ``RolledBack``, cause ``Experiment``);
- ``NoDifference`` (a difference of the MDE ruled out, or none found by ``duration``):
  end, keep the stable, report (phase ``Healthy``, history ``Stopped`` with cause
  ``Experiment``; condition Ready with reason ``ExperimentEnded``);
- otherwise keep serving the users. At ``duration`` the handler's look says
  ``deadline``; if no look comes within ``GRACE_INTERVALS`` analysis intervals after it
  (Prometheus down), the test ends with no difference rather than run on.

The test's clock (``duration``) stops while the Rollout is paused: by a user (``kubectl
ferryman pause``) or by an analysis hold (Inconclusive, AnalysisError), the stage being
held either way. ``status.experimentClock`` keeps the time held (``tick``), so the
deadline is ``stageSince + duration + held`` and a restarted operator loses none of it;
resume keeps ``stageSince`` (``plan.manual``), unlike a shadow's or a pause step's clock,
which restarts in full. The counts are not paused: the users keep being served and
counted, and every look counts (docs/experiments.md says why).

The guardrails (``spec.analysis.metrics``) are measured throughout and roll back as in a
canary (``plan.progress``). Pure; its own module so ``plan.progress`` stays one outline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from ferryman.api.rollout import (
    HistoryCause,
    HistoryOutcome,
    RolloutPhase,
    RolloutSpec,
    RolloutStatus,
)
from ferryman.api.rollout_experiment import ExperimentClock, OnWin
from ferryman.plan import experiment
from ferryman.plan.capacity import needed
from ferryman.plan.decision import Decision, Event, Observed
from ferryman.plan.durations import parse_duration
from ferryman.plan.endings import rollback
from ferryman.plan.evidence import mark_weight_change
from ferryman.plan.route import UserMatch
from ferryman.plan.scale import reference_replicas
from ferryman.plan.stages import Experiment
from ferryman.plan.walk import Walk, no_live_weight

GRACE_INTERVALS = 3
# analysis.sequential.Outcome's values (not imported: it loads numpy and scipy).
CANDIDATE_WINS, STABLE_WINS, NO_DIFFERENCE = "CandidateWins", "StableWins", "NoDifference"


@dataclass(frozen=True)
class Ending:
    """How the test ends without promotion: ``rollback`` (stable wins) or not (keep the
    stable and report), with the reason for history and status."""

    rollback: bool
    reason: str


def users_of(spec: RolloutSpec) -> UserMatch:
    assert spec.strategy.ab_test is not None
    return experiment.user_match(spec.strategy.ab_test.users)


def replicas_for(spec: RolloutSpec, match: UserMatch, replicas: int | None = None) -> int:
    """Candidate replicas for the users it serves: its share of ``spec.replicas`` (or of
    ``replicas``; at least one) for a percent of users; all of them for a cohort, whose
    size nobody knows."""
    count = spec.replicas if replicas is None else replicas
    if match.share is None:
        return count
    return max(1, needed(count, math.ceil(match.share * 100)))


def carried(w: Walk, match: UserMatch) -> int:
    """The Ready replicas the users need to stay on the candidate: at the count they were
    last carried at while an autoscaler grows ``spec.replicas`` (``plan.scale``, as a
    canary's weight; back from zero, at the new count), else at ``spec.replicas``."""
    if w.s.stage_since is None:
        return replicas_for(w.spec, match)
    replicas = w.spec.replicas
    return replicas_for(
        w.spec, match, reference_replicas(replicas, w.s.capacity_replicas, from_zero=replicas)
    )


def describe(match: UserMatch) -> str:
    if match.share is not None:
        return f"{match.share:.2%} of users by {match.header}"
    return (
        f"requests whose {match.header} {'is ' + repr(match.exact) if match.exact else 'matches'}"
    )


def clock(s: RolloutStatus) -> ExperimentClock | None:
    """The running test's clock, None before the test begins (or when the one in status
    belongs to an earlier test: a new ``stageSince``)."""
    c = s.experiment_clock
    if s.stage_since is None or c is None or c.stage_since != s.stage_since:
        return None
    return c


def tick(s: RolloutStatus, now: datetime, *, held: bool) -> None:
    """Keep the running test's clock (in place): a hold begins (``held``, none in course)
    or ends (not ``held``, one in course: its time is added to ``heldSeconds``). Nothing
    before the test begins."""
    if s.stage_since is None:
        return
    c = clock(s) or ExperimentClock(stage_since=s.stage_since)
    if held and c.held_since is None:
        c = c.model_copy(update={"held_since": now})
    elif not held and c.held_since is not None:
        gone = max(0.0, (now - c.held_since).total_seconds())
        c = c.model_copy(update={"held_seconds": c.held_seconds + gone, "held_since": None})
    if c != s.experiment_clock:
        s.experiment_clock = c


def held_for(s: RolloutStatus, now: datetime) -> timedelta:
    """How long the running test has been held so far, the hold in course included."""
    c = clock(s)
    if c is None:
        return timedelta(0)
    ongoing = max(timedelta(0), now - c.held_since) if c.held_since is not None else timedelta(0)
    return timedelta(seconds=c.held_seconds) + ongoing


def deadline_of(s: RolloutStatus, duration: timedelta, now: datetime) -> datetime | None:
    """When the running test's ``duration`` runs out: its start plus the duration plus the
    time held (while a hold is in course, it moves on with ``now``); None before it
    begins."""
    if s.stage_since is None:
        return None
    return s.stage_since + duration + held_for(s, now)


def hold(w: Walk) -> None:
    """Under a hold (a user's pause, an analysis hold) a running test keeps what it has:
    no live weight, its candidate's pods, its users while they are Ready (``run`` is not
    called, so nothing ends or advances); its clock stops while the Rollout is paused."""
    paused = w.s.phase == RolloutPhase.PAUSED and w.s.pause is not None
    tick(w.s, w.now, held=paused)
    w.committed = no_live_weight(
        w.spec, w.s, w.now, w.committed, w.candidate, w.d.events, "an A/B test"
    )
    if w.s.stage_since is None or w.spec.replicas == 0:
        return
    match = users_of(w.spec)
    w.want = max(w.want, replicas_for(w.spec, match))
    if w.ready_for(carried(w, match)):
        w.users = match


def run(w: Walk, stage: Experiment) -> bool | Ending:
    """The stage (see the module docstring): True on to promotion, False stay, or how it
    ends."""
    spec, s, now, candidate = w.spec, w.s, w.now, w.candidate
    ab = spec.strategy.ab_test
    assert ab is not None
    match = users_of(spec)
    tick(s, now, held=False)  # not held: a hold in course (if any) ends now
    w.committed = no_live_weight(spec, s, now, w.committed, candidate, w.d.events, "an A/B test")
    w.want = replicas_for(spec, match)
    if not w.ready_for(carried(w, match)):
        # Before it starts: wait for the pods (the progress deadline applies). Pods that
        # turn unready mid-test: its users go back to stable, the clock runs on.
        w.waiting_for_pods = s.stage_since is None
        s.message = (
            f"abTest: waiting for {w.want} Ready replicas of {candidate} ({w.available} Ready)"
        )
        return False
    if s.stage_since is None:
        s.stage_since = now
        mark_weight_change(spec, s, now)
        w.d.events.append(Event("Normal", "ABTest", f"{candidate} serves {describe(match)}"))
    w.users = match
    e = s.experiment
    looked = e is not None and e.at is not None and e.at >= s.stage_since
    outcome = e.outcome if e is not None and looked else None
    note = e.message if e is not None and looked else "no look yet"
    if outcome == CANDIDATE_WINS:
        if ab.on_candidate_wins == OnWin.PROMOTE:
            s.stage_since, s.step_started_at, w.i = None, now, w.i + 1
            return True
        return Ending(False, f"abTest: candidate wins (onCandidateWins: report): {note}")
    if outcome == STABLE_WINS:
        return Ending(True, f"abTest: stable wins: {note}")
    if outcome == NO_DIFFERENCE:
        return Ending(False, f"abTest: no difference: {note}")
    if stage.duration is not None:
        deadline = deadline_of(s, stage.duration, now)
        assert deadline is not None and spec.analysis is not None  # the CRD: needs analysis
        grace = deadline + GRACE_INTERVALS * parse_duration(spec.analysis.interval)
        if now >= grace:
            held = held_for(s, now).total_seconds()
            extra = f" + {held:.0f}s held" if held else ""
            return Ending(False, f"abTest: no verdict by the deadline {stage.text}{extra} ({note})")
        w.d.wake_in(((deadline if now < deadline else grace) - now).total_seconds())
    s.message = f"abTest: {candidate} serves {describe(match)}; {note}"
    return False


def deadline_reached(spec: RolloutSpec, s: RolloutStatus, now: datetime) -> bool:
    """Whether the abTest's ``duration`` has passed, not counting the time it was held
    (the handler's look then says deadline). While a hold is in course the deadline moves
    with the clock, so this stays False, unless the hold began after the deadline had
    passed (in the grace for a last look): then it stays True and the test ends at the
    resume, as it would have without the pause."""
    ab = spec.strategy.ab_test
    if ab is None or ab.duration is None:
        return False
    deadline = deadline_of(s, parse_duration(ab.duration), now)
    return deadline is not None and now >= deadline


def end(
    spec: RolloutSpec, s: RolloutStatus, observed: Observed, events: list[Event], ending: Ending
) -> Decision:
    """End the test without promotion: everything to stable, the candidate removed."""
    if ending.rollback:
        return rollback(
            spec,
            s,
            observed,
            phase=RolloutPhase.ROLLED_BACK,
            reason=ending.reason,
            cause=HistoryCause.EXPERIMENT,
        )
    victim = s.candidate_version
    d = rollback(
        spec,
        s,
        observed,
        phase=RolloutPhase.HEALTHY,
        reason=ending.reason,
        outcome=HistoryOutcome.STOPPED,
        cause=HistoryCause.EXPERIMENT,
    )
    d.status.message = f"{ending.reason}; {victim} removed, stable {s.stable_version} kept"
    d.events = [*events, Event("Normal", "ABTestEnded", d.status.message)]
    return d
