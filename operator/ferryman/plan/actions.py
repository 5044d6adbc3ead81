"""Which user action applies when: the one rule the CLI and the operator both ask.

A user action (``kubectl ferryman promote|promote-full|abort|retry|undo|pause|resume``)
arrives as an annotation with a nonce. ``kubectl ferryman`` asks ``refusal`` before it
sends one, so a user gets a clear error at once; the state machine asks the same function
when the action arrives, because the Rollout may have moved on in between. Either way the
answer for an action that does not apply is a sentence naming why, never a silent no-op:
the operator records its verdict for the action's nonce in ``status.lastAction``
(``Applied`` or ``Rejected`` with that sentence), and the CLI waits for it and exits 1 on
``Rejected``.

The rule, per action:

- ``promote``, ``promote-full``: phase ``Progressing`` or ``Paused``, with a candidate
  rolling out next to a stable version (the first version of a Rollout has no steps),
  and not awaiting approvals (pause reason ``AwaitingApproval``: only approvals pass it).
- ``abort``: phase ``Progressing`` or ``Paused`` with a candidate rolling out next to a
  stable version, or ``Baking`` with a previous stable version to return to that is warm
  (as for undo: an abort is applied at once or refused, never left half done).
- ``retry``: phase ``RolledBack``, ``Aborted`` or ``Rejected``, with a history entry (the
  version to retry).
- ``pause``: phase ``Progressing`` or ``Paused`` with a candidate rolling out next to a
  stable version, not already paused by a user (pause reason ``Manual``).
- ``resume``: phase ``Paused`` with pause reason ``Manual`` (a candidate rolling out next
  to a stable version).
- ``undo``: phase ``Healthy`` with no candidate, a previous stable version, and that
  version still warm: its Deployment scaled to ``spec.replicas`` with that many Ready
  replicas (within ``scaleDownDelaySeconds``).

Warmth is not in the status: the caller reads the previous stable version's Deployment
(the operator from its index, the CLI through the API) and passes ``previous_warm``.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from ferryman.api.rollout import PauseReason, RolloutPhase, RolloutStatus


class ActionName(StrEnum):
    PROMOTE = "promote"
    PROMOTE_FULL = "promote-full"
    ABORT = "abort"
    RETRY = "retry"
    UNDO = "undo"
    PAUSE = "pause"
    RESUME = "resume"


PHASES: dict[ActionName, frozenset[RolloutPhase]] = {
    ActionName.PROMOTE: frozenset({RolloutPhase.PROGRESSING, RolloutPhase.PAUSED}),
    ActionName.PROMOTE_FULL: frozenset({RolloutPhase.PROGRESSING, RolloutPhase.PAUSED}),
    ActionName.ABORT: frozenset(
        {RolloutPhase.PROGRESSING, RolloutPhase.PAUSED, RolloutPhase.BAKING}
    ),
    ActionName.RETRY: frozenset(
        {RolloutPhase.ROLLED_BACK, RolloutPhase.ABORTED, RolloutPhase.REJECTED}
    ),
    ActionName.UNDO: frozenset({RolloutPhase.HEALTHY}),
    ActionName.PAUSE: frozenset({RolloutPhase.PROGRESSING, RolloutPhase.PAUSED}),
    ActionName.RESUME: frozenset({RolloutPhase.PAUSED}),
}


def deployment_readiness(deployment: Mapping[str, Any]) -> tuple[int, int]:
    """(replicas asked for, replicas surely Ready) of a Deployment object as the API
    returns it. While the controller has not seen the latest spec, only updated replicas
    count as Ready."""
    meta, spec, st = (deployment.get(k) or {} for k in ("metadata", "spec", "status"))
    available = int(st.get("availableReplicas") or 0)
    if int(st.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        available = min(available, int(st.get("updatedReplicas") or 0))
    return int(spec.get("replicas") or 0), available


def previous_warm(*, replicas: int, scaled_to: int | None, available: int) -> bool:
    """Whether the previous stable version can take all traffic at once: its Deployment
    (``scaled_to`` replicas, None when it has none) is at ``replicas`` with as many Ready."""
    return scaled_to is not None and scaled_to >= replicas and available >= replicas


def refusal(action: str, status: RolloutStatus, *, previous_warm: bool) -> str | None:
    """Why ``action`` does not apply to a Rollout with ``status``, or None when it does.

    ``previous_warm`` matters only for undo (see ``previous_warm()``). An unknown action
    name is refused too (the annotation is free text)."""
    try:
        name = ActionName(action)
    except ValueError:
        known = ", ".join(a.value for a in ActionName)
        return f"unknown action {action!r} (known: {known})"
    phases = PHASES[name]
    phase = status.phase
    if phase not in phases:
        allowed = ", ".join(sorted(p.value for p in phases))
        return (
            f"{name} does not apply in phase {phase.value if phase else 'Pending'} "
            f"(it applies in: {allowed})"
        )
    if name in (
        ActionName.PROMOTE,
        ActionName.PROMOTE_FULL,
        ActionName.PAUSE,
        ActionName.RESUME,
    ) and not (status.candidate_version and status.stable_version):
        return f"{name} needs a candidate rolling out next to a stable version; there is none"
    manual = status.pause is not None and status.pause.reason == PauseReason.MANUAL
    approval = status.pause is not None and status.pause.reason == PauseReason.AWAITING_APPROVAL
    if name in (ActionName.PROMOTE, ActionName.PROMOTE_FULL) and approval:
        return (
            "the Rollout awaits approvals (pause reason AwaitingApproval); promote cannot "
            "pass an approval gate: `kubectl ferryman approve` (docs/approvals.md)"
        )
    if name == ActionName.PAUSE and manual:
        return "the Rollout is already paused by a user (pause reason Manual); resume continues it"
    if name == ActionName.RESUME and not manual:
        reason = status.pause.reason.value if status.pause else "none"
        return (
            f"resume continues a manual pause (`kubectl ferryman pause`); this pause's reason "
            f"is {reason}" + (": promote passes a pause step" if reason == "Step" else "")
        )
    if name == ActionName.ABORT and phase == RolloutPhase.BAKING:
        if not status.previous_stable_version:
            return "abort during bake needs a previous stable version to return to; there is none"
        if not previous_warm:
            return (
                f"abort during bake needs the previous stable version "
                f"{status.previous_stable_version} warm and Ready to return traffic to; "
                "it is not"
            )
    elif name == ActionName.ABORT and not (status.candidate_version and status.stable_version):
        return "abort needs a candidate rolling out next to a stable version; there is none"
    if name == ActionName.RETRY and not status.history and not status.rolled_back_versions:
        return "retry needs a rolled-back, aborted or rejected version in the history; none"
    if name == ActionName.UNDO:
        if status.candidate_version:
            return (
                f"undo needs a settled Rollout; candidate {status.candidate_version} is in flight"
            )
        if not status.previous_stable_version:
            return "undo needs a previous stable version; this Rollout has none"
        if not previous_warm:
            return (
                f"undo needs the previous stable version {status.previous_stable_version} "
                "still warm and Ready (within scaleDownDelaySeconds); it is not, so traffic "
                "stays on the current stable version"
            )
    return None


def superseded(action: str, candidate: str, target: str) -> str:
    """The verdict on an action that arrived as a new target replaced its candidate."""
    return f"{action} not applied: candidate {candidate} was superseded by target {target}"


def overtaken(action: str, phase: RolloutPhase | None, message: str | None) -> str:
    """The verdict on an action the Rollout moved past before it could apply (a spec
    change arrived with it)."""
    where = phase.value if phase else "Pending"
    return f"{action} not applied: the Rollout is now {where}" + (
        f" ({message})" if message else ""
    )
