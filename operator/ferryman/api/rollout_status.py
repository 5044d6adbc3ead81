"""``status`` of a Rollout, written by ferryman only: the phase and message, the versions
and position in the plan, weights, analysis counters and measurements, history with
structured outcomes and causes, and the verdict on the last user action. A module of
its own because the status grows with every feature and is bounded field by field
(``rollout_limits``).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field

from ferryman.api.approval import ApprovalStatus
from ferryman.api.common import ApiModel, Conditions, ShortStr, bounded_text, newest_items
from ferryman.api.older_history import OlderHistory
from ferryman.api.rollout_experiment import ExperimentClock, ExperimentStatus
from ferryman.api.rollout_limits import (
    MAX_ACTION_ID,
    MAX_ACTION_MESSAGE,
    MAX_ACTION_NAME,
    MAX_HISTORY,
    MAX_MEASUREMENT_MESSAGE,
    MAX_MEASUREMENTS,
    MAX_MESSAGE,
    MAX_METRIC_NAME,
    MAX_METRICS,
    MAX_QUERY,
    MAX_REASON,
    MAX_REPLICAS,
    MAX_SELECTOR,
    MAX_STEPS,
    MAX_THRESHOLD,
)
from ferryman.api.rollout_notifications import NotificationsStatus


def action_key(action_id: str) -> str:
    """What ``status.handledActionId`` records for the nonce ``action_id`` (the
    ``ferryman.dev/action-id`` annotation, any length a user writes): the id itself when
    it fits in ``MAX_ACTION_ID`` characters, else ``sha256:`` and its hex digest, so a long
    nonce is still handled exactly once and never makes the status write fail."""
    if len(action_id) <= MAX_ACTION_ID:
        return action_id
    return "sha256:" + hashlib.sha256(action_id.encode()).hexdigest()


class RolloutPhase(StrEnum):
    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    BAKING = "Baking"
    ROLLED_BACK = "RolledBack"
    ABORTED = "Aborted"
    REJECTED = "Rejected"
    INVALID = "Invalid"


class PauseReason(StrEnum):
    STEP = "Step"
    MANUAL = "Manual"
    INCONCLUSIVE = "Inconclusive"
    ANALYSIS_ERROR = "AnalysisError"
    AWAITING_APPROVAL = "AwaitingApproval"


class PauseStatus(ApiModel):
    """Why the rollout waits."""

    reason: PauseReason = Field(
        description="Step, Manual, Inconclusive, AnalysisError or AwaitingApproval."
    )
    since: datetime | None = Field(None, description="When the pause began.")
    message: Annotated[str, bounded_text(1024)] = Field("", max_length=1024, description="Details.")


class Weights(ApiModel):
    """Traffic as read back from the route."""

    stable: int = Field(100, ge=0, le=100, description="Percent to the stable version.")
    candidate: int = Field(0, ge=0, le=100, description="Percent to the candidate.")
    mirror_percent: int = Field(
        0, ge=0, le=100, description="Percent of traffic mirrored to the candidate."
    )


class Verdict(StrEnum):
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"
    ERROR = "Error"


class Measurement(ApiModel):
    """One evaluated measurement of one metric."""

    metric: Annotated[str, bounded_text(MAX_METRIC_NAME)] = Field(max_length=MAX_METRIC_NAME)
    query: Annotated[str, bounded_text(MAX_QUERY)] = Field(
        "",
        max_length=MAX_QUERY,
        description="The rendered query (shortened with a marker when longer; the full "
        "query is the one in spec.analysis).",
    )
    value: float | None = None
    stable_value: float | None = None
    threshold: Annotated[str, bounded_text(MAX_THRESHOLD)] = Field(
        "", max_length=MAX_THRESHOLD, description="The threshold it was judged by."
    )
    verdict: Verdict
    message: Annotated[str, bounded_text(MAX_MEASUREMENT_MESSAGE)] = Field(
        "", max_length=MAX_MEASUREMENT_MESSAGE
    )
    at: datetime


class AnalysisStatus(ApiModel):
    """Counters for the current candidate (reset on a new target and on retry)."""

    failures: dict[str, int] | None = Field(
        None, max_length=MAX_METRICS, description="Failed measurements per metric."
    )
    inconclusive: int = 0
    consecutive_errors: int = 0
    next_measurement_at: datetime | None = None
    since: datetime | None = Field(
        None,
        description="The last weight change: measurements from then on are the evidence "
        "the next weight increase or promotion needs.",
    )
    measurements: Annotated[list[Measurement] | None, newest_items(MAX_MEASUREMENTS)] = Field(
        None, max_length=MAX_MEASUREMENTS, description="The latest measurements, newest last."
    )


class HistoryOutcome(StrEnum):
    """How one candidate's rollout ended (metrics count by this, never by reason text)."""

    PROMOTED = "Promoted"  # made stable
    ROLLED_BACK = "RolledBack"  # traffic returned to stable by ferryman, or by undo
    ABORTED = "Aborted"  # traffic returned to stable by `kubectl ferryman abort`
    REJECTED = "Rejected"  # refused by gates before any traffic
    SUPERSEDED = "Superseded"  # a new target replaced it mid-rollout (routine GitOps)
    STOPPED = "Stopped"  # shadow with then: stop completed; stable untouched


