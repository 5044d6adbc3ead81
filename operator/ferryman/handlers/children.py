"""The executor's writes of a Rollout's child objects (per served version a Service, a
PodDisruptionBudget and a Deployment; the Services named after the Rollout), and the rule
of when a skip may be decided on an index entry (``transition``).

An index entry (``handlers.observed``, trusted per ``handlers.ledger``) may decide that an
object is left unwritten only where nothing unsafe follows from a stale entry: a stale
skip then costs at most a write that comes one watch event later (the event that makes
the entry current also wakes the Rollout). A decision that moves traffic weight or
removes capacity (``transition``) is written on objects read just before (GET): the
route always (before a scale-down it must really be written), and the objects of every
version that gains weight or mirrored traffic, or of every served version when capacity
goes (what stays must really be there). Such a decision was made from the indexes too
(``deployments_by_rollout``): when that read finds a Deployment the decision counted on
missing (an index ghost) or with fewer Ready replicas than its entry said (``stale``),
the decision is held (``Executed.held``), also when a write of that version is refused:
a missing object is recreated, but no route is written and no capacity removed until
the Rollout decides again (``executor.HELD_RETRY``) on an index that has caught up.
Every write and delete is preceded by a read, or conditioned on the object being exactly
an owned index entry (``handlers.applied``), in any reconcile, so ownership is never
decided on an entry alone.
"""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING, Any

from ferryman.api import names
from ferryman.api.modelversion import ModelVersion
from ferryman.errors import describe
from ferryman.handlers.applied import (
    ApplyFailure,
    apply_owned,
    carries_object,
    delete_owned,
    stamp,
)
from ferryman.handlers.ledger import note
from ferryman.plan import labels, serving
from ferryman.plan.actions import deployment_readiness
from ferryman.plan.decision import Decision, DeploymentState
from ferryman.plan.route import weights_of
from ferryman.routing import shared_of

if TYPE_CHECKING:
    from ferryman.handlers.executor import Snapshot, Writer

log = logging.getLogger(__name__)

# Status fields whose change means the decision moves traffic to other versions.
MOVES = ("stable_version", "candidate_version")


def removes_capacity(seen: Snapshot, decision: Decision) -> bool:
    """Whether ``decision`` scales a served version down or deletes it."""
    if decision.deployments is None:
        return False
    for version, current in seen.deployments.items():
        target = decision.deployments.get(version)
        if target is None or target < current.replicas:
            return True
    return False


def _weights(status: Any) -> dict[str, tuple[int, int]]:
    """(live weight, mirror percent) by version, as ``status`` reports the route."""
    w = status.weights
    out = {status.stable_version: (w.stable if w is not None else 100, 0)}
    if status.candidate_version:
        out[status.candidate_version] = (w.candidate, w.mirror_percent) if w else (0, 0)
    return {v: x for v, x in out.items() if v}


def transition(seen: Snapshot, decision: Decision) -> frozenset[str] | None:
    """The versions whose objects ``decision`` needs read fresh, or None when it neither
    moves traffic weight nor removes capacity (module docstring). Removing capacity: all
    served versions (what stays must be there). Moving weight (the decision's route has
    other weights than status reported from the route, or a ``MOVES`` field of status
    changes): the versions whose live weight or mirror share grows. Either way the route
    itself is read fresh (``handlers.executor``)."""
    old, new, route = seen.rollout.status, decision.status, decision.route
    served = frozenset(seen.by_version) | frozenset(seen.deployments)
    if removes_capacity(seen, decision):
        return served
    moves = any(getattr(old, f) != getattr(new, f) for f in MOVES)
    if route is not None and (moves or weights_of(route) != old.weights):
        before = _weights(old)
        after = {route.stable: (route.stable_weight, 0)}
        if route.candidate:
            after[route.candidate] = (route.candidate_weight, route.mirror_percent)
        return frozenset(
            v
            for v, (w, m) in after.items()
            if w > before.get(v, (0, 0))[0] or m > before.get(v, (0, 0))[1]
        )
    return frozenset() if moves else None


def fresh_observed(
    seen: Snapshot, versions: frozenset[str], stable: str | None
) -> dict[tuple[str, str], Any]:
    """``seen.observed`` without the objects of ``versions`` (their Service, budget and
    Deployment), nor the Services named after the Rollout when the decision's ``stable``
    is one of them or another than status had."""
    gone = {seen.deployment_names.get(v) for v in versions}
    gone |= {mv.metadata.name for v, mv in seen.by_version.items() if v in versions}
    if stable in versions or stable != seen.rollout.status.stable_version:
        gone |= set(names.rollout_services(seen.rollout.metadata.name))
    return {k: obj for k, obj in seen.observed.items() if k[1] not in gone}


def stale(counted: DeploymentState | None, fresh: dict[str, Any] | None) -> bool:
    """Whether a Deployment read just before (``fresh``, None: absent) has less than the
    decision counted on (``counted``, its index entry; None: the decision counted on
    none): it is gone (an index ghost), or fewer of its replicas are Ready
    (``actions.deployment_readiness``) than the index said. A decision made on that
    entry may give weight to, or keep traffic on, pods that are not there."""
    if counted is None:
        return False
    if fresh is None:
        return True
    return deployment_readiness(fresh)[1] < counted.available


def route_object(
    seen: Snapshot, decision: Decision, services: dict[str, str]
) -> dict[str, Any] | None:
    """The route object ``decision`` applies (None: it applies none; a shared route is
    patched instead, ``handlers.shared_routes``); ``services``: the Service name of each
    version."""
    if decision.route is None or shared_of(seen.router) is not None:
        return None
    rollout = seen.rollout
    return seen.router.build(
        name=rollout.metadata.name,
        namespace=rollout.metadata.namespace,
        route=decision.route,
        services=services,
        port=serving.service_port(rollout),
        metadata=route_metadata(rollout),
    )


