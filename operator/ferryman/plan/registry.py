"""The registry rules of ModelVersions, as pure functions.

- Uniqueness: model + version is unique per namespace. When two ModelVersions claim the
  same pair, the one created first keeps it (ties broken by name, so every observer
  agrees); any other is ``Duplicate`` and never served. The first one is unaffected by a
  later duplicate, and when it is deleted the oldest remaining one takes over.
- Deletion: a ModelVersion that a Rollout serves (its stable or candidate version, or the
  previous stable while a bake can still return traffic to it) cannot disappear under
  live traffic: deletion waits, with a condition naming the Rollout.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ferryman.api.common import ConditionStatus
from ferryman.api.modelversion import ModelVersionPhase, ModelVersionStatus
from ferryman.api.rollout import RolloutPhase, RolloutStatus
from ferryman.plan.conditions import find, set_condition

REGISTERED = "Registered"
DELETION_BLOCKED = "DeletionBlocked"


@dataclass(frozen=True)
class Registration:
    """What the operator keeps in memory (a kopf index) about one ModelVersion."""

    name: str
    namespace: str
    uid: str
    model: str
    version: str
    created: datetime | None
    generation: int
    deleting: bool = False
    status: ModelVersionStatus = field(default_factory=lambda: ModelVersionStatus())

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.namespace, self.model, self.version)


def original(claims: Iterable[Registration]) -> Registration | None:
    """The ModelVersion that owns a model+version: the oldest one not being deleted."""
    alive = [c for c in claims if not c.deleting]
    if not alive:
        return None
    return min(alive, key=lambda c: (c.created is None, c.created or datetime.min, c.name))


def desired_status(
    mv: Registration, claims: Iterable[Registration], *, now: datetime
) -> dict[str, Any] | None:
    """The status merge patch that registers ``mv`` (or marks it Duplicate), or ``None``
    when its status already says so. ``claims`` are all ModelVersions with the same
    namespace, model and version, ``mv`` included or not."""
    if mv.deleting:
        return None
    owner = original([*(c for c in claims if c.name != mv.name), mv])
    assert owner is not None
    status = mv.status
    if owner.name != mv.name:
        phase = ModelVersionPhase.DUPLICATE
        cond_status, reason = ConditionStatus.FALSE, "Duplicate"
        message = (
            f"model {mv.model} version {mv.version} is already registered by ModelVersion "
            f"{owner.name}; this one is never served"
        )
    else:
        # Serving/Retired are the Rollout's to set; registration keeps them.
        keep = status.phase in (ModelVersionPhase.SERVING, ModelVersionPhase.RETIRED)
        phase = status.phase if keep and status.phase else ModelVersionPhase.REGISTERED
        cond_status, reason = ConditionStatus.TRUE, REGISTERED
        message = f"model {mv.model} version {mv.version} registered"
    current = find(status.conditions, REGISTERED)
    if (
        status.phase == phase
        and status.observed_generation == mv.generation
        and current is not None
        and (current.status, current.reason, current.message) == (cond_status, reason, message)
    ):
        return None
    conditions = set_condition(
        status.conditions,
        type=REGISTERED,
        status=cond_status,
        reason=reason,
        message=message,
        generation=mv.generation,
        now=now,
    )
    return {
        "phase": phase.value,
        "observedGeneration": mv.generation,
        "conditions": [c.model_dump(by_alias=True, mode="json") for c in conditions],
    }


@dataclass(frozen=True)
class ServedBy:
    """What the operator keeps in memory (a kopf index) about one Rollout."""

    rollout: str
    namespace: str
    model: str
    versions: frozenset[str]
    created: datetime | None = None


def served_versions(status: RolloutStatus) -> frozenset[str]:
    """Versions a Rollout with this status may route traffic to right now."""
    versions = {v for v in (status.stable_version, status.candidate_version) if v}
    if status.phase == RolloutPhase.BAKING and status.previous_stable_version:
        versions.add(status.previous_stable_version)
    return frozenset(versions)


def deletion_blocker(mv: Registration, rollouts: Iterable[ServedBy]) -> str | None:
    """The Rollout that keeps ``mv`` from being deleted, if any."""
    for r in rollouts:
        if r.namespace == mv.namespace and r.model == mv.model and mv.version in r.versions:
            return r.rollout
    return None


def deletion_blocked_status(mv: Registration, rollout: str, *, now: datetime) -> dict[str, Any]:
    conditions = set_condition(
        mv.status.conditions,
        type=DELETION_BLOCKED,
        status=ConditionStatus.TRUE,
        reason="ServedByRollout",
        message=f"deletion waits: Rollout {rollout} still serves version {mv.version}",
        generation=mv.generation,
        now=now,
    )
    return {"conditions": [c.model_dump(by_alias=True, mode="json") for c in conditions]}
