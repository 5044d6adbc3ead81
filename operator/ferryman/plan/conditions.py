"""Kubernetes-style conditions, kept the way the API conventions ask: one entry per
type, ``lastTransitionTime`` moves only when ``status`` changes, and the
``observedGeneration`` says which spec the condition describes."""

from __future__ import annotations

from datetime import datetime

from ferryman.api.common import Condition, ConditionStatus


def set_condition(
    conditions: list[Condition] | None,
    *,
    type: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> list[Condition]:
    """A new list with the condition of ``type`` set; other types are kept as they are."""
    existing = {c.type: c for c in conditions or []}
    old = existing.get(type)
    changed_status = old is None or old.status != status
    existing[type] = Condition(
        type=type,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=now if changed_status or old is None else old.last_transition_time,
        observed_generation=generation,
    )
    return list(existing.values())


def find(conditions: list[Condition] | None, type: str) -> Condition | None:
    return next((c for c in conditions or [] if c.type == type), None)


# The standard conditions of a Rollout (types and reasons as constants; every reason a
# health check or a pipeline may read is one of these). Meanings (docs/rollouts.md, "What
# status tells"):
#   Available    the stable version has the Ready replicas its share of traffic needs
#                (Deployment semantics; set by plan.availability once a stable version exists).
#   Ready        the spec's target is stable at 100% with no rollback pending (kstatus'
#                "Current"): `kubectl wait --for=condition=Ready` ends a pipeline step.
#   Progressing  the operator is moving traffic (rolling out, or baking a promotion).
#   Paused       the rollout waits; the reason is the pause reason.
#   Reconciling  kstatus: True while ferryman is still working towards the target.
#   Stalled      kstatus: True when it cannot progress on its own (RolledBack, Aborted,
#                Rejected, Invalid) until the spec or a user action changes something.
AVAILABLE = "Available"
READY = "Ready"
PROGRESSING = "Progressing"
PAUSED = "Paused"
RECONCILING = "Reconciling"
STALLED = "Stalled"
STANDARD_TYPES = (AVAILABLE, READY, PROGRESSING, PAUSED, RECONCILING, STALLED)

# Available
REASON_STABLE_READY = "StableReady"
REASON_STABLE_NOT_READY = "StableNotReady"
# Ready (True)
REASON_TARGET_STABLE = "TargetStable"
REASON_SHADOW_STOPPED = "ShadowStopped"
REASON_EXPERIMENT_ENDED = "ExperimentEnded"  # an abTest ended keeping the stable
# Ready, Progressing, Reconciling, Stalled (False or True): the phase, named as it is
# (Pending before the first status), so a reason never needs a lookup table.
REASON_PENDING = "Pending"
# Paused (False)
REASON_NOT_PAUSED = "NotPaused"
# Progressing (True): a decision held on a lagging index, again and again (handlers.holds)
REASON_HELD = "Held"


def rollout_conditions(
    conds: list[Condition] | None,
    *,
    phase: str | None,
    pause_reason: str | None,
    candidate: str | None,
    stopped: bool,
    experiment: bool = False,
    message: str,
    generation: int,
    now: datetime,
) -> list[Condition]:
    """``conds`` with Ready, Progressing, Paused, Reconciling and Stalled set from a
    Rollout's decided status (``phase`` a RolloutPhase value or None before the first
    status; ``pause_reason`` a PauseReason value while Paused; ``candidate`` the version
    in flight; ``stopped`` when the last history entry is a shadow ``then: stop``, or with
    ``experiment`` an abTest that ended keeping the stable).
    Available is read, not set: Ready needs it not False. Pure."""
    p = phase or REASON_PENDING
    available = find(conds, AVAILABLE)
    stable_ok = available is None or available.status != ConditionStatus.FALSE
    settled = p == "Healthy" and candidate is None
    ready = settled and stable_ok
    if ready:
        ready_reason = (
            (REASON_EXPERIMENT_ENDED if experiment else REASON_SHADOW_STOPPED)
            if stopped
            else REASON_TARGET_STABLE
        )
    elif settled:
        ready_reason = REASON_STABLE_NOT_READY
    else:
        ready_reason = p
    working = p in ("Progressing", "Paused", "Baking", REASON_PENDING)
    stalled = p in ("RolledBack", "Aborted", "Rejected", "Invalid")
    paused = p == "Paused"

    def tf(value: bool) -> ConditionStatus:
        return ConditionStatus.TRUE if value else ConditionStatus.FALSE

    out = conds
    for type_, status, reason in (
        (READY, tf(ready), ready_reason),
        (PROGRESSING, tf(p in ("Progressing", "Baking", REASON_PENDING)), p),
        (PAUSED, tf(paused), (pause_reason or p) if paused else REASON_NOT_PAUSED),
        (RECONCILING, tf(working), p),
        (STALLED, tf(stalled), p),
    ):
        out = set_condition(
            out,
            type=type_,
            status=status,
            reason=reason,
            message=message,
            generation=generation,
            now=now,
        )
    return out or []