class HistoryCause(StrEnum):
    """What caused a RolledBack or Aborted outcome (or an abTest's Stopped one)."""

    ANALYSIS = "Analysis"  # a metric failed beyond failureLimit while rolling out
    BAKE_ANALYSIS = "BakeAnalysis"  # a metric failed beyond failureLimit while baking
    PROGRESS_DEADLINE = "ProgressDeadline"  # not Ready within progressDeadlineSeconds
    # the storage initializer failed for a reason no retry changes (plan.pod_failures)
    ARTIFACT_FAILED = "ArtifactFailed"
    USER = "User"  # `kubectl ferryman abort`
    UNDO = "Undo"  # `kubectl ferryman undo`
    # the abTest's verdict (plan.experiment_stage): stable wins (RolledBack), or no
    # difference / report only (Stopped)
    EXPERIMENT = "Experiment"


class HistoryEntry(ApiModel):
    """How one candidate's rollout ended."""

    version: Annotated[str, bounded_text(128)] = Field(max_length=128)
    outcome: HistoryOutcome = Field(
        description="Promoted, RolledBack, Aborted, Rejected, Superseded or Stopped."
    )
    cause: HistoryCause | None = Field(
        None,
        description="For RolledBack and Aborted: Analysis, BakeAnalysis, ProgressDeadline, "
        "ArtifactFailed, User or Undo.",
    )
    at: datetime
    reason: Annotated[str, bounded_text(MAX_REASON)] = Field(
        "",
        max_length=MAX_REASON,
        description="Why, in words (shortened with a marker when longer).",
    )
    measurement: Measurement | None = Field(
        None,
        description="For a rollback by analysis: the failed measurement that caused it "
        "(its query and message shortened).",
    )


class ActionResult(StrEnum):
    APPLIED = "Applied"
    REJECTED = "Rejected"


class LastAction(ApiModel):
    """The operator's verdict on the last user action it handled (its nonce, from the
    ferryman.dev/action-id annotation); `kubectl ferryman` waits for it."""

    id: str = Field(max_length=MAX_ACTION_ID, description="The action's ferryman.dev/action-id.")
    action: str = Field(
        max_length=MAX_ACTION_NAME,
        description="promote, promote-full, abort, retry, undo, pause, resume.",
    )
    result: ActionResult = Field(description="Applied or Rejected.")
    message: Annotated[str, bounded_text(MAX_ACTION_MESSAGE)] = Field(
        "", max_length=MAX_ACTION_MESSAGE, description="Why it was rejected, or what it did."
    )
    at: datetime | None = Field(None, description="When the operator decided.")


