"""Which user action applies in which phase. The operator applies each action exactly
once (the annotation carries a nonce, and the handled id is recorded in status); the CLI
checks applicability first so a user gets a clear error instead of a rejected action."""

from __future__ import annotations

from ferryman.api.rollout import RolloutPhase, RolloutStatus

ACTIONS: dict[str, frozenset[RolloutPhase]] = {
    "promote": frozenset({RolloutPhase.PROGRESSING, RolloutPhase.PAUSED}),
    "promote-full": frozenset({RolloutPhase.PROGRESSING, RolloutPhase.PAUSED}),
    "abort": frozenset({RolloutPhase.PROGRESSING, RolloutPhase.PAUSED, RolloutPhase.BAKING}),
    "retry": frozenset({RolloutPhase.ROLLED_BACK, RolloutPhase.ABORTED, RolloutPhase.REJECTED}),
    "undo": frozenset({RolloutPhase.HEALTHY}),
}


def refusal(action: str, status: RolloutStatus) -> str | None:
    """Why ``action`` does not apply now, or None when it does."""
    phases = ACTIONS[action]
    phase = status.phase
    if phase not in phases:
        allowed = ", ".join(sorted(p.value for p in phases))
        return (
            f"{action} does not apply in phase {phase.value if phase else 'Pending'} "
            f"(it applies in: {allowed})"
        )
    if action == "undo" and not status.previous_stable_version:
        return "undo needs a previous stable version; this Rollout has none"
    return None