def route_metadata(rollout: Any) -> dict[str, Any]:
    """The labels and owner reference of the route objects ferryman creates."""
    name = rollout.metadata.name
    return {
        "labels": {labels.ROLLOUT: labels.label_value(name), labels.MANAGED_BY: "ferryman"},
        "ownerReferences": [labels.owner_reference(rollout)],
    }


def conditioned_route(seen: Snapshot, route: dict[str, Any] | None) -> bool:
    """Whether a transition may write ``route`` on the condition that the route is still
    at the resourceVersion of its index entry (``handlers.applied``), instead of reading
    it before: the route came from the index, is this Rollout's own there, and does not
    carry ``route`` (an entry that does may not decide a skip in a transition: it is read).
    Not with weights by replica ratio (plain Services), whose capacity decisions compare
    the route as indexed with the route as read."""
    return (
        not seen.route_read
        and route is not None
        and seen.route is not None
        and not seen.foreign_route
        and not seen.router.capabilities.weights_by_replicas
        and not carries_object(seen.route, stamp(copy.deepcopy(route)))
    )


async def apply_version(
    kube: Writer, seen: Snapshot, mv: ModelVersion, replicas: int, problems: list[str]
) -> bool:
    """Apply ``mv``'s Service, budget and Deployment (``replicas``), the Deployment only
    once the other two are written. Returns whether the decision was made on a stale
    index entry (``stale``): the version is read fresh in this transition
    (``seen.fresh``: its Deployment is read before anything is written) and that read
    finds it missing, or with fewer Ready replicas, than ``seen.deployments`` (the index)
    said. That holds also when a write here is refused or fails (added to ``problems``
    as an ``ApplyFailure``: the caller must not write a route onto what is not there).
    Raises what the fresh read raises (the caller cannot tell what is there)."""
    rollout, before, version = seen.rollout, len(problems), mv.spec.version
    deployment = serving.deployment(mv, rollout, replicas=replicas, init_image=seen.init_image)
    existing, read = None, version in seen.fresh
    if read:
        meta = deployment["metadata"]
        existing = await kube.get(
            deployment["apiVersion"], "Deployment", meta["namespace"], meta["name"]
        )
        note(seen.ledger, "Deployment", meta["namespace"], meta["name"], existing)
    held = read and stale(seen.deployments.get(version), existing)
    try:
        for obj in (
            serving.service(mv, rollout),
            serving.pod_disruption_budget(mv, rollout),
            deployment,
        ):
            last = obj is deployment
            await apply_owned(
                kube,
                rollout,
                obj,
                problems,
                existing=existing if last else None,
                read=read and last,
                observed=seen.observed,
                ledger=seen.ledger,
                indexed=seen.indexed,
            )
            if any(isinstance(p, ApplyFailure) for p in problems[before:]):
                break  # no pods behind a Service or budget that could not be written
    except Exception as e:  # a failing webhook, a timeout: reported, the read stands
        log.warning("%s: writes of %s failed: %s", rollout.metadata.name, version, e)
        problems.append(ApplyFailure(f"scale-up of {version} failed: {describe(e)}"))
    return held


async def apply_stable_service(
    kube: Writer, seen: Snapshot, stable: str | None, problems: list[str]
) -> None:
    """The Service named after the Rollout always selects the stable version's pods."""
    rollout, mv = seen.rollout, seen.by_version.get(stable or "")
    if mv is None:
        return
    await _apply_rollout_service(kube, seen, mv, rollout.metadata.name, "stable", problems)


async def sync_preview(
    kube: Writer, seen: Snapshot, mv: ModelVersion | None, problems: list[str]
) -> None:
    """Blue-green: ``<rollout>-preview`` selects the candidate while there is one."""
    rollout = seen.rollout
    name = names.preview_service(rollout.metadata.name)
    if mv is None:
        known = seen.observed.get(("Service", name))
        if known is None or labels.is_owned_by(known, rollout):  # read before the delete
            await delete_owned(
                kube, rollout, "v1", "Service", name, problems, seen.ledger, seen.indexed
            )
        return
    await _apply_rollout_service(kube, seen, mv, name, "preview", problems)


async def _apply_rollout_service(
    kube: Writer, seen: Snapshot, mv: ModelVersion, name: str, role: str, problems: list[str]
) -> None:
    """A Service named after the Rollout (``name``) selecting ``mv``'s pods, annotated
    ``<prefix>/<role>-version``; applied as ferryman's own (``applied.apply_owned``)."""
    svc = serving.service(mv, seen.rollout)
    svc["metadata"]["name"] = name
    svc["metadata"]["annotations"] = {f"{labels.PREFIX}/{role}-version": mv.spec.version}
    await apply_owned(
        kube,
        seen.rollout,
        svc,
        problems,
        observed=seen.observed,
        ledger=seen.ledger,
        indexed=seen.indexed,
    )


async def delete_version(kube: Writer, seen: Snapshot, name: str, problems: list[str]) -> None:
    """Delete a version's budget, Deployment and Service (``applied.delete_owned``). The
    budget goes first: the disruption controller rewrites its status as the Deployment's
    pods go, which would fail a delete conditioned on its indexed resourceVersion."""
    for api_version, kind in (
        ("policy/v1", "PodDisruptionBudget"),
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
    ):
        await delete_owned(
            kube, seen.rollout, api_version, kind, name, problems, seen.ledger, seen.indexed
        )
