"""Analysis as the state machine sees it: when a round of analysis runs and on what
(``analysis_target``), whether there is evidence for the next weight increase or
promotion (``has_evidence``, measured since the last weight change that
``mark_weight_change`` records), and when inconclusive or failing measurements hold the
rollout (``analysis_hold``). Its own module so the rule "never without evidence" reads
in one place, apart from the stage loop that applies it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ferryman.analysis import evaluate
from ferryman.api.rollout import (
    AnalysisStatus,
    PauseReason,
    PauseStatus,
    RolloutPhase,
    RolloutSpec,
    RolloutStatus,
)
from ferryman.plan.decision import Decision
from ferryman.plan.stages import Experiment, Preview, Shadow, Stage


@dataclass(frozen=True)
class AnalysisTarget:
    """What a round of analysis measures: ``version`` (and ``stable`` for relative
    thresholds, when ``relative``)."""

    version: str
    stable: str | None
    relative: bool


def analysis_target(spec: RolloutSpec, status: RolloutStatus) -> AnalysisTarget | None:
    """Analysis runs while a candidate receives live or mirrored traffic (progressing,
    paused at a step or for analysis) and while baking; otherwise it costs nothing."""
    if spec.analysis is None:
        return None
    if status.phase == RolloutPhase.BAKING and status.stable_version:
        # The previous stable gets no traffic while baking: nothing to compare with.
        return AnalysisTarget(status.stable_version, status.previous_stable_version, False)
    w = status.weights
    live = w is not None and (w.candidate > 0 or w.mirror_percent > 0)
    # An A/B test's candidate serves its users whatever the weights say, from the start
    # of its stage (plan.experiment_stage) to its promotion; not while its pods come up.
    ab = spec.strategy.ab_test is not None
    live = live or (ab and (status.stage_since is not None or (status.current_step or 0) > 0))
    if (
        status.phase in (RolloutPhase.PROGRESSING, RolloutPhase.PAUSED)
        and live
        and status.candidate_version
        and status.stable_version
    ):
        return AnalysisTarget(status.candidate_version, status.stable_version, True)
    return None


def mark_weight_change(spec: RolloutSpec, s: RolloutStatus, now: datetime) -> None:
    """Measurements taken from now on are the evidence for the next step."""
    if spec.analysis is not None:
        if s.analysis is None:
            s.analysis = AnalysisStatus()
        s.analysis.since = now


def analysis_hold(s: RolloutStatus, analysis: Any, now: datetime) -> PauseStatus | None:
    """Pause (not roll back) when measurements are inconclusive or failing to run."""
    a = s.analysis
    assert a is not None
    if a.consecutive_errors > analysis.consecutive_error_limit:
        reason, text = (
            PauseReason.ANALYSIS_ERROR,
            (
                f"analysis: {a.consecutive_errors} consecutive rounds with errors (limit "
                f"{analysis.consecutive_error_limit}); resumes when measurements succeed"
            ),
        )
    elif a.inconclusive > analysis.inconclusive_limit:
        reason, text = (
            PauseReason.INCONCLUSIVE,
            (
                f"analysis: {a.inconclusive} inconclusive rounds (limit "
                f"{analysis.inconclusive_limit}); resumes when measurements succeed"
            ),
        )
    else:
        return None
    since = s.pause.since if s.pause is not None and s.pause.reason == reason else now
    return PauseStatus(reason=reason, since=since, message=text)


def had_traffic(plan: list[Stage], i: int, committed: int) -> bool:
    """Whether the candidate has had live or mirrored traffic by stage ``i``: from the
    plan itself, never from an observation that could lag or be lost."""
    if committed > 0:
        return True
    for stage in plan[: i + 1]:
        if isinstance(stage, Shadow) and stage.percent > 0:
            return True
        if isinstance(stage, Preview) and stage.mirror > 0:
            return True
        if isinstance(stage, Experiment):
            return True
    return False


def has_evidence(spec: RolloutSpec, s: RolloutStatus, had_traffic: bool) -> bool:
    """Before each weight increase and before promotion, every metric needs a Successful
    measurement since the last weight change. With no traffic on the candidate yet there
    is nothing to measure, so that step needs none (analysis continues afterwards)."""
    if spec.analysis is None or not had_traffic:
        return True
    since = s.analysis.since if s.analysis else None
    return evaluate.has_evidence(s.analysis, spec.analysis, since)


def wake_for_measurement(s: RolloutStatus, now: datetime, d: Decision) -> None:
    due = s.analysis.next_measurement_at if s.analysis else None
    d.wake_in((due - now).total_seconds() if due else 1.0)
