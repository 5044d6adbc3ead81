"""Retention's writes (issue 17 §5): what ``plan.retention`` decides for a Rollout with
``spec.retention``, done after each reconcile: expired ModelVersions deleted (opt-in,
never one a GitOps tool tracks) or marked (phase Retired, condition Expired) with an
Event, marks lifted from versions kept again.

Each ModelVersion is decided on its status as this process knows it (``handlers.ledger``,
as ``handlers.roles`` does), so a mark is written once, not again at every reconcile
before kopf's index catches up. A delete is decided again on the ModelVersions as the
API server lists them (``_confirmed_deletes``: the index may hold one already gone,
which would push a kept one out of ``keepLast``) and conditioned on the uid and
resourceVersion that decision saw: a ModelVersion pinned or re-labelled since is never
deleted on a stale view (the 409 is left for the next reconcile, which a ModelVersion's
change wakes); one this process deleted is not deleted again while the index still
holds it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

from ferryman.api.common import API_VERSION, event_message
from ferryman.api.modelversion import KIND as MV_KIND
from ferryman.api.modelversion import PLURAL as MV_PLURAL
from ferryman.api.modelversion import ModelVersion, ModelVersionStatus
from ferryman.api.rollout import KIND as ROLLOUT_KIND
from ferryman.api.rollout import Rollout, RolloutStatus
from ferryman.errors import describe
from ferryman.handlers import namespaces
from ferryman.handlers.executor import Writer
from ferryman.handlers.ledger import (
    Ledger,
    StatusLedger,
    believed_status,
    known_absent,
    note,
    note_status,
)
from ferryman.handlers.observed import INDEXES
from ferryman.kube.client import Conflict
from ferryman.plan import retention

log = logging.getLogger(__name__)

DEPLOYMENTS = next(i for i in INDEXES if i.kind == "Deployment")


def _ref(mv: ModelVersion) -> dict[str, Any]:
    """Enough of a ModelVersion for an Event about it."""
    meta = mv.metadata
    return {
        "apiVersion": API_VERSION,
        "kind": MV_KIND,
        "metadata": {
            "name": meta.name,
            "namespace": meta.namespace,
            "uid": meta.uid,
            "creationTimestamp": meta.creation_timestamp.isoformat()
            if meta.creation_timestamp
            else None,
        },
    }


class Lister(Writer, Protocol):
    """The executor's writes and a LIST (``kube.client.Kube`` has them all)."""

    async def list_objects(
        self, api_version: str, kind: str, namespace: str
    ) -> list[dict[str, Any]]: ...


def deployed(indexes: Mapping[str, Any], namespace: str, mvs: Iterable[ModelVersion]) -> set[str]:
    """The names of ``mvs`` that a ferryman Deployment named after them exists for in
    ``namespace``, as kopf's index of ferryman's Deployments holds them (an entry the
    index still holds for a Deployment just deleted counts too: it only keeps a
    ModelVersion one reconcile longer). Orphans ``deletionPolicy: KeepStable`` left
    serving are among them, though no Rollout's status names their version."""
    index = indexes.get(DEPLOYMENTS.id) or {}
    return {mv.metadata.name for mv in mvs if index.get((namespace, mv.metadata.name))}


async def _confirmed_deletes(
    kube: Lister,
    rollout: Rollout,
    status: RolloutStatus,
    plan: retention.Plan,
    now: datetime,
    deployed: Collection[str],
    ledger: Ledger | None,
) -> dict[str, retention.Expiry]:
    """The deletions ``plan`` (decided on kopf's index and the Rollout as the reconcile
    read it) asks for, decided again on what the API server holds now, since a delete is
    not undone: the model's ModelVersions as listed (the index may still hold one
    already gone, which would count among the ``keepLast`` newest and push the next
    older one out) and the Rollout as listed again (Git may have moved ``spec.target``
    to an older version meanwhile, a rollback; or removed ``spec.retention``, or the
    Rollout; listed, as the operator may list Rollouts but not get them). Only what
    every decision deletes is deleted, at the listed resourceVersion: the decisions on
    the spec as read and as it is now, with the reconcile's status and the one stored.
    No request when the plan deletes nothing (or only what this process deleted)."""
    ns, name = rollout.metadata.namespace, rollout.metadata.name
    at = time.monotonic()
    wanted = {
        x.name
        for x in plan.expired
        if x.delete and not known_absent(ledger, MV_KIND, ns, x.name, at)
    }
    if not wanted:
        return {}
    # Listed, not read: the operator may list and watch Rollouts, not get them.
    rollouts = await kube.list_objects(API_VERSION, ROLLOUT_KIND, ns)
    found = [r for r in rollouts if (r.get("metadata") or {}).get("name") == name]
    try:
        current = Rollout.model_validate(found[0]) if found else None
    except ValueError:
        current = None
    if (
        current is None
        or current.metadata.uid != rollout.metadata.uid
        or current.metadata.deletion_timestamp is not None
        or current.spec.retention is None
        or current.spec.model != rollout.spec.model
    ):
        return {}  # the next reconcile (this change wakes it) decides on what is there
    listed = []
    for obj in await kube.list_objects(API_VERSION, MV_KIND, ns):
        try:
            mv = ModelVersion.model_validate(obj)
        except ValueError:
            continue
        if mv.spec.model == rollout.spec.model:
            listed.append(mv)
    confirmed = wanted
    for spec, seen in (
        (rollout.spec, status),
        (current.spec, status),
        (current.spec, current.status),
    ):
        fresh = retention.decide(name, spec, seen, listed, now, deployed)
        confirmed = confirmed & {x.name for x in fresh.expired if x.delete}
    named = _named_by_others(rollouts, name, rollout.spec.model)
    return {x.name: x for x in fresh.expired if x.name in confirmed and x.version not in named}


