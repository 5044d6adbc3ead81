"""Retention (issue 17 §5): which of a model's ModelVersions a Rollout's
``spec.retention`` keeps, and what happens to each of the others. Pure: the ModelVersions
as the index holds them, the Rollout's spec and status (as the reconcile leaves it) and
the clock in, a ``Plan`` out; ``handlers.retention`` writes it.

A ModelVersion is kept, first reason wins:
1. ``stable``, ``candidate``, ``target`` (the version spec.target names, or the one
   ``track: latest`` resolves to, as ``plan.machine.resolve_target`` does: Git asks for
   it, and the Rollout may not have started on it yet), ``warm`` (the previous stable
   while it is kept warm: ``scaleDownAt`` ahead, or baking), ``serving`` (its status
   says a Rollout serves it), ``deployed`` (a Deployment of ferryman's named after it
   exists: one ``deletionPolicy: KeepStable`` left serving after its Rollout was
   deleted, which no status names any more, or one being created or cleaned up while
   the statuses catch up);
2. ``pinned``: annotated ``ferryman.dev/pin`` (any value but ``false``);
3. ``newest``: among the ``keepLast`` newest by registration order: creation time, ties
   (the API server stamps whole seconds) by semantic version, then name;
4. ``recent``: served (by any Rollout) within the last ``keepServedWithinDays`` days.
Every other one expires. One a GitOps tool tracks (``api.rollout_retention``'s
annotations and labels) is only marked: deleting it would have the tool re-create it at
the next sync, so an Event asks for its removal from Git. The others are deleted when
``retention.delete`` is true, else marked. Marked: phase ``Retired`` and condition
``Expired`` (True). A marked one that is kept again (pinned, targeted, newly served) gets
``Expired`` False (and ``Registered`` back if it never served), as does every marked one
once ``spec.retention`` is removed. Duplicates and ModelVersions being deleted are left
alone and not counted.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from ferryman.api.common import ConditionStatus
from ferryman.api.modelversion import ModelVersion, ModelVersionPhase
from ferryman.api.rollout import RolloutPhase, RolloutSpec, RolloutStatus
from ferryman.api.rollout_retention import GITOPS_ANNOTATIONS, GITOPS_LABELS, PIN, Retention
from ferryman.plan import semver
from ferryman.plan.conditions import find, set_condition
from ferryman.plan.decision import VersionRecord
from ferryman.plan.machine import resolve_target

EXPIRED = "Expired"
REASON_RETENTION = "Retention"  # expired, marked (delete is off)
REASON_GITOPS = "ManagedByGitOps"  # expired, marked because a GitOps tool keeps it
REASON_RETAINED = "Retained"  # marked once, kept again


@dataclass(frozen=True)
class Expiry:
    """One expired ModelVersion: ``delete``d (only at ``uid`` / ``resource_version``, the
    object the decision was made on), or marked: ``patch`` is its status merge patch
    (None: marked already), ``event`` whether to post ``message`` (the first time)."""

    name: str
    version: str
    uid: str
    resource_version: str
    message: str
    delete: bool = False
    gitops: str | None = None  # the tracking metadata that keeps it from being deleted
    patch: dict[str, Any] | None = None
    event: bool = False


@dataclass
class Plan:
    """What retention does now. ``kept``: name -> reason; ``expired``: the others, in
    registration order; ``restored``: status patches for marked ones kept again;
    ``recheck_at``: when the next ``recent`` keep lapses (wake the Rollout then)."""

    kept: dict[str, str] = field(default_factory=dict)
    expired: list[Expiry] = field(default_factory=list)
    restored: dict[str, dict[str, Any]] = field(default_factory=dict)
    recheck_at: datetime | None = None


def marked(mv: ModelVersion) -> bool:
    """Whether ``mv`` carries retention's mark (condition ``Expired`` True)."""
    mark = find(mv.status.conditions, EXPIRED)
    return mark is not None and mark.status == ConditionStatus.TRUE


def pinned(mv: ModelVersion) -> bool:
    value = mv.metadata.annotations.get(PIN)
    return value is not None and value.strip().lower() != "false"


def gitops_tracking(mv: ModelVersion) -> str | None:
    """The GitOps tracking metadata ``mv`` carries (``annotation <key>`` or ``label
    <key>``), or None."""
    for key in GITOPS_ANNOTATIONS:
        if mv.metadata.annotations.get(key):
            return f"annotation {key}"
    for key in GITOPS_LABELS:
        if mv.metadata.labels.get(key):
            return f"label {key}"
    return None


def registration_key(mv: ModelVersion) -> tuple[Any, ...]:
    """Registration order: creation time (not yet known: last), then semantic version
    precedence (a non-semver string after every semver), its text, then name."""
    stamp = mv.metadata.creation_timestamp
    created = stamp.replace(tzinfo=None) if stamp is not None else datetime.max
    v, name = mv.spec.version, mv.metadata.name
    if semver.is_semver(v):
        return (created, 0, semver.Version(v), v, name)
    return (created, 1, None, v, name)


def last_served(mv: ModelVersion) -> tuple[bool, datetime | None]:
    """(serves now, when it last stopped serving) from its serving history and the
    older ``servedUntil``."""
    status = mv.status
    ends = [i.served_until for i in status.serving_history or []]
    if any(end is None for end in ends) or status.phase == ModelVersionPhase.SERVING:
        return True, None
    times = [t for t in (*ends, status.served_until) if t is not None]
    return False, max(times, default=None)


