"""A user's ``pause`` and ``resume`` (``kubectl ferryman pause|resume``): how they change
a rolling-out candidate's status. Their own module so the rule and its clock handling
are read in one place; ``plan.progress`` applies them and holds a manually paused
rollout where it is (``hold_stage``).

- ``pause`` sets ``status.pause`` to reason ``Manual`` (since now): the rollout holds at
  its current step, whatever it waited for (a weight step, a pause step, a shadow or a
  blue-green preview, promotion). Weights and mirror stay as they are; analysis keeps
  running, and a failure still rolls back. A manual pause shows instead of an analysis
  hold (Inconclusive, AnalysisError); after resume the analysis hold applies again if
  its cause remains. ``progressDeadlineSeconds`` does not run out while paused.
- ``resume`` clears it and continues at the same step; the step's clock restarts at the
  resume: a timed pause step, a shadow stage's ``duration``, blue-green's
  ``autoPromotionSeconds`` and ``progressDeadlineSeconds`` count in full from then (time
  before and during the manual pause does not count). An abTest's ``duration`` does not
  restart: its clock stopped during the pause and goes on (``plan.experiment_stage``).
- ``promote`` (and ``promote --full``) on a manual pause clears it and advances a step
  (or to promotion), exactly as on a pause step; ``abort`` rolls back.

Pure: no I/O; the clock is an input.
"""

from __future__ import annotations

from datetime import datetime

from ferryman.api.rollout import PauseReason, PauseStatus, RolloutStatus
from ferryman.plan import experiment_stage
from ferryman.plan.actions import ActionName
from ferryman.plan.capacity import needed
from ferryman.plan.decision import Action, Event
from ferryman.plan.evidence import mark_weight_change
from ferryman.plan.stages import Experiment, Preview, SetWeight, Shadow
from ferryman.plan.walk import Walk, no_live_weight


def manual_action(action: Action, s: RolloutStatus, now: datetime, events: list[Event]) -> None:
    """Apply ``pause`` or ``resume`` (already allowed by ``plan.actions.refusal``) to the
    status ``s`` of a rolling-out candidate, in place, with a Normal Event; any other
    action is not this function's and changes nothing."""
    step = s.current_step or 0
    if action.name == ActionName.PAUSE:
        s.pause = PauseStatus(
            reason=PauseReason.MANUAL,
            since=now,
            message=f"step {step}: paused by user; `kubectl ferryman resume` continues",
        )
        events.append(Event("Normal", "Paused", f"paused by user at step {step}"))
    elif action.name == ActionName.RESUME:
        s.pause, s.step_started_at = None, now
        if s.stage_since is not None and experiment_stage.clock(s) is None:
            s.stage_since = now
        # An abTest's test keeps its start: its clock extends the deadline by the time
        # held instead (plan.experiment_stage.tick, at this reconcile's walk).
        events.append(Event("Normal", "Resumed", f"resumed by user at step {step}"))


def hold_stage(w: Walk, weights_by_replicas: bool) -> None:
    """What a manual pause keeps at the stage the walk stands on, without advancing or
    starting anything (``w`` is changed in place):

    - never more live traffic than that stage allows: a lower ``setWeight`` (a spec edit
      restarted the plan at it) applies at once, and a shadow or preview stage has no
      live weight (as without a pause, docs/rollouts.md "Spec edits mid-rollout");
    - the candidate's pods as they are asked for (a user who pauses to look at pods that
      do not turn Ready keeps them), except with a router that weighs by replicas once
      the candidate has live weight: there its Ready pods are its traffic, so it keeps
      exactly the pods the held weight needs and the split does not move;
    - a running shadow's mirror (while its replicas are Ready), a blue-green preview and
      its mirror.
    """
    stage = w.plan[w.i] if w.i < len(w.plan) else None
    spec, s, replicas = w.spec, w.s, w.spec.replicas
    if isinstance(stage, SetWeight) and stage.weight < w.committed:
        mark_weight_change(spec, s, w.now)
        w.d.events.append(Event("Normal", "Weight", f"candidate {w.candidate} at {stage.weight}%"))
        w.committed = stage.weight
    elif isinstance(stage, (Shadow, Preview)):
        what = "a shadow" if isinstance(stage, Shadow) else "a preview"
        w.committed = no_live_weight(spec, s, w.now, w.committed, w.candidate, w.d.events, what)
    elif isinstance(stage, Experiment):
        experiment_stage.hold(w)  # no live weight; its users stay while Ready (review8 R1)
    if weights_by_replicas and w.committed > 0:
        w.want = needed(replicas, w.committed)
    else:
        w.want = max(w.want, needed(replicas, w.committed), w.dep.replicas if w.dep else 0)
    if isinstance(stage, Shadow) and s.stage_since is not None:
        w.want = max(needed(replicas, stage.percent), 1 if stage.percent else 0, w.want)
        if w.ready_for(max(needed(replicas, stage.percent), 1)):
            w.mirror = stage.percent
    elif isinstance(stage, Preview):
        w.want, w.preview = replicas, True
        # At spec.replicas 0 the preview goes to 0 pods: no mirror (its Ready pods now
        # are going away in this very decision).
        if s.stage_since is not None and replicas > 0 and w.ready_for(replicas):
            w.mirror = stage.mirror