def _named_by_others(rollouts: Iterable[Any], name: str, model: str) -> set[str]:
    """The versions of ``model`` the Rollouts in ``rollouts`` other than ``name`` target
    or name in their status (stable, candidate, previous stable). Only one Rollout of a
    model serves in a namespace (a younger one is Invalid), but the other may take over
    once the first is deleted, and then needs the version it targets."""
    named: set[str] = set()
    for obj in rollouts:
        try:
            other = Rollout.model_validate(obj)
        except ValueError:
            continue
        if other.metadata.name == name or other.spec.model != model:
            continue
        st = other.status
        candidates = (
            other.spec.target.version,
            st.stable_version,
            st.candidate_version,
            st.previous_stable_version,
        )
        named.update(v for v in candidates if v)
    return named


async def apply(
    kube: Lister,
    rollout: Rollout,
    body: Any,
    status: RolloutStatus,
    mvs: Iterable[ModelVersion],
    now: datetime,
    ledger: Ledger | None,
    written: StatusLedger | None,
    deployed: Collection[str] = (),
) -> float | None:
    """Carry out ``plan.retention.decide`` for ``rollout`` (its status ``status`` as the
    reconcile left it; ``body`` for Events about it) over its model's ModelVersions
    ``mvs`` (``deployed``: the names of those with a Deployment, see ``deployed``);
    returns the seconds until a kept-as-recent version's keep lapses (the Rollout
    should reconcile then), or None. Without ``spec.retention`` it only lifts
    the marks a former retention left."""
    mvs = list(mvs)
    if rollout.spec.retention is None and not any(retention.marked(mv) for mv in mvs):
        return None  # the common case costs one look at each index entry
    ns = rollout.metadata.namespace
    observed: dict[str, tuple[str, dict[str, Any]]] = {}
    believed: dict[str, ModelVersion] = {}
    for mv in mvs:
        name, rv = mv.metadata.name, mv.metadata.resource_version
        dumped = mv.status.model_dump(by_alias=True, mode="json", exclude_none=True)
        observed[name] = (rv, dumped)
        known = believed_status(written, (MV_PLURAL, ns, name), rv, dumped)
        if known is not dumped:
            mv = mv.model_copy(update={"status": ModelVersionStatus.model_validate(known)})
        believed[name] = mv
    plan = retention.decide(
        rollout.metadata.name, rollout.spec, status, believed.values(), now, deployed
    )

    async def patch(name: str, change: dict[str, Any]) -> None:
        await kube.patch_status(MV_PLURAL, ns, name, change)
        rv, dumped = observed[name]
        note_status(written, (MV_PLURAL, ns, name), rv, dumped, change)

    for name, change in plan.restored.items():
        await patch(name, change)
    deletes = await _confirmed_deletes(kube, rollout, status, plan, now, deployed, ledger)
    for x in plan.expired:
        if x.delete:
            confirmed = deletes.get(x.name)
            if confirmed is None:
                continue
            x = confirmed
            try:
                await kube.delete(
                    API_VERSION,
                    MV_KIND,
                    ns,
                    x.name,
                    preconditions={"uid": x.uid, "resourceVersion": x.resource_version},
                )
            except Conflict:
                log.info("%s/%s changed since retention decided; deciding again", ns, x.name)
                continue
            except Exception as e:  # e.g. RBAC without delete: report, keep reconciling
                log.warning("%s/%s: could not delete: %s", ns, x.name, describe(e))
                namespaces.post(
                    body,
                    type="Warning",
                    reason="RetentionFailed",
                    message=event_message(f"could not delete ModelVersion {x.name}: {describe(e)}"),
                )
                continue
            note(ledger, MV_KIND, ns, x.name, None)
            log.info("%s/%s: %s", ns, rollout.metadata.name, x.message)
            namespaces.post(
                body, type="Normal", reason="RetentionDeleted", message=event_message(x.message)
            )
            continue
        if x.patch is not None:
            await patch(x.name, x.patch)
        if x.event:
            namespaces.post(
                _ref(believed[x.name]),
                type="Warning" if x.gitops else "Normal",
                reason=retention.EXPIRED,
                message=event_message(x.message),
            )
    if plan.recheck_at is None:
        return None
    return max((plan.recheck_at - now).total_seconds(), 0.0)