def _always(
    spec: RolloutSpec, status: RolloutStatus, live: Sequence[ModelVersion], now: datetime
) -> dict[str, str]:
    keep: dict[str, str] = {}
    # The version the target asks for: pinned, or what ``track: latest`` resolves to now
    # (the Rollout may not have started on it yet), as ``plan.machine`` resolves it.
    records = tuple(VersionRecord(mv.metadata.name, mv.spec.version) for mv in live)
    rolled_back = list(status.rolled_back_versions or [])
    target, _problem = resolve_target(spec, records, rolled_back, status.stable_version)
    if target:
        keep[target] = "target"
    prev = status.previous_stable_version
    if prev and (
        status.phase == RolloutPhase.BAKING or (status.scale_down_at and now < status.scale_down_at)
    ):
        keep[prev] = "warm"
    if status.candidate_version:
        keep[status.candidate_version] = "candidate"
    if status.stable_version:
        keep[status.stable_version] = "stable"
    return keep


def _criteria(r: Retention) -> str:
    within = f", keepServedWithinDays {r.keep_served_within_days}"
    return f"keepLast {r.keep_last}" + (within if r.keep_served_within_days else "")


def decide(
    rollout: str,
    spec: RolloutSpec,
    status: RolloutStatus,
    mvs: Iterable[ModelVersion],
    now: datetime,
    deployed: Collection[str] = (),
) -> Plan:
    """The retention plan for the Rollout named ``rollout`` (``spec.retention`` set) over
    ``mvs``, its model's ModelVersions in its namespace (see the module docstring);
    ``deployed``: the names of those ModelVersions a ferryman Deployment (named after
    the ModelVersion) exists for, whoever owns it or none."""
    plan = Plan()
    retention = spec.retention
    if status.phase == RolloutPhase.INVALID:
        return plan
    if retention is None:  # removed from the spec: its marks are lifted
        for mv in mvs:
            restore = _restored(mv, "spec.retention removed", now)
            if restore is not None and mv.status.phase != ModelVersionPhase.DUPLICATE:
                plan.kept[mv.metadata.name] = "no retention"
                plan.restored[mv.metadata.name] = restore
        return plan
    live = sorted(
        (
            mv
            for mv in mvs
            if mv.status.phase != ModelVersionPhase.DUPLICATE
            and mv.metadata.deletion_timestamp is None
        ),
        key=registration_key,
    )
    always = _always(spec, status, live, now)
    newest = {mv.metadata.name for mv in live[-retention.keep_last :]}
    window = timedelta(days=retention.keep_served_within_days)
    for mv in live:
        name = mv.metadata.name
        serving, until = last_served(mv)
        reason = always.get(mv.spec.version)
        if reason is None and serving:
            reason = "serving"
        if reason is None and name in deployed:
            reason = "deployed"
        if reason is None and pinned(mv):
            reason = "pinned"
        if reason is None and name in newest:
            reason = "newest"
        if reason is None and window and until is not None and until + window > now:
            reason = "recent"
            lapse = until + window
            plan.recheck_at = lapse if plan.recheck_at is None else min(plan.recheck_at, lapse)
        if reason is not None:
            plan.kept[name] = reason
            restore = _restored(mv, reason, now)
            if restore is not None:
                plan.restored[name] = restore
            continue
        plan.expired.append(_expiry(rollout, retention, mv, now))
    return plan


def _restored(mv: ModelVersion, reason: str, now: datetime) -> dict[str, Any] | None:
    if not marked(mv):
        return None
    conditions = set_condition(
        mv.status.conditions,
        type=EXPIRED,
        status=ConditionStatus.FALSE,
        reason=REASON_RETAINED,
        message=f"kept again ({reason})",
        generation=mv.metadata.generation,
        now=now,
    )
    patch: dict[str, Any] = {
        "conditions": [c.model_dump(by_alias=True, mode="json") for c in conditions]
    }
    never_served = not mv.status.serving_history and mv.status.served_from is None
    if mv.status.phase == ModelVersionPhase.RETIRED and never_served:
        patch["phase"] = ModelVersionPhase.REGISTERED.value
    return patch


def _expiry(rollout: str, retention: Retention, mv: ModelVersion, now: datetime) -> Expiry:
    name, meta = mv.metadata.name, mv.metadata
    tracked = gitops_tracking(mv)
    past = f"past the retention of Rollout {rollout} ({_criteria(retention)})"
    base = Expiry(name, mv.spec.version, meta.uid or "", meta.resource_version or "", "")
    if tracked is None and retention.delete:
        message = f"deleted ModelVersion {name} (version {mv.spec.version}): {past}"
        return replace(base, message=message, delete=True)
    if tracked is not None:
        reason = REASON_GITOPS
        message = (
            f"{past}; a GitOps tool tracks it ({tracked}), so it is not deleted (the tool "
            "would re-create it): remove it from Git"
        )
    else:
        reason = REASON_RETENTION
        message = (
            f"{past}; retention.delete is false, so it is only marked: delete it "
            f"(kubectl delete modelversion {name}) or set retention.delete: true"
        )
    mark = find(mv.status.conditions, EXPIRED)
    marked = (
        mark is not None
        and mark.status == ConditionStatus.TRUE
        and (mark.reason, mark.message) == (reason, message)
        and mv.status.phase == ModelVersionPhase.RETIRED
    )
    if marked:
        return replace(base, message=message, gitops=tracked)
    conditions = set_condition(
        mv.status.conditions,
        type=EXPIRED,
        status=ConditionStatus.TRUE,
        reason=reason,
        message=message,
        generation=meta.generation,
        now=now,
    )
    patch = {
        "phase": ModelVersionPhase.RETIRED.value,
        "conditions": [c.model_dump(by_alias=True, mode="json") for c in conditions],
    }
    first = mark is None or mark.status != ConditionStatus.TRUE
    return replace(base, message=message, gitops=tracked, patch=patch, event=first)
