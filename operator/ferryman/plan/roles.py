"""What each ModelVersion's status says about the Rollout that serves its model: its
``role``, ``rollout``, phase ``Serving``/``Retired``, ``servedFrom``/``servedUntil`` and
``lastOutcome``. A pure function of the Rollout's spec and status (as the reconcile
leaves it), the ModelVersions' current status and the clock, so the rule is unit-tested
and the handler only writes the patches it returns.

The rule:

- ``stable``: the Rollout's ``status.stableVersion``.
- the Rollout's ``status.candidateVersion`` next to a stable version, by the stage it is
  at (``plan.stages``; once the stages are done and promotion waits, by the last stage):
  ``shadow`` on a shadow stage (it gets only a mirrored copy of live traffic),
  ``preview`` on a blue-green preview (behind the preview Service, no live traffic until
  promotion), ``candidate`` otherwise (canary weight steps, pause steps). The first
  version of a Rollout has no stages: ``candidate`` until it becomes stable.
- ``none``: every other version. A version that stops being stable or candidate goes
  ``Serving`` -> ``Retired`` with ``servedUntil``; one that starts goes ``Serving`` with
  ``servedFrom`` (a previous stable kept warm for ``scaleDownDelaySeconds`` gets no
  traffic and is ``none``/``Retired``).
- ``lastOutcome``: the newest entry for the version in the Rollout's ``status.history``
  (Promoted, RolledBack, Aborted, Rejected, Superseded, Stopped, with its reason, cause,
  time, the failed measurement behind an analysis rollback, and the Rollout's name),
  written when it is newer than the one the ModelVersion has. A history entry that has
  fallen off the bounded history changes nothing.
- ``servingHistory``: every interval the version served, by ``plan.serving_history``.

An ``Invalid`` Rollout changes no ModelVersion (it may name versions it cannot serve);
a deleted Rollout (``status`` None) leaves each of its versions ``none``/``Retired``.
Duplicates are never touched (their status belongs to ``plan.registry``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from ferryman.api.modelversion import LastOutcome, ModelVersion, ModelVersionPhase, Role
from ferryman.api.rollout import HistoryEntry, RolloutPhase, RolloutSpec, RolloutStatus
from ferryman.plan.serving_history import history_patch
from ferryman.plan.stages import Preview, Shadow, Stop, stages


def candidate_role(spec: RolloutSpec, status: RolloutStatus) -> Role:
    """The role of ``status.candidateVersion`` (see the module docstring): shadow,
    preview or candidate, by the stage at ``status.currentStep``."""
    if status.stable_version is None:
        return Role.CANDIDATE
    plan = stages(spec)
    if not plan:
        return Role.CANDIDATE
    stage = plan[min(status.current_step or 0, len(plan) - 1)]
    if isinstance(stage, Shadow | Stop):
        return Role.SHADOW
    if isinstance(stage, Preview):
        return Role.PREVIEW
    return Role.CANDIDATE


def _last_entries(status: RolloutStatus | None) -> dict[str, HistoryEntry]:
    newest: dict[str, HistoryEntry] = {}
    for entry in (status.history or []) if status is not None else []:
        newest[entry.version] = entry  # history is oldest first
    return newest


def _outcome_patch(
    mv: ModelVersion, entry: HistoryEntry | None, rollout: str
) -> dict[str, Any] | None:
    if entry is None:
        return None
    have = mv.status.last_outcome
    want = LastOutcome(
        outcome=entry.outcome,
        reason=entry.reason,
        at=entry.at,
        cause=entry.cause,
        measurement=entry.measurement,
        rollout=rollout,
    )
    if have is not None:
        if have == want:
            return None
        if have.at is not None and have.at > entry.at:
            return None  # the ModelVersion knows a later ending (another Rollout's)
    out = want.model_dump(by_alias=True, mode="json", exclude_none=True)
    return out | {"at": entry.at.isoformat()}


def status_patches(
    rollout: str,
    spec: RolloutSpec,
    status: RolloutStatus | None,
    mvs: Iterable[ModelVersion],
    now: datetime,
) -> dict[str, dict[str, Any]]:
    """The status merge patch (camelCase keys, RFC 3339 times, None deletes) for each
    ModelVersion in ``mvs`` (of the Rollout named ``rollout``'s model, in its namespace)
    whose status differs from what the rule says, keyed by ModelVersion name; a
    ModelVersion already right has no entry. ``status`` None means the Rollout is gone."""
    if status is not None and status.phase == RolloutPhase.INVALID:
        return {}
    roles: dict[str, Role] = {}
    if status is not None:
        if status.candidate_version:
            roles[status.candidate_version] = candidate_role(spec, status)
        if status.stable_version:
            roles[status.stable_version] = Role.STABLE
    last = _last_entries(status)
    patches: dict[str, dict[str, Any]] = {}
    for mv in mvs:
        if mv.status.phase == ModelVersionPhase.DUPLICATE:
            continue
        role = roles.get(mv.spec.version, Role.NONE)
        serving_now = role != Role.NONE
        patch: dict[str, Any] = {}
        if mv.status.role != role:
            patch["role"] = role.value
        if serving_now and mv.status.rollout != rollout:
            patch["rollout"] = rollout
        if not serving_now and mv.status.rollout:
            patch["rollout"] = None
        if serving_now and mv.status.phase != ModelVersionPhase.SERVING:
            patch["phase"] = ModelVersionPhase.SERVING.value
            patch["servedFrom"] = now.isoformat()
            patch["servedUntil"] = None
        if not serving_now and mv.status.phase == ModelVersionPhase.SERVING:
            patch["phase"] = ModelVersionPhase.RETIRED.value
            patch["servedUntil"] = now.isoformat()
        outcome = _outcome_patch(mv, last.get(mv.spec.version), rollout)
        if outcome is not None:
            patch["lastOutcome"] = outcome
        patch.update(history_patch(mv, rollout, role, status, now))
        if patch:
            patches[mv.metadata.name] = patch
    return patches
