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