class RolloutStatus(ApiModel):
    """Written by ferryman only."""

    phase: RolloutPhase | None = None
    message: Annotated[str | None, bounded_text(MAX_MESSAGE)] = Field(None, max_length=MAX_MESSAGE)
    pause: PauseStatus | None = None
    stable_version: str | None = Field(None, max_length=128)
    candidate_version: str | None = Field(None, max_length=128)
    previous_stable_version: str | None = Field(None, max_length=128)
    # Stages: a shadow stage and up to MAX_STEPS canary steps; the index reaches their
    # count once all are done.
    current_step: int | None = Field(None, ge=0, le=MAX_STEPS + 1)
    canary_weight: int | None = Field(
        None,
        ge=0,
        le=100,
        description="The candidate weight the canary steps have reached; the route carries "
        "less while candidate pods are not Ready.",
    )
    step_started_at: datetime | None = Field(
        None,
        description="When the current step started (for progressDeadlineSeconds); unset "
        "while spec.replicas is 0 (the deadline stops), set again at the scale-up.",
    )
    stage_since: datetime | None = Field(
        None,
        description="When the timed part of the current step began (shadow mirroring, "
        "a Ready blue-green preview).",
    )
    scale_down_at: datetime | None = Field(
        None, description="When the previous stable version's Deployment is removed."
    )
    plan_hash: str | None = Field(
        None,
        max_length=32,
        description="Fingerprint of the plan (strategy kind and its steps) the candidate "
        "follows. When the spec's plan differs mid-rollout, the new plan starts from its "
        "first step (see docs/rollouts.md, Spec edits mid-rollout).",
    )
    analysis_hash: str | None = Field(
        None,
        max_length=32,
        description="Fingerprint of the analysis (metrics, thresholds, provider) the "
        "evidence since the last weight change was measured under; a change needs new "
        "evidence before the next weight increase or promotion.",
    )
    weights: Weights | None = None
    analysis: AnalysisStatus | None = None
    approval: ApprovalStatus | None = Field(
        None, description="Approvals counted for the candidate (spec.gates.approvals)."
    )
    experiment: ExperimentStatus | None = Field(
        None,
        description="The abTest's verdict at its last look (reset on a new target and on "
        "retry, like analysis).",
    )
    experiment_clock: ExperimentClock | None = Field(
        None, description="The abTest's held time: its duration counts only time not held."
    )
    rolled_back_versions: Annotated[list[ShortStr] | None, newest_items(MAX_HISTORY)] = Field(
        None, max_length=MAX_HISTORY, description="Versions rolled back, newest last."
    )
    history: Annotated[list[HistoryEntry] | None, newest_items(MAX_HISTORY)] = Field(
        None, max_length=MAX_HISTORY
    )
    older_history: OlderHistory | None = Field(
        None,
        description="The entries that fell off status.history (spec.historyLimit), "
        "summarized: how many, when, and how they ended.",
    )
    handled_action_id: str | None = Field(
        None,
        max_length=MAX_ACTION_ID,
        description="ferryman.dev/action-id of the last handled action (a sha256 digest "
        "when the id is longer).",
    )
    last_action: LastAction | None = Field(
        None, description="The verdict on the last handled action: Applied or Rejected, why."
    )
    notifications: NotificationsStatus | None = Field(
        None, description="Webhook delivery per endpoint (written by the notifier only)."
    )
    conditions: Conditions | None = None
    observed_generation: int | None = None
    # The scale subresource (docs/autoscaling.md): what an HPA, a KEDA ScaledObject and
    # `kubectl scale` read next to spec.replicas.
    replicas: int | None = Field(
        None,
        ge=0,
        description="The scale subresource's statusReplicasPath: Ready pods of the versions "
        "that carry live traffic (the stable, and the candidate while it has weight), as "
        "last observed; blue-green previews, shadows and a warm previous stable are not "
        "counted.",
    )
    selector: str | None = Field(
        None,
        max_length=MAX_SELECTOR,
        description="The scale subresource's labelSelectorPath: a label selector (string "
        "form, as an HPA parses it) matching the pods status.replicas counts, e.g. "
        "ferryman.dev/rollout=fraud,ferryman.dev/version in (1.0.0,1.1.0).",
    )
    capacity_replicas: int | None = Field(
        None,
        ge=0,
        le=MAX_REPLICAS,
        description="The spec.replicas the candidate's Ready replicas last carried its "
        "weight (canary) or its preview (blue-green) at. While spec.replicas grows past it "
        "(an autoscaler), the candidate keeps that weight with the replicas that carried "
        "it, and new replicas come up for both versions; the next step or a promotion "
        "needs Ready replicas for spec.replicas itself. 0 after spec.replicas 0 (no pod "
        "carried it): back from zero the weight is held against the stable's Ready "
        "replicas, and a preview needs spec.replicas Ready replicas.",
    )
