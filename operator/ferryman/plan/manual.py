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
  before and during the manual pause does not count).
- ``promote`` (and ``promote --full``) on a manual pause clears it and advances a step
  (or to promotion), exactly as on a pause step; ``abort`` rolls back.

Pure: no I/O; the clock is an input.
"""

from __future__ import annotations

from datetime import datetime

from ferryman.api.rollout import PauseReason, PauseStatus, RolloutStatus
from ferryman.plan.actions import ActionName
from ferryman.plan.decision import Action, Event


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
        if s.stage_since is not None:
            s.stage_since = now
        events.append(Event("Normal", "Resumed", f"resumed by user at step {step}"))
