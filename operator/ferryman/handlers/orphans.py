"""``spec.deletionPolicy``: what deleting a Rollout leaves serving, and how a new Rollout
takes it back.

Every object ferryman writes is owned by its Rollout (an ownerReference), so the garbage
collector takes it when the Rollout goes: with ``Delete`` that is the whole point. With
``KeepStable`` (the default) the Rollout's finalizer (``handlers.rollouts``) first
(``keep_stable``):
1. writes the route 100% to the stable version (no mirror): the candidate's pods are
   about to go. A shared route someone else owns (``handlers.shared_routes``): only its
   named rules, and the route is neither orphaned nor ever deleted (it is not ours).
   If that write is refused nothing is orphaned (``RouteNotKept``): a kept route would
   still send the candidate's share to objects the garbage collector deletes;
2. orphans what serves the stable version: its Deployment, Service and budget (named
   after its ModelVersion), the Service named after the Rollout, and the route object
   (the HTTPRoute or VirtualService; with plain Services the route is that Service).
   Orphaning removes this Rollout's ownerReference and sets the labels ``ORPHANED`` and
   ``ferryman.dev/model``, in one merge patch conditioned on the resourceVersion read
   just before;
3. and lets the finalizer go: the garbage collector then deletes the rest (candidates,
   the old stable, the preview Service), which still carry the ownerReference.
The route is kept, not deleted: with Gateway API or Istio the route is what sends the
gateway's or mesh's traffic to the stable Service; without it the hostname serves
nothing (plain Services: it is the live Service itself).

A later Rollout of the same name in that namespace adopts (``adopt``) an orphan that
carries ferryman's labels, ``ORPHANED``, its name as ``ferryman.dev/rollout`` and, for a
version's objects, its model as ``ferryman.dev/model`` (the version objects' selectors
name the Rollout and are immutable, so a Rollout of another name could not serve them).
Candidates are found in kopf's indexes of ferryman's objects (no request when there are
none) and read again (GET) before the adopting patch: the ownership rule of
``handlers.applied`` (never take over an object that is not ferryman's) holds on the
object as it is. An adopted stable Deployment seeds an empty status (``seed_status``):
the new Rollout starts from that version as stable, so a forced replace (a changed
``spec.model``, Argo CD's ``Replace=true``) or a prune and re-create is no outage.

Known limit: a foreground deletion (``kubectl delete --cascade=foreground``; Argo CD's
default prune propagation) makes the garbage collector delete every dependent at once,
before any finalizer runs (docs/reliability.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from ferryman.api import names
from ferryman.api.rollout import Rollout
from ferryman.handlers import shared_routes
from ferryman.handlers.applied import apply_owned
from ferryman.handlers.executor import Writer
from ferryman.handlers.ledger import Ledger, note
from ferryman.handlers.observed import INDEXES
from ferryman.kube.client import Conflict
from ferryman.plan import labels, serving
from ferryman.plan.route import Route
from ferryman.routing import Router, SharingRouter, companions_of, shared_of

log = logging.getLogger(__name__)

ORPHANED = f"{labels.PREFIX}/orphaned"
ATTEMPTS = 3  # conditioned patches tried per object (a 409 means: read again)
API_VERSIONS = {i.kind: i.api_version for i in INDEXES}

Obj = dict[str, Any]


class Patcher(Writer, Protocol):
    """The reads and writes of orphaning and adoption: the executor's, and a conditioned
    metadata patch (``kube.client.Kube`` has them all)."""

    async def patch_metadata(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        metadata: Obj,
        *,
        resource_version: str,
    ) -> Obj | None: ...


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _rollout_refs(obj: Mapping[str, Any]) -> list[Obj]:
    return [
        r
        for r in _meta(obj).get("ownerReferences") or []
        if r.get("kind") == "Rollout" and str(r.get("apiVersion", "")).startswith(labels.PREFIX)
    ]


def orphan_metadata(obj: Mapping[str, Any], rollout: Rollout) -> Obj:
    """The metadata merge patch that orphans ``obj`` from ``rollout``: its ownerReferences
    without ``rollout``'s, and the labels ``ORPHANED`` "true" and ``ferryman.dev/model``
    (the Rollout's model, as a label value)."""
    uid = rollout.metadata.uid
    kept = [r for r in _meta(obj).get("ownerReferences") or [] if r.get("uid") != uid]
    return {
        "labels": {ORPHANED: "true", labels.MODEL: labels.label_value(rollout.spec.model)},
        "ownerReferences": kept,
    }


def adoptable(obj: Mapping[str, Any], rollout: Rollout) -> bool:
    """Whether ``rollout`` may adopt ``obj``: ferryman's (managed-by label), labelled
    ``ORPHANED`` "true" and ``ferryman.dev/rollout`` with the Rollout's name, owned by no
    Rollout, in the Rollout's namespace, and, unless it is one of the objects named after
    the Rollout (the route, its Services), labelled with the Rollout's model."""
    meta = _meta(obj)
    found = meta.get("labels") or {}
    if (
        found.get(labels.MANAGED_BY) != "ferryman"
        or found.get(ORPHANED) != "true"
        or found.get(labels.ROLLOUT) != labels.label_value(rollout.metadata.name)
        or meta.get("namespace") != rollout.metadata.namespace
        or _rollout_refs(obj)
    ):
        return False
    if meta.get("name") in names.rollout_services(rollout.metadata.name):
        return True
    return found.get(labels.MODEL) == labels.label_value(rollout.spec.model)


def adopt_metadata(obj: Mapping[str, Any], rollout: Rollout) -> Obj:
    """The metadata merge patch by which ``rollout`` adopts ``obj``: ``ORPHANED`` removed,
    ``rollout``'s ownerReference added to the others."""
    refs = [*(_meta(obj).get("ownerReferences") or []), labels.owner_reference(rollout)]
    return {"labels": {ORPHANED: None}, "ownerReferences": refs}


async def _patch_read(
    kube: Patcher,
    rollout: Rollout,
    kind: str,
    name: str,
    wanted: Any,
    patch: Any,
    ledger: Ledger | None,
) -> Obj | None:
    """Read ``kind`` ``name`` and, while ``wanted(obj)``, merge-patch its metadata with
    ``patch(obj)`` conditioned on the resourceVersion read (a 409 reads again, up to
    ``ATTEMPTS`` times). Returns the object as patched, None when absent or not wanted."""
    ns, api_version = rollout.metadata.namespace, API_VERSIONS[kind]
    for _ in range(ATTEMPTS):
        obj = await kube.get(api_version, kind, ns, name)
        note(ledger, kind, ns, name, obj)
        if obj is None or not wanted(obj):
            return None
        try:
            answer = await kube.patch_metadata(
                api_version,
                kind,
                ns,
                name,
                patch(obj),
                resource_version=str(_meta(obj).get("resourceVersion")),
            )
        except Conflict:
            continue
        note(ledger, kind, ns, name, answer)
        return answer
    raise Conflict(f"{kind} {ns}/{name} kept changing; not patched after {ATTEMPTS} reads")


def kept_objects(rollout: Rollout, router: Router, stable_name: str) -> list[tuple[str, str]]:
    """(kind, name) of what ``KeepStable`` orphans: the stable version's Deployment,
    Service and budget (``stable_name``: its ModelVersion's name), the Service named
    after the Rollout and the route object (once, when that is the same Service)."""
    name = rollout.metadata.name
    found = [
        ("Deployment", stable_name),
        ("Service", stable_name),
        ("PodDisruptionBudget", stable_name),
        ("Service", name),
    ]
    if (router.kind, name) not in found and shared_of(router) is None:
        found.append((router.kind, name))
    return found


class RouteNotKept(Exception):
    """KeepStable's 100%-to-stable route write was refused: nothing was orphaned."""


async def keep_stable(
    kube: Patcher,
    rollout: Rollout,
    router: Router,
    stable_name: str,
    ledger: Ledger | None = None,
) -> list[str]:
    """``KeepStable`` (module docstring, 1 and 2) for a Rollout being deleted whose stable
    version's objects are named ``stable_name``. Returns "Kind name" of each object
    orphaned, and raises what the API raises (the finalizer handler retries), and
    ``RouteNotKept``, orphaning nothing, when the route could not be written 100% to the
    stable version. Objects absent or not this Rollout's are left alone."""
    ns, name = rollout.metadata.namespace, rollout.metadata.name
    stable = rollout.status.stable_version
    assert stable is not None
    problems: list[str] = []
    route = router.build(
        name=name,
        namespace=ns,
        route=Route(stable=stable),
        services={stable: stable_name},
        port=serving.service_port(rollout),
        metadata={
            "labels": {labels.ROLLOUT: labels.label_value(name), labels.MANAGED_BY: "ferryman"},
            "ownerReferences": [labels.owner_reference(rollout)],
        },
    )
    shared = shared_of(router)
    if shared is not None:
        # A shared route: its named rules go 100% to stable; the route stays its owners'.
        await _keep_shared(kube, rollout, shared, stable, stable_name)
    found = None if shared else await kube.get(router.api_version, router.kind, ns, name)
    if found is not None and labels.is_owned_by(found, rollout):
        answer = await apply_owned(
            kube, rollout, route, problems, existing=found, read=True, ledger=ledger
        )
        if answer is None or problems:
            # The route still splits (or mirrors) traffic to objects the garbage collector
            # is about to delete: keep nothing (the finalizer retries, then reports).
            why = "; ".join(problems) or "not written"
            raise RouteNotKept(f"{router.kind} {name} not moved 100% to {stable}: {why}")
    await _drop_companions(kube, rollout, router)
    orphaned: list[str] = []
    for kind, obj_name in kept_objects(rollout, router, stable_name):
        answer = await _patch_read(
            kube,
            rollout,
            kind,
            obj_name,
            lambda o: labels.is_owned_by(o, rollout),
            lambda o: orphan_metadata(o, rollout),
            ledger,
        )
        if answer is not None:
            orphaned.append(f"{kind} {obj_name}")
    return orphaned


async def _drop_companions(kube: Patcher, rollout: Rollout, router: Router) -> None:
    """Delete the Rollout's companion routes (east-west, gRPC) now, while the candidate
    still has its pods: the garbage collector would delete them in no set order with the
    candidate's Deployment, and until then they split calls to it (review8 R6). Those
    calls then reach the live Service, kept, which selects the stable version."""
    companion = companions_of(router)
    ns, name = rollout.metadata.namespace, rollout.metadata.name
    for ref in companion.companion_refs(name, every=True) if companion is not None else ():
        found = await kube.get(ref.api_version, ref.kind, ns, ref.name)
        if found is not None and labels.is_owned_by(found, rollout):
            uid = _meta(found).get("uid")
            await kube.delete(
                ref.api_version, ref.kind, ns, ref.name,
                preconditions={"uid": str(uid)} if uid else None,
            )  # fmt: skip


async def _keep_shared(
    kube: Patcher, rollout: Rollout, router: SharingRouter, stable: str, stable_name: str
) -> None:
    """KeepStable on a shared route (``handlers.shared_routes``): the named rules 100% to
    the stable version's Service, nothing else of the route changed, the route never
    deleted. Raises ``RouteNotKept`` when that patch fails; a route or rule that is gone
    sends nothing to the candidate, so there is nothing to keep then."""
    assert router.shared is not None
    ns, name = rollout.metadata.namespace, router.shared.name
    found = await kube.get(router.api_version, router.kind, ns, name)
    if found is None or shared_routes.check(found, router.kind, name, "", router) is not None:
        return
    problems: list[str] = []
    port = serving.service_port(rollout)
    route, services = Route(stable=stable), {stable: stable_name}
    if await shared_routes.write_shared(kube, router, ns, found, route, services, port, problems):
        return
    why = "; ".join(problems) or "not written"
    raise RouteNotKept(f"{router.kind} {name} not moved 100% to {stable}: {why}")


def candidates(
    indexes: Mapping[str, Any],
    rollout: Rollout,
    object_names: Iterable[str],
    ledger: Ledger | None = None,
) -> list[tuple[str, str]]:
    """(kind, name) of the adoptable objects (``adoptable``) named ``object_names`` in the
    Rollout's namespace, as kopf's indexes (``handlers.observed``) hold them, trusted or
    not (an orphan may be older than any entry is trusted): each is read again before it
    is adopted. An entry this process has read otherwise since its watch event
    (``ledger``: gone, or at another resourceVersion) is left out, so a stale entry costs
    one read, not one per reconcile."""
    ns = rollout.metadata.namespace
    found: list[tuple[str, str]] = []
    for indexed in INDEXES:
        index = indexes.get(indexed.id)
        if index is None:
            continue
        for name in object_names:
            known = ledger.get((ns, indexed.kind, name)) if ledger else None
            for entry in index.get((ns, name), []):
                rv = _meta(entry.obj).get("resourceVersion")
                if (
                    known is not None
                    and known.at > entry.at
                    and (known.deleted or known.resource_version != rv)
                ):
                    continue  # read since its watch event, and found otherwise
                if adoptable(entry.obj, rollout):
                    found.append((indexed.kind, name))
                    break
    return found


async def adopt(
    kube: Patcher,
    rollout: Rollout,
    found: Iterable[tuple[str, str]],
    ledger: Ledger | None = None,
) -> dict[tuple[str, str], Obj]:
    """Adopt the orphans ``found`` (``candidates``), each read again and still
    ``adoptable``; returns them as patched, by (kind, name). Raises what the API raises."""
    adopted: dict[tuple[str, str], Obj] = {}
    for kind, name in found:
        answer = await _patch_read(
            kube,
            rollout,
            kind,
            name,
            lambda o: adoptable(o, rollout),
            lambda o: adopt_metadata(o, rollout),
            ledger,
        )
        if answer is not None:
            log.info(
                "%s/%s adopted %s %s", rollout.metadata.namespace, rollout.metadata.name, kind, name
            )
            adopted[(kind, name)] = answer
    return adopted


async def seed_status(
    kube: Patcher,
    rollout: Rollout,
    found: Iterable[tuple[str, str]],
    served: Mapping[str, str],
    ledger: Ledger | None = None,
) -> Obj | None:
    """For a Rollout with no stable version yet, among whose orphans (``found``) there is
    one: the status patch (camelCase) that makes the version of its orphaned stable
    Deployment its stable version, before anything is adopted (the next reconcile
    adopts; a conflicting status write leaves every orphan an orphan). The Deployment is
    one of ``served`` (version -> ModelVersion name, i.e. its Deployment's name), read
    fresh and ``adoptable`` (an index may not hold it yet: each is read, once, only
    here). None when there is none."""
    if rollout.status.stable_version is not None:
        return None
    names = {name for kind, name in found if kind == "Deployment"}
    ordered = sorted(served.items(), key=lambda item: item[1] not in names)
    ns = rollout.metadata.namespace
    for version, name in ordered:
        obj = await kube.get(API_VERSIONS["Deployment"], "Deployment", ns, name)
        note(ledger, "Deployment", ns, name, obj)
        if obj is not None and adoptable(obj, rollout):
            return {
                "stableVersion": version,
                "phase": "Healthy",
                "message": f"adopted the orphaned stable version {version} "
                "(deletionPolicy KeepStable of a deleted Rollout of this name)",
            }
    return None
