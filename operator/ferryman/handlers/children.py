"""The executor's writes of a Rollout's child objects (per served version a Service, a
PodDisruptionBudget and a Deployment; the Services named after the Rollout), and the rule
of when a skip may be decided on an index entry (``transition``).

An index entry (``handlers.observed``, trusted per ``handlers.ledger``) may decide that an
object is left unwritten only in a reconcile whose decision neither moves traffic weight
nor removes capacity: then a stale entry costs at most a write that comes one watch event
later (the event that makes the entry current also wakes the Rollout). A decision that
moves weight or removes capacity (``transition``) is written on objects read just before
(GET), as before the indexes: the route before a scale-down, the Deployment a new weight
relies on, the object being scaled down. Its decision was made from the indexes too
(``deployments_by_rollout``): when the read finds a Deployment the decision counted on
missing (an index ghost), the decision is held (``Held``): the object is recreated, but
no route is written and no capacity removed until the Rollout decides again on an index
that has caught up. Every write and delete is preceded by a read in any reconcile
(``handlers.applied``), so ownership is never decided on an entry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ferryman.api import names
from ferryman.api.modelversion import ModelVersion
from ferryman.handlers.applied import ApplyFailure, apply_owned, delete_owned
from ferryman.handlers.ledger import note
from ferryman.plan import labels, serving
from ferryman.plan.decision import Decision

if TYPE_CHECKING:
    from ferryman.handlers.executor import Snapshot, Writer

# Status fields whose change means the decision moves traffic (or starts or ends a stage).
MOVES = ("phase", "stable_version", "candidate_version", "current_step", "canary_weight")


def removes_capacity(seen: Snapshot, decision: Decision) -> bool:
    """Whether ``decision`` scales a served version down or deletes it."""
    if decision.deployments is None:
        return False
    for version, current in seen.deployments.items():
        target = decision.deployments.get(version)
        if target is None or target < current.replicas:
            return True
    return False


def transition(seen: Snapshot, decision: Decision) -> bool:
    """Whether ``decision`` moves traffic weight (a ``MOVES`` field of status changes)
    or removes capacity: then nothing is skipped on an index entry (module docstring)."""
    old, new = seen.rollout.status, decision.status
    return removes_capacity(seen, decision) or any(
        getattr(old, f) != getattr(new, f) for f in MOVES
    )


async def apply_version(
    kube: Writer, seen: Snapshot, mv: ModelVersion, replicas: int, problems: list[str]
) -> bool:
    """Apply ``mv``'s Service, budget and Deployment (``replicas``), the Deployment only
    once the other two are written. Returns whether the decision was made on an index
    ghost: in a transition (``seen.observed`` empty), the Deployment read just before is
    missing though ``seen.deployments`` (the index) has the version."""
    rollout, before = seen.rollout, len(problems)
    for obj in (
        serving.service(mv, rollout),
        serving.pod_disruption_budget(mv, rollout),
        serving.deployment(mv, rollout, replicas=replicas, init_image=seen.init_image),
    ):
        meta, read, existing = obj["metadata"], False, None
        if obj["kind"] == "Deployment" and not seen.observed:
            existing = await kube.get(
                obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"]
            )
            note(seen.ledger, obj["kind"], meta["namespace"], meta["name"], existing)
            read = True
        await apply_owned(
            kube,
            rollout,
            obj,
            problems,
            existing=existing,
            read=read,
            observed=seen.observed,
            ledger=seen.ledger,
        )
        if any(isinstance(p, ApplyFailure) for p in problems[before:]):
            return False  # no pods behind a Service or budget that could not be written
        if read and existing is None and mv.spec.version in seen.deployments:
            return True
    return False


async def apply_stable_service(
    kube: Writer, seen: Snapshot, stable: str | None, problems: list[str]
) -> None:
    """The Service named after the Rollout always selects the stable version's pods."""
    rollout, mv = seen.rollout, seen.by_version.get(stable or "")
    if mv is None:
        return
    svc = serving.service(mv, rollout)
    svc["metadata"]["name"] = rollout.metadata.name
    svc["metadata"]["annotations"] = {f"{labels.PREFIX}/stable-version": mv.spec.version}
    await apply_owned(kube, rollout, svc, problems, observed=seen.observed, ledger=seen.ledger)


async def sync_preview(
    kube: Writer, seen: Snapshot, mv: ModelVersion | None, problems: list[str]
) -> None:
    """Blue-green: ``<rollout>-preview`` selects the candidate while there is one."""
    rollout = seen.rollout
    name = names.preview_service(rollout.metadata.name)
    if mv is None:
        known = seen.observed.get(("Service", name))
        if known is None or labels.is_owned_by(known, rollout):  # read before the delete
            await delete_owned(kube, rollout, "v1", "Service", name, problems, seen.ledger)
        return
    svc = serving.service(mv, rollout)
    svc["metadata"]["name"] = name
    svc["metadata"]["annotations"] = {f"{labels.PREFIX}/preview-version": mv.spec.version}
    await apply_owned(kube, rollout, svc, problems, observed=seen.observed, ledger=seen.ledger)


async def delete_version(kube: Writer, seen: Snapshot, name: str, problems: list[str]) -> None:
    """Delete a version's Deployment, Service and budget (each read just before)."""
    for api_version, kind in (
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("policy/v1", "PodDisruptionBudget"),
    ):
        await delete_owned(kube, seen.rollout, api_version, kind, name, problems, seen.ledger)
